"""OpenTelemetry spans for runs, steps, model calls and tool calls (GenAI semantic conventions).

Charter depends on ``opentelemetry-api`` only. With no tracer provider installed (the default)
every hook below checks one global and calls straight through: no span, no attribute is built.
Install one yourself, or let the ``charter`` command do it from the standard ``OTEL_*``
variables (:func:`configure_from_env`, needs the ``charter[otel]`` extra).

Spans, one trace per run:

* ``invoke_agent {agent}`` — one per claim of the run (a worker driving it until it parks,
  finishes or loses its lease). Its parent is the run's *virtual root*: a remote span context
  derived from the run id, so every claim of a run, in any process, lands in the same trace.
* ``charter.step`` — one model step: the model call and the tool calls it proposed.
* ``chat {model}`` — the model call (retries inside it; the span ends with the response).
* ``execute_tool {tool}`` — one tool call, with its policy decision, idempotency key, attempts.

The trace id is the first 128 bits of ``sha256(run_id)`` (:func:`trace_id_for`); the virtual
root's span id the next 64. Anyone holding a run id can compute its trace id and vice versa
look a trace up by run (``charter.run_id`` is on every span).

Attributes follow the GenAI conventions (``gen_ai.operation.name``, ``gen_ai.agent.name``,
``gen_ai.conversation.id`` = the run id, ``gen_ai.request.model``, ``gen_ai.usage.*``,
``gen_ai.tool.name``, ``gen_ai.tool.call.id``); what they lack is under ``charter.*``
(tenant, principal, step, policy outcome/rule ids/hash, approval id, retries, idempotency key,
cost). Prompts and tool payloads are never put on spans.
"""

from __future__ import annotations

import functools
import hashlib
import os
import weakref
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from charter.clock import trace_id_for
from charter.events import PolicyEvaluated

if TYPE_CHECKING:
    from charter._engine.executor import Outcome
    from charter._engine.loop import RunDriver
    from charter._engine.state import PendingCall, RunState
    from charter.models import ModelRequest, ModelResponse
    from charter.tools import Tool

__all__ = [
    "configure_from_env",
    "enabled",
    "trace_id_for",
    "traceparent",
]

_TRACER_NAME = "charter"
T = TypeVar("T")
_Method = Callable[..., Awaitable[T]]


def enabled() -> bool:
    """True when a real tracer provider is installed (the only cost when it is not)."""
    return _tracer() is not None


# The provider last seen and its tracer (None: no real provider). One identity check per hook;
# an SDK provider would build a new tracer on every ``get_tracer``.
_seen: list[tuple[object, trace.Tracer | None]] = [(None, None)]


def _tracer() -> trace.Tracer | None:
    provider = trace.get_tracer_provider()
    seen, tracer = _seen[0]
    if provider is not seen:
        off = isinstance(provider, ProxyTracerProvider | trace.NoOpTracerProvider)
        tracer = None if off else provider.get_tracer(_TRACER_NAME)
        _seen[0] = (provider, tracer)
    return tracer


def _ids(run_id: str) -> tuple[int, int]:
    digest = hashlib.sha256(run_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def _root(run_id: str) -> otel_context.Context:
    trace_id, span_id = _ids(run_id)
    parent = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def traceparent(run_id: str, call_id: str) -> str:
    """A W3C ``traceparent`` for a tool call: the current span's when it is one of the run's
    (tracing on), else the run's trace id with a span id derived from the call (tracing off:
    external systems still receive the run's trace id)."""
    current = trace.get_current_span().get_span_context()
    trace_id, _ = _ids(run_id)
    if current.is_valid and current.trace_id == trace_id:
        flags = "01" if current.trace_flags.sampled else "00"
        return (
            f"00-{trace.format_trace_id(trace_id)}-{trace.format_span_id(current.span_id)}-{flags}"
        )
    span_id = int.from_bytes(hashlib.sha256(f"{run_id}|{call_id}".encode()).digest()[:8], "big")
    return f"00-{trace.format_trace_id(trace_id)}-{trace.format_span_id(span_id or 1)}-00"


def configure_from_env() -> bool:
    """Install an SDK tracer provider with a batching OTLP/HTTP exporter when the standard
    variables ask for one (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT``, or
    ``OTEL_TRACES_EXPORTER=otlp``); ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
    turn it off. Returns whether tracing is on. Does nothing when a provider is already set.
    """
    if enabled():
        return True
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    wanted = exporter_name == "otlp" or any(
        os.environ.get(v)
        for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    off = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if not wanted or off or exporter_name == "none":
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        from charter.errors import ConfigError

        raise ConfigError(
            "OTEL_* variables ask for trace export but the OpenTelemetry SDK is not installed:"
            " install charter[otel], or unset OTEL_EXPORTER_OTLP_ENDPOINT"
        ) from None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "charter")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


# -- hooks on RunDriver methods (decorators: the loop's bodies stay untouched) ----------------
#
# They run several times a step, so they are lean (bench/tracing_overhead.py measures them):
# one provider check that also yields the tracer, spans started with ``start_span`` and made
# current with one ``attach`` (no context-manager layers), each span's attributes built in one
# dict at its start and one at its end.

_decisions: weakref.WeakKeyDictionary[Any, dict[str, PolicyEvaluated]] = weakref.WeakKeyDictionary()


def _start(
    tracer: trace.Tracer,
    name: str,
    attributes: dict[str, Any],
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: otel_context.Context | None = None,
) -> tuple[Span, Token[otel_context.Context]]:
    """Start a span and make it the current one (what ``start_as_current_span`` does)."""
    span = tracer.start_span(name, context, kind, attributes)
    return span, otel_context.attach(trace.set_span_in_context(span))


def _end(span: Span, token: Token[otel_context.Context]) -> None:
    otel_context.detach(token)
    span.end()


def _fail(span: Span, exc: Exception) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute("error.type", getattr(exc, "code", type(exc).__name__))


def run_span(fn: _Method[RunState]) -> _Method[RunState]:
    """``invoke_agent``: around ``RunDriver.drive`` (one claim of the run)."""

    @functools.wraps(fn)
    async def drive(self: RunDriver) -> RunState:
        tracer = _tracer()
        if tracer is None:
            return await fn(self)
        attrs = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.agent.name,
            "gen_ai.conversation.id": self.run_id,
            "charter.run_id": self.run_id,
            "charter.tenant": self.record.tenant,
            "gen_ai.agent.version": self.agent.version,
            "charter.principal": self.record.principal,
            "charter.worker": self.worker,
            "charter.claim.epoch": self.claim.epoch,
            "charter.claim.previous_status": self.claim.previous_status or "",
        }
        name = f"invoke_agent {self.agent.name}"
        span, token = _start(tracer, name, attrs, context=_root(self.run_id))
        try:
            state = await fn(self)
            done: dict[str, Any] = {
                "charter.run.status": state.status,
                "charter.run.steps": state.step,
                "charter.run.tool_calls": state.tool_calls,
                "charter.usage.tokens": state.tokens,
                "charter.cost_usd": state.cost_usd,
            }
            if state.reason:
                done["charter.run.reason"] = state.reason
            span.set_attributes(done)
            return state
        except Exception as exc:
            _fail(span, exc)
            raise
        finally:
            _end(span, token)

    return drive


def step_span(fn: _Method[None]) -> _Method[None]:
    """``charter.step``: around ``RunDriver._model_step`` (the model call and its tool calls)."""

    @functools.wraps(fn)
    async def model_step(self: RunDriver) -> None:
        tracer = _tracer()
        if tracer is None:
            return await fn(self)
        attrs = {"gen_ai.conversation.id": self.run_id, "charter.step": self.state.step + 1}
        span, token = _start(tracer, "charter.step", attrs)
        try:
            return await fn(self)
        except Exception as exc:
            _fail(span, exc)
            raise
        finally:
            _end(span, token)

    return model_step


def chat_span(fn: _Method[ModelResponse]) -> _Method[ModelResponse]:
    """``chat {model}``: around ``RunDriver._call_model``."""

    @functools.wraps(fn)
    async def call_model(self: RunDriver, request: ModelRequest) -> ModelResponse:
        tracer = _tracer()
        if tracer is None:
            return await fn(self, request)
        routed = self._step
        spec = self.agent.model if routed is None else routed.spec
        model = self.model if routed is None else routed.model
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": model.provider,
            "gen_ai.request.model": spec.name,
            "gen_ai.conversation.id": self.run_id,
            "charter.step": request.step + 1,
        }
        span, token = _start(tracer, f"chat {spec.name}", attrs, kind=SpanKind.CLIENT)
        try:
            response = await fn(self, request)
            usage = response.usage + self._rejected.usage  # every answered attempt's
            finish = response.finish_reason or ("tool_calls" if response.tool_calls else "stop")
            span.set_attributes(
                {
                    "gen_ai.response.model": response.model,
                    "gen_ai.usage.input_tokens": usage.input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "gen_ai.response.finish_reasons": (finish,),
                    "charter.tool_calls": len(response.tool_calls),
                    "charter.cost_usd": spec.cost_usd(response.usage) + self._rejected.cost_usd,
                    "charter.retries": max(0, self._model_attempts - 1),
                }
            )
            return response
        except Exception as exc:
            spent = self._rejected.usage  # refused answers still cost tokens
            span.set_attributes(
                {
                    "charter.retries": max(0, self._model_attempts - 1),
                    "gen_ai.usage.input_tokens": spent.input_tokens,
                    "gen_ai.usage.output_tokens": spent.output_tokens,
                    "charter.cost_usd": self._rejected.cost_usd,
                }
            )
            _fail(span, exc)
            raise
        finally:
            _end(span, token)

    return call_model


def decision_hook(fn: _Method[Any]) -> _Method[Any]:
    """Around ``RunDriver._govern``: keep the decision for the tool span, note it on the step."""

    @functools.wraps(fn)
    async def govern(self: RunDriver, call_id: str, *args: Any) -> Any:
        result = await fn(self, call_id, *args)
        if _tracer() is None:
            return result
        for event in reversed(self._unflushed):
            body = event.body
            if isinstance(body, PolicyEvaluated) and body.call_id == call_id:
                _decisions.setdefault(self, {})[call_id] = body
                trace.get_current_span().add_event(
                    "charter.policy_evaluated",
                    {
                        "gen_ai.tool.call.id": call_id,
                        "gen_ai.tool.name": body.tool,
                        "charter.policy.outcome": body.outcome,
                        "charter.policy.rule_ids": body.rule_ids,
                    },
                )
                break
        return result

    return govern


def tool_span(fn: _Method[Outcome]) -> _Method[Outcome]:
    """``execute_tool {tool}``: around ``RunDriver._invoke``."""

    @functools.wraps(fn)
    async def invoke(
        self: RunDriver, call: PendingCall, key: str | None = None, watch: bool = False
    ) -> Outcome:
        tracer = _tracer()
        if tracer is None:
            return await fn(self, call, key, watch)
        tool = self.tools.find(call.tool)
        span, token = _start(
            tracer, f"execute_tool {call.tool}", _tool_attrs(self, call, key, tool)
        )
        try:
            outcome = await fn(self, call, key, watch)
            span.set_attributes(_outcome_attrs(outcome, tool))
            if outcome.error is not None:
                span.set_status(Status(StatusCode.ERROR, outcome.error.message))
            return outcome
        except Exception as exc:
            _fail(span, exc)
            raise
        finally:
            _end(span, token)

    return invoke


def _tool_attrs(
    driver: RunDriver, call: PendingCall, key: str | None, tool: Tool | None
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.tool,
        "gen_ai.tool.call.id": call.call_id,
        "gen_ai.tool.type": "function",
        "gen_ai.conversation.id": driver.run_id,
        "charter.step": driver.state.step,
        "charter.tool.effect": call.effect,
    }
    if tool is not None:
        attrs["charter.tool.version"] = tool.version
    if key is not None:
        attrs["charter.idempotency_key"] = key
    if call.approval_id is not None:
        attrs["charter.approval.id"] = call.approval_id
    decisions = _decisions.get(driver)
    decision = None if decisions is None else decisions.get(call.call_id)
    if decision is not None:
        attrs["charter.policy.outcome"] = decision.outcome
        attrs["charter.policy.rule_ids"] = decision.rule_ids
        attrs["charter.policy.hash"] = decision.policy_hash
        attrs["charter.policy.rewritten"] = decision.rewritten
    return attrs


def _outcome_attrs(outcome: Outcome, tool: Tool | None) -> dict[str, Any]:
    made = outcome.attempts
    if outcome.error is not None and outcome.error.code == "circuit_open":
        made -= 1
    attrs: dict[str, Any] = {
        "charter.tool.attempts": outcome.attempts,
        "charter.retries": max(0, outcome.attempts - 1),
        "charter.tool.outcome": "unknown"
        if outcome.unknown
        else ("succeeded" if outcome.ok else "failed"),
        "charter.cost_usd": round((tool.cost_usd if tool else 0.0) * made, 12),
    }
    if outcome.error is not None:
        attrs["error.type"] = outcome.error.code
    return attrs
