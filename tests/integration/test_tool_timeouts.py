"""Timeouts that cannot be ignored: no write attempt overlaps another, a stopped attempt is an
unknown outcome (never a failure), a thread that cannot be stopped is waited for and its late
result recorded, a child process is killed, and hung tools starve nobody else.

The tools (``tests/helpers/slow_tools.py``) keep a ledger of their own, like an external
system, so the counts here are of effects that happened, not of what the log says.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import slow_tools
from tests.helpers.cli import run_charter

from charter import Agent, LeaseLost, ModelSpec, Runtime, Tool, ToolContext
from charter._engine.executor import ToolExecutor
from charter._engine.worker import WorkerOptions
from charter.events import (
    Event,
    RunFinished,
    ToolCallFailed,
    ToolCallOverdue,
    ToolCallReconciled,
    ToolCallStarted,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
)
from charter.replay import replay_run
from charter.store import RunRecord


def _agent(tool: Tool, arguments: dict[str, Any], name: str = "payer") -> Agent:
    script = [
        {"tool_calls": [{"name": tool.name, "arguments": arguments}]},
        {"content": "done"},
    ]
    return Agent(
        name=name,
        instructions="Pay.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[tool],
    )


def _run(url: str, agent: Agent, **kwargs: Any) -> tuple[RunRecord, list[Event]]:
    """Run ``agent`` to its end; also check that the run replays identically from its log."""

    async def main() -> tuple[RunRecord, list[Event]]:
        async with Runtime.open(url) as rt:
            record = await rt.run(agent, "pay", **kwargs)
            replayed = await replay_run(rt.store, record.run_id)
            assert replayed.identical, replayed.to_dict()
            return record, await rt.events(record.run_id)

    return asyncio.run(main())


def _bodies(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e.body for e in events if isinstance(e.body, kind)]


@pytest.mark.parametrize("tool", [slow_tools.slow_pay, slow_tools.slow_pay_once])
def test_a_write_past_its_timeout_in_a_thread_runs_once_and_its_late_result_is_kept(
    tmp_path: Path, store_url: str, tool: Tool
) -> None:
    """The reported case: an idempotent write with a 0.3 s timeout whose call takes 0.75 s was
    started three times with one key, all three landed, and the log said it failed."""
    ledger = str(tmp_path / "ledger.db")
    record, events = _run(store_url, _agent(tool, {"ledger": ledger, "seconds": 0.75}))

    assert record.status == "succeeded"
    assert len(slow_tools.effects(ledger)) == 1  # one payment
    assert slow_tools.most_at_once(ledger) == 1  # and never two attempts at once
    assert _bodies(events, ToolCallFailed) == []
    (overdue,) = _bodies(events, ToolCallOverdue)
    assert overdue.waiting and overdue.execution == "thread" and overdue.timeout_s == 0.3
    (succeeded,) = _bodies(events, ToolCallSucceeded)
    assert succeeded.late and succeeded.attempts == 1
    assert "paid with key" in succeeded.output
    # The overdue report was committed while the call was still running: it comes first.
    types = [e.type for e in events]
    assert types.index("tool_call_overdue") < types.index("tool_call_succeeded")


def test_an_async_write_is_cancelled_at_its_timeout_and_called_again_with_its_key(
    tmp_path: Path, db_url: str
) -> None:
    ledger = str(tmp_path / "ledger.db")
    record, events = _run(db_url, _agent(slow_tools.async_pay, {"ledger": ledger, "seconds": 5}))

    assert record.status == "succeeded"
    assert len(slow_tools.effects(ledger)) == 1
    assert slow_tools.most_at_once(ledger) == 1  # the first attempt ended before the second
    (unknown,) = _bodies(events, ToolOutcomeUnknown)
    assert (unknown.cause, unknown.resolution) == ("timeout", "recall")
    (started,) = _bodies(events, ToolCallStarted)
    assert started.execution == "async"
    assert unknown.fencing_token > started.fencing_token
    assert _bodies(events, ToolCallFailed) == []


def test_a_hung_process_tool_is_killed_at_its_timeout_and_called_again_with_its_key(
    tmp_path: Path, db_url: str
) -> None:
    ledger = str(tmp_path / "ledger.db")
    record, events = _run(db_url, _agent(slow_tools.hung_pay, {"ledger": ledger}))

    assert record.status == "succeeded"
    keys = [k for k, e, _ in slow_tools.rows(ledger) if e == "start"]
    assert len(keys) == 2 and keys[0] == keys[1]  # killed, then called again with its key
    assert len(slow_tools.effects(ledger)) == 1
    # The killed attempt never ended on its own: no "end" row for it, and only one overall.
    assert [e for _, e, _ in slow_tools.rows(ledger)].count("end") == 1
    (started,) = _bodies(events, ToolCallStarted)
    assert started.execution == "process"
    (unknown,) = _bodies(events, ToolOutcomeUnknown)
    assert (unknown.cause, unknown.resolution) == ("timeout", "recall")


def test_a_fenced_reconcile_lets_a_killed_non_idempotent_write_be_made_again(
    tmp_path: Path, db_url: str
) -> None:
    ledger = str(tmp_path / "ledger.db")
    record, events = _run(db_url, _agent(slow_tools.hung_charge, {"ledger": ledger}))

    assert record.status == "succeeded"
    assert len(slow_tools.effects(ledger)) == 1
    (verdict,) = _bodies(events, ToolCallReconciled)
    assert verdict.applied is False and verdict.fenced
    (started,) = _bodies(events, ToolCallStarted)
    fence = [t for _, e, t in slow_tools.rows(ledger) if e == "fence"]
    assert fence == [verdict.fencing_token] and verdict.fencing_token > started.fencing_token


def test_an_unfenced_not_applied_escalates_instead_of_writing_again(
    tmp_path: Path, db_url: str
) -> None:
    ledger = str(tmp_path / "ledger.db")
    tool = slow_tools.hung_charge_unfenced
    record, events = _run(db_url, _agent(tool, {"ledger": ledger}))

    assert record.status == "escalated"
    assert slow_tools.effects(ledger) == []
    assert [e for _, e, _ in slow_tools.rows(ledger)].count("start") == 1  # never again
    (verdict,) = _bodies(events, ToolCallReconciled)
    assert verdict.applied is False and not verdict.fenced
    (finished,) = _bodies(events, RunFinished)
    assert "cannot fence" in (finished.reason or "")


def test_hung_reads_of_one_tenant_do_not_hold_up_another_tenants_run(
    tmp_path: Path, db_url: str
) -> None:
    """Threads of hung reads are the tool's own: another tenant's read runs beside them."""
    slow_tools.RELEASE.clear()
    stuck = _agent(slow_tools.stuck_lookup, {"order_id": "1"}, name="stuck")
    quick = _agent(slow_tools.quick_lookup, {"order_id": "2"}, name="quick")

    async def main() -> tuple[list[str], list[Event], int]:
        async with Runtime.open(db_url) as rt:
            stuck_runs = [await rt.start(stuck, "look", tenant="acme") for _ in range(12)]
            await rt.work(until_idle=True)  # each stuck read is abandoned at its timeout
            hung = sum(t.name == "charter-tool-stuck_lookup" for t in threading.enumerate())
            record = await rt.run(quick, "look", tenant="globex")
            statuses = [(await rt.get_run(r)).status for r in stuck_runs]
            return [record.status, *statuses], await rt.events(record.run_id), hung

    try:
        statuses, events, hung = asyncio.run(main())
    finally:
        slow_tools.RELEASE.set()
    assert hung == 12  # all twelve threads were still stuck when globex's run went through
    assert statuses[0] == "succeeded"
    (result,) = _bodies(events, ToolCallSucceeded)
    assert result.output == "order 2 is fine"
    assert set(statuses[1:]) == {"succeeded"}  # the model was told of each timeout


def test_a_tool_past_its_slots_is_busy_and_does_not_start(tmp_path: Path, db_url: str) -> None:
    """One tenant's hung attempts fill its slots; its next call fails as busy (nothing ran)."""
    slow_tools.RELEASE.clear()
    stuck = _agent(slow_tools.stuck_lookup, {"order_id": "1"}, name="stuck")

    async def main() -> list[Event]:
        async with Runtime.open(db_url) as rt:
            runs = [await rt.start(stuck, "look", tenant="acme") for _ in range(3)]
            await rt.worker(WorkerOptions(tool_slots_per_tenant=2)).run(until_idle=True)
            return [e for r in runs for e in await rt.events(r)]

    try:
        events = asyncio.run(main())
    finally:
        slow_tools.RELEASE.set()
    codes = sorted(b.error.code for b in _bodies(events, ToolCallFailed))
    assert codes == ["timeout", "timeout", "tool_busy"]
    (failed,) = [b for b in _bodies(events, ToolCallFailed) if b.error.code == "tool_busy"]
    assert failed.error.code == "tool_busy"
    assert "2 of tenant acme's 2" in failed.error.message


AGENT_YAML = """\
agent:
  name: stuck_reader
  instructions: prompt.md
  model:
    provider: scripted
    script:
      - tool_calls: [{name: stuck_lookup, arguments: {order_id: "7"}}]
      - content: "the lookup timed out"
  tools: ["tests.helpers.slow_tools:stuck_lookup"]
"""


def test_charter_run_returns_when_its_run_finishes_though_a_read_thread_hangs(
    tmp_path: Path,
) -> None:
    """The thread of the hung read never ends; the command must not wait for it."""
    (tmp_path / "agent.yaml").write_text(AGENT_YAML)
    (tmp_path / "prompt.md").write_text("Look the order up.")
    done = run_charter(tmp_path, "run", "agent.yaml", "--input", "where is 7?", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "succeeded: the lookup timed out" in done.stdout
    assert "stuck_lookup call" in done.stderr and "abandoned" in done.stderr  # the stuck report
    shown = run_charter(tmp_path, "events", done.stdout.split()[0], "--json")
    assert '"tool_call_overdue"' in shown.stdout


def test_a_process_tool_sees_the_workers_lease(tmp_path: Path) -> None:
    """``ensure_lease`` in the child reads the deadline the worker keeps renewing."""
    ledger = str(tmp_path / "ledger.db")
    ctx = ToolContext(
        run_id="run_l", tenant="acme", principal="ann", step=1, call_id="c", idempotency_key="k"
    )

    async def call(lease_until: float) -> Any:
        executor = ToolExecutor()
        try:
            return await executor.call(
                slow_tools.leased_write, ctx, {"ledger": ledger}, lease_until=lambda: lease_until
            )
        finally:
            executor.processes.close()

    with pytest.raises(LeaseLost):
        asyncio.run(call(time.time() - 1))
    assert slow_tools.effects(ledger) == []
    outcome = asyncio.run(call(time.time() + 60))
    assert outcome.ok and outcome.output == "written"
    assert slow_tools.effects(ledger) == ["k"]
