"""Calling tools: timeouts, retries with backoff and jitter, a circuit breaker per tool.

What may be retried depends on what is known of the effect:

* :class:`~charter.errors.TransientToolError` says nothing happened: retried for any tool.
* A timeout or a connection error leaves the effect unknown: retried for reads and for
  idempotent writes (with the same idempotency key); for other writes the outcome is reported
  as *unknown* and the caller reconciles or escalates, never repeats.
* Any other exception is a definite failure, returned to the model as a structured error.

Sync tools run in a thread; a sync tool that overruns its timeout is abandoned, not killed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from charter.errors import CharterError, ToolError, TransientToolError
from charter.events import ErrorInfo
from charter.tools import Tool, ToolContext


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    output: Any = None
    error: ErrorInfo | None = None
    attempts: int = 1
    duration_ms: float = 0.0
    unknown: bool = False
    """A write whose effect may or may not have happened."""
    simulated: Literal["recording", "simulator"] | None = None
    """Served instead of calling the tool (a rerun): from a recording or a simulator."""
    cached: bool = False
    """Served from the result cache (a ``cacheable`` read tool): no call was made."""


class CircuitBreaker:
    """Opens a tool's circuit after ``threshold`` consecutive failures, for ``cooldown_s``.

    While open, calls fail fast; after the cool-down one trial call is let through.
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._trial: set[str] = set()

    def is_open(self, name: str) -> bool:
        """True when a call must fail fast. After the cool-down, the first caller is the trial."""
        until = self._open_until.get(name)
        if until is None:
            return False
        if name in self._trial or self._clock() < until:
            return True
        self._trial.add(name)  # half-open: this call is the one trial; others still fail fast
        return False

    def record(self, name: str, ok: bool) -> None:
        self._trial.discard(name)
        if ok:
            self._failures.pop(name, None)
            self._open_until.pop(name, None)
            return
        count = self._failures.get(name, 0) + 1
        self._failures[name] = count
        if count >= self.threshold or name in self._open_until:
            self._open_until[name] = self._clock() + self.cooldown_s


class ToolExecutor:
    def __init__(
        self,
        *,
        breaker: CircuitBreaker | None = None,
        rand: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.breaker = breaker or CircuitBreaker()
        self._rand = rand or random.Random()
        self._clock = clock

    async def call(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: dict[str, Any],
        *,
        deadline: float | None = None,
    ) -> Outcome:
        """Call ``tool`` under its contract; ``deadline`` is on this executor's clock."""
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            if self.breaker.is_open(tool.name):
                error = ErrorInfo(
                    code="circuit_open",
                    message=f"{tool.name} failed repeatedly; calls are paused for a cool-down",
                    retryable=True,
                )
                return Outcome(ok=False, error=error, attempts=attempt, duration_ms=0.0)
            call_ctx = ctx if attempt == ctx.attempt else dataclasses.replace(ctx, attempt=attempt)
            outcome = await self._attempt(tool, call_ctx, arguments, deadline)
            self.breaker.record(tool.name, outcome.ok)
            elapsed = (self._clock() - started) * 1000
            final = outcome.ok or outcome.unknown or not _retryable(outcome)
            delay = 0.0 if final else tool.retry.backoff(attempt, self._rand.random())
            out_of_time = deadline is not None and self._clock() + delay >= deadline
            if final or attempt >= tool.retry.max_attempts or out_of_time:
                return Outcome(
                    ok=outcome.ok,
                    output=outcome.output,
                    error=outcome.error,
                    attempts=attempt,
                    duration_ms=elapsed,
                    unknown=outcome.unknown,
                )
            await asyncio.sleep(delay)

    async def _attempt(
        self, tool: Tool, ctx: ToolContext, arguments: dict[str, Any], deadline: float | None
    ) -> Outcome:
        timeout = tool.timeout_s
        if deadline is not None:
            timeout = max(0.001, min(timeout, deadline - self._clock()))
        try:
            kwargs = tool.bind(ctx, arguments)
            if tool.is_async:
                async with asyncio.timeout(timeout):
                    value = await tool.fn(**kwargs)
            else:
                value = await asyncio.wait_for(asyncio.to_thread(tool.fn, **kwargs), timeout)
        except TransientToolError as exc:
            return _failed(exc.code, str(exc), retryable=True)
        except (TimeoutError, ConnectionError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
            text = f"no answer within {timeout:g}s" if kind == "timeout" else str(exc)
            unknown = tool.effect == "write" and not tool.idempotent
            return _failed(kind, text, retryable=True, unknown=unknown)
        except ToolError as exc:
            return _failed(exc.code, exc.message)
        except CharterError as exc:
            return _failed(exc.code, exc.message)
        except Exception as exc:  # a tool's own failure, reported to the model
            return _failed("tool_raised", f"{type(exc).__name__}: {exc}")
        try:
            return Outcome(ok=True, output=tool.check_output(value))
        except ValueError as exc:  # not what the tool declares: a definite failure
            return _failed("output_invalid", str(exc))


def _failed(code: str, message: str, *, retryable: bool = False, unknown: bool = False) -> Outcome:
    return Outcome(
        ok=False, error=ErrorInfo(code=code, message=message, retryable=retryable), unknown=unknown
    )


def _retryable(outcome: Outcome) -> bool:
    return outcome.error is not None and outcome.error.retryable
