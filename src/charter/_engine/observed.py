"""Hooks on ``RunDriver`` methods that tell the driver's observer what happens, in plain values.

Decorators, so that the loop's bodies stay untouched: each asks ``observer.enabled()`` first
and calls straight through when it is False (the default tracing observer without a tracer
provider). The values come from the driver here, inside the engine; the observer
(:mod:`charter.observer`, :mod:`charter.telemetry`) sees only them.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from charter._engine.decider import CIRCUIT_OPEN
from charter.events import PolicyEvaluated
from charter.models import ModelRequest, ModelResponse
from charter.observer import (
    ModelAnswered,
    ModelCalled,
    ModelFailed,
    RunClaimed,
    RunEnded,
    ToolCalled,
    ToolEnded,
)

if TYPE_CHECKING:
    from charter._engine.decider import Outcome
    from charter._engine.loop import RunDriver
    from charter._engine.state import PendingCall, RunState

T = TypeVar("T")
_Method = Callable[..., Awaitable[T]]

# The decision on each call of a driver, kept for the call's tool hook.
_decisions: weakref.WeakKeyDictionary[Any, dict[str, PolicyEvaluated]] = weakref.WeakKeyDictionary()


def run(fn: _Method[RunState]) -> _Method[RunState]:
    """Around ``RunDriver.drive`` (one claim of the run)."""

    @functools.wraps(fn)
    async def drive(self: RunDriver) -> RunState:
        if not self.observer.enabled():
            return await fn(self)
        scope = self.observer.run_claimed(
            RunClaimed(
                run_id=self.run_id,
                agent_name=self.agent.name,
                agent_version=self.agent.version,
                tenant=self.record.tenant,
                principal=self.record.principal,
                worker_id=self.worker_id,
                epoch=self.claim.epoch,
                previous_status=self.claim.previous_status,
            )
        )
        try:
            state = await fn(self)
            scope.ended(
                RunEnded(
                    status=state.status,
                    steps=state.step,
                    tool_calls=state.tool_calls,
                    tokens=state.tokens,
                    cost_usd=state.cost_usd,
                    reason=state.reason,
                )
            )
            return state
        except Exception as exc:
            scope.failed(exc)
            raise
        finally:
            scope.close()

    return drive


def step(fn: _Method[None]) -> _Method[None]:
    """Around ``RunDriver._model_step`` (the model call and its tool calls)."""

    @functools.wraps(fn)
    async def model_step(self: RunDriver) -> None:
        if not self.observer.enabled():
            return await fn(self)
        scope = self.observer.step_started(self.run_id, self.state.step + 1)
        try:
            return await fn(self)
        except Exception as exc:
            scope.failed(exc)
            raise
        finally:
            scope.close()

    return model_step


def model_call(fn: _Method[ModelResponse]) -> _Method[ModelResponse]:
    """Around ``RunDriver._call_model``."""

    @functools.wraps(fn)
    async def call_model(self: RunDriver, request: ModelRequest) -> ModelResponse:
        if not self.observer.enabled():
            return await fn(self, request)
        routed = self._step
        spec = self.agent.model if routed is None else routed.spec
        model = self.model if routed is None else routed.model
        scope = self.observer.model_called(
            ModelCalled(
                run_id=self.run_id, step=request.step + 1, provider=model.provider, model=spec.name
            )
        )
        try:
            response = await fn(self, request)
            usage = response.usage + self._rejected.usage  # every answered attempt's
            finish = response.finish_reason or ("tool_calls" if response.tool_calls else "stop")
            scope.ended(
                ModelAnswered(
                    model=response.model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    finish_reason=finish,
                    tool_calls=len(response.tool_calls),
                    cost_usd=spec.cost_usd(response.usage) + self._rejected.cost_usd,
                    retries=max(0, self._model_attempts - 1),
                )
            )
            return response
        except Exception as exc:
            spent = self._rejected.usage  # refused answers still cost tokens
            scope.ended(
                ModelFailed(
                    input_tokens=spent.input_tokens,
                    output_tokens=spent.output_tokens,
                    cost_usd=self._rejected.cost_usd,
                    retries=max(0, self._model_attempts - 1),
                )
            )
            scope.failed(exc)
            raise
        finally:
            scope.close()

    return call_model


def decision(fn: _Method[Any]) -> _Method[Any]:
    """After ``RunDriver._govern``: the decision it appended, for the observer and the call's
    tool hook."""

    @functools.wraps(fn)
    async def govern(self: RunDriver, call_id: str, *args: Any) -> Any:
        result = await fn(self, call_id, *args)
        if not self.observer.enabled():
            return result
        for event in reversed(self._unflushed):
            body = event.body
            if isinstance(body, PolicyEvaluated) and body.call_id == call_id:
                _decisions.setdefault(self, {})[call_id] = body
                self.observer.policy_decided(body)
                break
        return result

    return govern


def tool_call(fn: _Method[Outcome]) -> _Method[Outcome]:
    """Around ``RunDriver._invoke``."""

    @functools.wraps(fn)
    async def invoke(
        self: RunDriver, call: PendingCall, key: str | None = None, watch: bool = False
    ) -> Outcome:
        if not self.observer.enabled():
            return await fn(self, call, key, watch)
        tool = self.tools.find(call.tool)
        decisions = _decisions.get(self)
        scope = self.observer.tool_called(
            ToolCalled(
                run_id=self.run_id,
                step=self.state.step,
                tool=call.tool,
                call_id=call.call_id,
                effect=call.effect,
                version=None if tool is None else tool.version,
                idempotency_key=key,
                approval_id=call.approval_id,
                decision=None if decisions is None else decisions.get(call.call_id),
            )
        )
        try:
            outcome = await fn(self, call, key, watch)
            made = outcome.attempts  # a call the open circuit refused was not made
            if outcome.error is not None and outcome.error.code == CIRCUIT_OPEN:
                made -= 1
            scope.ended(
                ToolEnded(
                    outcome="unknown"
                    if outcome.unknown
                    else ("succeeded" if outcome.ok else "failed"),
                    attempts=outcome.attempts,
                    cost_usd=round((tool.cost_usd if tool else 0.0) * made, 12),
                    error_code=None if outcome.error is None else outcome.error.code,
                    error_message=None if outcome.error is None else outcome.error.message,
                )
            )
            return outcome
        except Exception as exc:
            scope.failed(exc)
            raise
        finally:
            scope.close()

    return invoke
