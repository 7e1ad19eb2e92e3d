"""The tool executor: retries with backoff, timeouts, unknown outcomes, the circuit breaker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from charter import RetryPolicy, Tool, ToolContext, TransientToolError, tool
from charter._engine.executor import CircuitBreaker, Outcome, ToolExecutor

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)
CTX = ToolContext(
    run_id="run_x",
    tenant="acme",
    principal="ann",
    step=1,
    call_id="call_0_0",
    idempotency_key="run_x:1:call_0_0",
)


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _call(
    t: Tool,
    arguments: dict[str, Any] | None = None,
    *,
    executor: ToolExecutor | None = None,
    deadline: float | None = None,
) -> Outcome:
    executor = executor or ToolExecutor(breaker=CircuitBreaker(threshold=1000))

    async def main() -> Outcome:
        return await executor.call(t, CTX, arguments or {}, deadline=deadline)

    return asyncio.run(main())


def _failing_then_ok(failures: int, *, sync: bool) -> tuple[Tool, list[ToolContext]]:
    """A read tool that raises TransientToolError ``failures`` times, then answers."""
    calls: list[ToolContext] = []

    def body(ctx: ToolContext, x: int) -> int:
        calls.append(ctx)
        if len(calls) <= failures:
            raise TransientToolError("try later")
        return x * 2

    if sync:
        return tool(name="flaky_sync", retry=FAST_RETRY)(body), calls

    async def flaky_async(ctx: ToolContext, x: int) -> int:
        return body(ctx, x)

    return tool(retry=FAST_RETRY)(flaky_async), calls


# -- retries ----------------------------------------------------------------------------------


def test_async_tool_failing_transiently_twice_is_called_three_times_and_succeeds() -> None:
    flaky, calls = _failing_then_ok(2, sync=False)
    outcome = _call(flaky, {"x": 21})
    assert outcome.ok
    assert outcome.output == 42
    assert outcome.attempts == 3
    assert len(calls) == 3
    assert [c.attempt for c in calls] == [1, 2, 3]


def test_sync_tool_failing_transiently_twice_is_called_three_times_and_succeeds() -> None:
    flaky, calls = _failing_then_ok(2, sync=True)
    outcome = _call(flaky, {"x": 21})
    assert outcome.ok
    assert outcome.output == 42
    assert outcome.attempts == 3
    assert len(calls) == 3


def test_sync_tools_run_in_a_worker_thread() -> None:
    seen: list[int] = []

    @tool
    def where() -> str:
        seen.append(threading.get_ident())
        return "ok"

    outcome = _call(where)
    assert outcome.ok
    assert seen and seen[0] != threading.get_ident()


def test_a_tool_that_keeps_failing_stops_at_max_attempts() -> None:
    calls = 0

    @tool(retry=RetryPolicy(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.002))
    async def down() -> str:
        nonlocal calls
        calls += 1
        raise TransientToolError("still down")

    outcome = _call(down)
    assert not outcome.ok
    assert calls == 4
    assert outcome.attempts == 4
    assert outcome.error is not None
    assert outcome.error.retryable
    assert outcome.error.message == "still down"


def test_a_transient_failure_is_recorded_with_transient_tool_errors_code() -> None:
    # errors.py gives TransientToolError the stable code "tool_transient"; the structured error
    # in the log should use the same name.
    down, _ = _failing_then_ok(10, sync=False)
    outcome = _call(down, {"x": 1})
    assert outcome.error is not None
    assert outcome.error.code == TransientToolError.code


def test_a_plain_exception_is_not_retried_and_is_reported_as_tool_raised() -> None:
    calls = 0

    @tool(retry=FAST_RETRY)
    async def broken(order_id: str) -> str:
        nonlocal calls
        calls += 1
        raise ValueError(f"no order {order_id}")

    outcome = _call(broken, {"order_id": "A1"})
    assert not outcome.ok
    assert calls == 1
    assert outcome.attempts == 1
    assert outcome.error is not None
    assert outcome.error.code == "tool_raised"
    assert outcome.error.message == "ValueError: no order A1"
    assert not outcome.error.retryable
    assert not outcome.unknown


# -- timeouts ---------------------------------------------------------------------------------


def _slow_first(*, effect: str, idempotent: bool | None = None) -> tuple[Tool, list[ToolContext]]:
    """A tool whose first call hangs past its timeout and whose later calls answer at once."""
    calls: list[ToolContext] = []

    async def slow_first(ctx: ToolContext) -> str:
        calls.append(ctx)
        if len(calls) == 1:
            await asyncio.sleep(5)
        return "done"

    made = tool(effect=effect, idempotent=idempotent, timeout_s=0.05, retry=FAST_RETRY)  # type: ignore[call-overload]
    return made(slow_first), calls


def test_a_read_that_times_out_is_retried() -> None:
    read, calls = _slow_first(effect="read")
    outcome = _call(read)
    assert outcome.ok
    assert outcome.output == "done"
    assert len(calls) == 2
    assert outcome.attempts == 2


def test_a_non_idempotent_write_that_times_out_is_unknown_and_not_retried() -> None:
    write, calls = _slow_first(effect="write")
    assert not write.idempotent
    outcome = _call(write)
    assert not outcome.ok
    assert outcome.unknown
    assert len(calls) == 1
    assert outcome.attempts == 1
    assert outcome.error is not None
    assert outcome.error.code == "timeout"


def test_an_idempotent_write_stopped_at_its_timeout_is_unknown_not_retried_here() -> None:
    """The executor never starts a write again after a timeout: the run settles the unknown
    outcome (for an idempotent tool, by calling it again with the same key)."""
    write, calls = _slow_first(effect="write", idempotent=True)
    outcome = _call(write)
    assert not outcome.ok
    assert outcome.unknown and outcome.cause == "timeout"
    assert len(calls) == 1


def test_a_deadline_stops_retries() -> None:
    clock = FakeClock()
    calls = 0

    # Each attempt "takes" one second on the executor's clock; the deadline allows 2.5.
    @tool(retry=RetryPolicy(max_attempts=100, initial_backoff_s=0.001, jitter=0.0, multiplier=1))
    async def slow_and_failing() -> str:
        nonlocal calls
        calls += 1
        clock.advance(1.0)
        raise TransientToolError("busy")

    executor = ToolExecutor(breaker=CircuitBreaker(threshold=1000), clock=clock)
    outcome = _call(slow_and_failing, executor=executor, deadline=2.5)
    assert not outcome.ok
    assert calls == 3
    assert outcome.attempts == 3


# -- circuit breaker --------------------------------------------------------------------------


def _breaker_setup(
    threshold: int = 2, cooldown_s: float = 10.0
) -> tuple[FakeClock, ToolExecutor, Tool, list[bool], Callable[[], int]]:
    clock = FakeClock(100.0)
    executor = ToolExecutor(
        breaker=CircuitBreaker(threshold=threshold, cooldown_s=cooldown_s, clock=clock)
    )
    fail = [True]
    count = [0]

    @tool(name="fragile")
    async def fragile() -> str:
        count[0] += 1
        if fail[0]:
            raise RuntimeError("backend down")
        return "up"

    return clock, executor, fragile, fail, lambda: count[0]


def test_the_circuit_opens_after_the_threshold_and_fails_fast() -> None:
    _, executor, fragile, _, calls = _breaker_setup(threshold=2)

    first, second = _call(fragile, executor=executor), _call(fragile, executor=executor)
    assert [o.error.code for o in (first, second) if o.error] == ["tool_raised", "tool_raised"]

    third = _call(fragile, executor=executor)
    assert calls() == 2, "an open circuit must not call the tool"
    assert third.error is not None
    assert third.error.code == "circuit_open"
    assert third.error.retryable


def test_after_the_cool_down_one_trial_call_goes_through_and_success_closes_the_circuit() -> None:
    clock, executor, fragile, fail, calls = _breaker_setup(threshold=2, cooldown_s=10.0)
    for _ in range(2):
        _call(fragile, executor=executor)

    clock.advance(9.0)
    assert _call(fragile, executor=executor).error.code == "circuit_open"  # type: ignore[union-attr]
    assert calls() == 2

    clock.advance(1.0)
    fail[0] = False
    trial = _call(fragile, executor=executor)
    assert trial.ok
    assert calls() == 3
    # Closed again: a single new failure does not reopen it.
    fail[0] = True
    _call(fragile, executor=executor)
    fail[0] = False
    assert _call(fragile, executor=executor).ok


def test_a_failed_trial_call_reopens_the_circuit_at_once() -> None:
    clock, executor, fragile, _, calls = _breaker_setup(threshold=3, cooldown_s=10.0)
    for _ in range(3):
        _call(fragile, executor=executor)
    clock.advance(10.0)

    trial = _call(fragile, executor=executor)
    assert trial.error is not None
    assert trial.error.code == "tool_raised"
    assert calls() == 4

    again = _call(fragile, executor=executor)
    assert again.error is not None
    assert again.error.code == "circuit_open"
    assert calls() == 4


def test_the_breaker_counts_tools_separately() -> None:
    _, executor, fragile, _, _ = _breaker_setup(threshold=1)
    _call(fragile, executor=executor)

    @tool(name="sturdy")
    async def sturdy() -> str:
        return "fine"

    assert _call(fragile, executor=executor).error.code == "circuit_open"  # type: ignore[union-attr]
    assert _call(sturdy, executor=executor).ok


def test_after_the_cool_down_only_one_trial_call_is_let_through() -> None:
    clock = FakeClock(100.0)
    executor = ToolExecutor(breaker=CircuitBreaker(threshold=1, cooldown_s=10.0, clock=clock))
    calls = 0

    @tool(name="probe")
    async def probe() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # the trial is still in flight when the second call comes
        raise RuntimeError("still down")

    async def main() -> list[Outcome]:
        await executor.call(probe, CTX, {})  # opens the circuit
        clock.advance(10.0)
        return list(await asyncio.gather(*(executor.call(probe, CTX, {}) for _ in range(2))))

    outcomes = asyncio.run(main())
    assert calls == 2, "the failing call, then exactly one trial"
    assert sorted(o.error.code for o in outcomes if o.error) == ["circuit_open", "tool_raised"]
