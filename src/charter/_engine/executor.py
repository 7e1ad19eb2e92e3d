"""Calling tools: where each attempt runs, timeouts, retries with backoff and jitter, a
circuit breaker per tool, and slots per tool and tenant.

What may be retried depends on what is known of the effect:

* :class:`~charter.errors.TransientToolError` says nothing happened: retried for any tool.
* A timeout or a connection error leaves the effect unknown. Reads are retried. A write is
  never retried here: the caller gets an *unknown* outcome and settles it (call again with
  the same key if the tool is idempotent, ask ``reconcile``, or escalate).
* Any other exception is a definite failure, returned to the model as a structured error.

No two attempts of one write overlap: an attempt is stopped at its timeout where it can be
(async tools are cancelled, process tools killed), and a sync tool in a thread, which cannot
be stopped, is waited for past its timeout (reported as overdue) and its late result taken.
See :mod:`charter._engine.attempts`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from charter._engine import attempts
from charter._engine.attempts import Ended, OverdueHook, ProcessPool, Slots, ToolThreads
from charter._engine.decider import CIRCUIT_OPEN, Outcome
from charter.clock import Random, new_random
from charter.events import ErrorInfo
from charter.tools import Tool, ToolContext


def execution_of(tool: Tool) -> attempts.Execution:
    return "async" if tool.is_async else tool.execution


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
        rand: Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        tenant_slots: int = 16,
    ) -> None:
        self.breaker = breaker or CircuitBreaker()
        self.slots = Slots(per_tenant=tenant_slots)
        self.threads = ToolThreads()
        """Threads for sync tools (``execution="thread"``), reused when idle."""
        self.processes = ProcessPool()
        """Tool processes for ``execution="process"`` tools, kept warm between calls."""
        """Attempts running at once, per tool (``Tool.max_concurrency``) and per tenant."""
        self._rand = rand or new_random()
        self._clock = clock

    async def call(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: dict[str, Any],
        *,
        deadline: float | None = None,
        lease_until: Callable[[], float] | None = None,
        on_overdue: OverdueHook | None = None,
    ) -> Outcome:
        """Call ``tool`` under its contract; ``deadline`` is on this executor's clock.

        ``lease_until`` gives the worker's lease deadline (wall clock) for a child process's
        ``ensure_lease``; ``on_overdue`` hears of an attempt past its timeout that cannot be
        stopped.
        """
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            if self.breaker.is_open(tool.name):
                error = ErrorInfo(
                    code=CIRCUIT_OPEN,
                    message=f"{tool.name} failed repeatedly; calls are paused for a cool-down",
                    retryable=True,
                )
                return Outcome(ok=False, error=error, attempts=attempt, duration_ms=0.0)
            call_ctx = ctx if attempt == ctx.attempt else dataclasses.replace(ctx, attempt=attempt)
            outcome = await self._attempt(
                tool, call_ctx, arguments, deadline, lease_until, on_overdue
            )
            self.breaker.record(tool.name, outcome.ok)
            elapsed = (self._clock() - started) * 1000
            final = outcome.ok or outcome.unknown or not _retryable(outcome)
            delay = 0.0 if final else tool.retry.backoff(attempt, self._rand.random())
            out_of_time = deadline is not None and self._clock() + delay >= deadline
            if final or attempt >= tool.retry.max_attempts or out_of_time:
                return dataclasses.replace(outcome, attempts=attempt, duration_ms=elapsed)
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: dict[str, Any],
        deadline: float | None,
        lease_until: Callable[[], float] | None,
        on_overdue: OverdueHook | None,
    ) -> Outcome:
        timeout_s = tool.timeout_s
        if deadline is not None:
            timeout_s = max(0.001, min(timeout_s, deadline - self._clock()))
        if not await self.slots.acquire(tool, ctx.tenant, timeout_s):
            in_tool, in_tenant = self.slots.in_use(tool, ctx.tenant)
            message = (
                f"{tool.name} is busy: {in_tool} of its {tool.max_concurrency} attempts and"
                f" {in_tenant} of tenant {ctx.tenant}'s {self.slots.per_tenant} are running"
            )
            return _failed("tool_busy", message, retryable=True)  # nothing was started
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.slots.release(tool, ctx.tenant)

        try:
            ended = await self._run(
                tool, ctx, arguments, timeout_s, lease_until, on_overdue, release
            )
        finally:
            if tool.is_async or tool.execution == "process":
                release()  # a thread releases its own slot when it really ends
        return judge(tool, ended)

    async def _run(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: dict[str, Any],
        timeout_s: float,
        lease_until: Callable[[], float] | None,
        on_overdue: OverdueHook | None,
        release: Callable[[], None],
    ) -> Ended:
        if tool.execution == "process" and not tool.is_async:
            return await self.processes.run(
                tool, ctx, arguments, timeout_s, lease_until=lease_until
            )
        try:
            kwargs = tool.bind(ctx, arguments)
        except Exception as exc:
            release()
            return attempts.classify(exc, timeout_s)
        if tool.is_async:
            return await attempts.run_async(tool, kwargs, timeout_s)
        return await attempts.run_thread(
            tool,
            ctx,
            kwargs,
            timeout_s,
            threads=self.threads,
            wait_past_timeout=tool.effect == "write",
            on_overdue=on_overdue,
            on_end=release,
        )


def judge(tool: Tool, ended: Ended) -> Outcome:
    """What an ended attempt means for the call: a result, a failure, or an unknown outcome."""
    if ended.kind == "ok":
        return Outcome(ok=True, output=ended.output, late=ended.overdue)
    write = tool.effect == "write"
    if ended.kind in ("timeout", "connection", "crashed") and write:
        error = ErrorInfo(code=ended.code, message=ended.message)
        return Outcome(ok=False, error=error, unknown=True, cause=ended.kind, late=ended.overdue)
    retryable = ended.kind in ("transient", "timeout", "connection")
    error = ErrorInfo(code=ended.code, message=ended.message, retryable=retryable)
    return Outcome(ok=False, error=error, late=ended.overdue)


def _failed(code: str, message: str, *, retryable: bool = False) -> Outcome:
    return Outcome(ok=False, error=ErrorInfo(code=code, message=message, retryable=retryable))


def _retryable(outcome: Outcome) -> bool:
    return outcome.error is not None and outcome.error.retryable
