"""``Store.stats()`` and ``charter stats`` over a known log, on SQLite and PostgreSQL.

The hand-built log goes through the store's real API (create a run, claim it, commit its
events), with the event bodies the runtime writes; its figures are worked out by hand below.
Real runs through the runtime check that what the loop records (tool versions, tokens, costs)
is what stats reads.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.helpers.cli import run_charter

from charter import Agent, ModelSpec, Runtime, tool
from charter._engine.state import fold_all
from charter.events import (
    GENESIS_HASH,
    ApprovalDecided,
    ApprovalRequested,
    BudgetExceeded,
    ErrorInfo,
    Event,
    EventBody,
    MessageReceived,
    ModelCallFailed,
    ModelResponded,
    ProposedCall,
    RunFinished,
    RunStarted,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallSucceeded,
    Usage,
)
from charter.stats import StatsReport, parse_since
from charter.store import Commit, NewRun, Store, open_store

T = TypeVar("T")
NOW = time.time()
DAY = 86_400.0


def _with_store(url: str, scenario: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = open_store(url)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


async def _append_run(
    store: Store,
    run_id: str,
    bodies: list[EventBody],
    *,
    agent: str = "support",
    tenant: str = "acme",
    created_at: float = NOW - 3600,
) -> None:
    """A run whose log is ``run_started``, the input, then ``bodies``, one second apart."""
    started = RunStarted(
        agent_name=agent,
        agent_version="1",
        agent_hash=f"h_{agent}",
        tenant=tenant,
        principal="ann",
        input="hi",
    )
    first = [started, MessageReceived(text="hi", source="input")]
    events: list[Event] = []
    for body in [*first, *bodies]:
        events.append(
            Event.seal(
                run_id=run_id,
                seq=len(events) + 1,
                at=created_at + len(events),
                body=body,
                prev_hash=events[-1].hash if events else GENESIS_HASH,
            )
        )
    head = events[:2]
    await store.create_run(
        NewRun(
            run_id=run_id,
            agent_name=agent,
            agent_version="1",
            agent_hash=f"h_{agent}",
            agent_spec="{}",
            tenant=tenant,
            principal="ann",
            events=tuple(head),
            state=fold_all(head).model_dump_json(),
            created_at=created_at,
        )
    )
    [claim] = await store.claim("builder", lease_s=60, limit=1, run_id=run_id)
    state = fold_all(events)
    await store.commit(
        Commit(
            run_id=run_id,
            worker_id="builder",
            epoch=claim.epoch,
            expected_seq=2,
            events=tuple(events[2:]),
            state=state.model_dump_json(),
            status=state.status,
            ready_at=None,
            release=True,
        )
    )


def _model(step: int, latency: float, tokens: tuple[int, int], cost: float, *calls: str) -> Any:
    return ModelResponded(
        step=step,
        provider="scripted",
        model="m",
        prompt_hash="p",
        content=None if calls else "done",
        tool_calls=tuple(
            ProposedCall(call_id=c, name=c.split("-")[0], arguments="{}") for c in calls
        ),
        usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]),
        latency_ms=latency,
        cost_usd=cost,
    )


def _proposed(call_id: str, tool_name: str, version: str | None) -> ToolCallProposed:
    effect = "read" if tool_name == "lookup" else "write"
    return ToolCallProposed(
        step=1, call_id=call_id, tool=tool_name, effect=effect, arguments={}, tool_version=version
    )


def _approval(call_id: str, at: float) -> ApprovalRequested:
    return ApprovalRequested(
        approval_id=f"ap-{call_id}",
        call_id=call_id,
        tool="refund",
        arguments={},
        arguments_hash="x",
        risk="high",
        reason="refunds need a lead",
        requested_by="ann",
        tier="lead",
        role="support_lead",
        expires_at=at + 3600,
    )


def _decided(call_id: str, decision: Any, decided_at: float) -> ApprovalDecided:
    return ApprovalDecided(
        approval_id=f"ap-{call_id}",
        call_id=call_id,
        decision=decision,
        decided_by="lee",
        decided_at=decided_at,
        arguments_hash="x",
    )


async def _build_log(store: Store) -> None:
    """Six runs; the figures the tests expect are worked out from these."""
    t_c, t_d = NOW - 3000, NOW - 2000
    # A: support/acme, succeeded. A lookup (v2) that needed 2 attempts.
    await _append_run(store, "run_a", [
        _model(1, 100.0, (100, 20), 0.01, "lookup-a"),
        _proposed("lookup-a", "lookup", "2"),
        ToolCallSucceeded(call_id="lookup-a", tool="lookup", output={}, attempts=2,
                          duration_ms=10.0, cost_usd=0.002),
        _model(2, 300.0, (200, 30), 0.02),
        RunFinished(status="succeeded", output="done"),
    ])  # fmt: skip
    # B: support/acme, failed. A refund (v1) that failed after 3 attempts.
    await _append_run(store, "run_b", [
        _model(1, 200.0, (50, 10), 0.005, "refund-b"),
        _proposed("refund-b", "refund", "1"),
        ToolCallFailed(call_id="refund-b", tool="refund",
                       error=ErrorInfo(code="tool_error", message="503"), attempts=3,
                       duration_ms=30.0),
        _model(2, 400.0, (60, 10), 0.005),
        RunFinished(status="failed", reason="gave up"),
    ])  # fmt: skip
    # C: support/globex, escalated on a budget; a refund denied by an approver after 30 s.
    await _append_run(store, "run_c", [
        _model(1, 500.0, (10, 5), 0.0, "refund-c"),
        _proposed("refund-c", "refund", "1"),
        _approval("refund-c", t_c + 4),
        _decided("refund-c", "denied", t_c + 4 + 30),
        ToolCallRejected(call_id="refund-c", tool="refund",
                         error=ErrorInfo(code="approval_denied", message="no")),
        BudgetExceeded(budget="max_steps", limit=1, used=1),
        RunFinished(status="escalated", reason="budget max_steps exhausted: used 1 of 1"),
    ], tenant="globex", created_at=t_c)  # fmt: skip
    # D: billing/acme, escalated by a failing model after a refund granted after 90 s.
    await _append_run(store, "run_d", [
        _model(1, 600.0, (10, 5), 0.0, "refund-d"),
        _proposed("refund-d", "refund", "1"),
        _approval("refund-d", t_d + 4),
        _decided("refund-d", "granted", t_d + 4 + 90),
        ToolCallSucceeded(call_id="refund-d", tool="refund", output="ok", duration_ms=50.0,
                          cost_usd=0.5),
        ModelCallFailed(step=2, provider="scripted", model="m",
                        error=ErrorInfo(code="model", message="boom"), attempts=3),
        RunFinished(status="escalated", reason="model call failed: boom"),
    ], agent="billing", created_at=t_d)  # fmt: skip
    # E: support/acme, succeeded ten days ago (outside --since 7d). No cost recorded.
    await _append_run(store, "run_e", [
        _model(1, 700.0, (1000, 100), 0.0, "lookup-e"),
        _proposed("lookup-e", "lookup", "2"),
        ToolCallSucceeded(call_id="lookup-e", tool="lookup", output={}, duration_ms=20.0),
        _model(2, 800.0, (1000, 100), 0.0),
        RunFinished(status="succeeded", output="done"),
    ], created_at=NOW - 10 * DAY)  # fmt: skip
    # F: support/acme, still running, with an approval not decided yet.
    await _append_run(store, "run_f", [
        _model(1, 900.0, (5, 5), 0.001, "refund-f"),
        _proposed("refund-f", "refund", "1"),
        _approval("refund-f", NOW),
    ])  # fmt: skip


def _stats(url: str, **filters: Any) -> StatsReport:
    async def scenario(store: Store) -> StatsReport:
        await _build_log(store)
        return await store.stats(**filters)

    return _with_store(url, scenario)


@pytest.mark.replay_exempt(
    "writes logs by hand through the store API (made-up agent specs and events), not"
    " runs the engine made"
)
def test_stats_over_the_whole_log_match_the_figures_worked_out_by_hand(store_url: str) -> None:
    r = _stats(store_url)
    assert (r.runs, r.finished, r.in_flight) == (6, 5, 1)
    assert r.by_status == {"escalated": 2, "failed": 1, "running": 1, "succeeded": 2}
    assert r.completion_rate == 0.4  # 2 of 5 finished
    assert r.escalation_rate == 0.4
    assert r.escalation_reasons == {"budget max_steps exhausted": 1, "model call failed": 1}
    # Steps: 9 model responses + 1 failed model call; retries: 1 (A) + 2 (B) + 2 (D's model).
    assert (r.steps, r.model_failures, r.retries) == (10, 1, 5)
    assert r.retries_per_step == 0.5
    latencies = [100, 300, 200, 400, 500, 600, 700, 800, 900]
    assert r.model_latency_ms.count == 9
    assert (r.model_latency_ms.p50, r.model_latency_ms.p95) == (500.0, 900.0)
    assert r.model_latency_ms.mean == round(sum(latencies) / 9, 3)
    # Tool durations: 10, 30, 50, 20 (the rejected call never ran).
    assert r.tool_latency_ms.count == 4
    assert (r.tool_latency_ms.p50, r.tool_latency_ms.p95) == (20.0, 50.0)
    assert r.tool_calls == 6  # F's proposal too
    assert r.tool_calls_per_successful_run == 1.0  # A and E: one each
    assert (r.input_tokens, r.output_tokens) == (2435, 285)
    assert r.tokens_per_run == round(2720 / 6, 1)
    assert r.tokens_per_successful_run == (350 + 2200) / 2
    assert r.cost_usd == pytest.approx(0.543)
    assert r.cost_per_run_usd == pytest.approx(round(0.543 / 6, 6))
    assert r.cost_per_successful_run_usd == pytest.approx(0.032 / 2)
    by_tool = {(t.tool, t.version): t for t in r.tools}
    assert set(by_tool) == {("lookup", "2"), ("refund", "1")}
    lookup, refund = by_tool[("lookup", "2")], by_tool[("refund", "1")]
    assert (lookup.calls, lookup.succeeded, lookup.failed, lookup.rejected) == (2, 2, 0, 0)
    assert (lookup.error_rate, lookup.retries, lookup.cost_usd) == (0.0, 1, 0.002)
    assert (lookup.latency_ms.p50, lookup.latency_ms.p95) == (10.0, 20.0)
    assert (refund.calls, refund.succeeded, refund.failed, refund.rejected) == (3, 1, 1, 1)
    assert (refund.error_rate, refund.retries, refund.cost_usd) == (0.5, 2, 0.5)
    a = r.approvals
    assert (a.requested, a.granted, a.denied, a.expired, a.pending) == (3, 1, 1, 0, 1)
    # Time to decision counts from the request to the person's decision (decided_at).
    assert (a.time_to_decision_s.count, a.time_to_decision_s.p50) == (2, 30.0)
    assert a.time_to_decision_s.p95 == 90.0


@pytest.mark.replay_exempt(
    "writes logs by hand through the store API (made-up agent specs and events), not"
    " runs the engine made"
)
def test_stats_filter_by_creation_time_agent_and_tenant(store_url: str) -> None:
    async def scenario(store: Store) -> list[StatsReport]:
        await _build_log(store)
        return [
            await store.stats(since=NOW - 7 * DAY),
            await store.stats(agent="billing"),
            await store.stats(tenant="globex"),
            await store.stats(agent="support", tenant="acme", since=NOW - 7 * DAY),
            await store.stats(tenant="nobody"),
        ]

    recent, billing, globex, mixed, empty = _with_store(store_url, scenario)
    assert recent.runs == 5 and recent.by_status["succeeded"] == 1  # E is ten days old
    assert recent.model_latency_ms.count == 7
    assert billing.runs == 1 and billing.escalation_reasons == {"model call failed": 1}
    assert billing.approvals.granted == 1 and billing.approvals.denied == 0
    assert [(t.tool, t.succeeded) for t in billing.tools] == [("refund", 1)]
    assert globex.runs == 1 and globex.approvals.denied == 1
    assert [(t.tool, t.rejected) for t in globex.tools] == [("refund", 1)]
    assert sorted(mixed.by_status.items()) == [("failed", 1), ("running", 1), ("succeeded", 1)]
    assert empty.runs == 0 and empty.tools == () and empty.completion_rate is None
    assert empty.model_latency_ms.count == 0 and empty.model_latency_ms.p50 is None


@pytest.mark.replay_exempt(
    "its tools are functions local to the test, which do not import by reference:"
    " replay is unavailable outside the test by design"
)
def test_a_tool_at_two_versions_is_reported_per_version(store_url: str) -> None:
    """Two agents ship ``lookup`` at versions 3 and 4: real runs, through the runtime."""

    @tool(effect="read", version="3", name="lookup")
    def lookup_v3(order_id: str) -> str:
        """Look up an order."""
        return "shipped"

    @tool(effect="read", version="4", name="lookup", cost_usd=0.25)
    def lookup_v4(order_id: str) -> str:
        """Look up an order."""
        raise ValueError("the new lookup is broken")

    script = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]},
        {"content": "It has shipped."},
    ]
    spec = ModelSpec(provider="scripted", script=script, input_usd_per_mtok=1000.0)

    async def scenario() -> tuple[StatsReport, list[Event]]:
        async with Runtime.open(store_url) as rt:
            events = []
            for name, fn in (("old", lookup_v3), ("new", lookup_v4)):
                agent = Agent(name=name, instructions="Help.", model=spec, tools=[fn])
                record = await rt.run(agent, "Where is A1?")
                events += await rt.events(record.run_id)
            return await rt.store.stats(), events

    r, events = asyncio.run(scenario())
    proposals = [e.body for e in events if isinstance(e.body, ToolCallProposed)]
    assert sorted(p.tool_version or "" for p in proposals) == ["3", "4"]  # the loop records it
    by_version = {t.version: t for t in r.tools}
    assert set(by_version) == {"3", "4"}
    assert (by_version["3"].succeeded, by_version["3"].failed) == (1, 0)
    assert (by_version["4"].succeeded, by_version["4"].failed) == (0, 1)
    assert by_version["4"].error_rate == 1.0 and by_version["3"].error_rate == 0.0
    responses = [e.body for e in events if isinstance(e.body, ModelResponded)]
    assert r.model_latency_ms.count == len(responses) == 4
    assert r.input_tokens == sum(b.usage.input_tokens for b in responses) > 0
    assert r.output_tokens == sum(b.usage.output_tokens for b in responses)
    tool_costs = [
        e.body.cost_usd for e in events if isinstance(e.body, ToolCallSucceeded | ToolCallFailed)
    ]
    expected = sum(b.cost_usd for b in responses) + sum(tool_costs)
    assert r.cost_usd == pytest.approx(expected) and r.cost_usd > 0.25
    assert by_version["4"].cost_usd == pytest.approx(sum(tool_costs))


def test_since_accepts_minutes_hours_days_weeks_and_all() -> None:
    assert parse_since("30m", now=1000.0) == 1000.0 - 1800
    assert parse_since("24h", now=0.0) == -86_400.0
    assert parse_since("7d", now=0.0) == -7 * DAY
    assert parse_since("2w", now=0.0) == -14 * DAY
    assert parse_since("all") is None


# -- the command ----------------------------------------------------------------------------------


@pytest.fixture
def logged_db(db_url: str) -> str:
    _with_store(db_url, _build_log)
    return db_url


@pytest.mark.replay_exempt(
    "writes logs by hand through the store API (made-up agent specs and events), not"
    " runs the engine made"
)
def test_charter_stats_prints_a_readable_report(logged_db: str, tmp_path: Path) -> None:
    done = run_charter(tmp_path, "stats", "--since", "all", "--db", logged_db)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (
        "runs                6 (2 escalated, 1 failed, 1 running, 2 succeeded); 1 in flight" in out
    )
    assert "completion rate     40.0% of 5 finished" in out
    assert "escalation reasons  1 budget max_steps exhausted, 1 model call failed" in out
    assert "model latency       p50 500.0 ms  p95 900.0 ms  (9)" in out
    assert "approvals           3 requested: 1 granted, 1 denied, 0 expired, 1 pending" in out
    assert "time to decision    p50 30.0 s  p95 90.0 s  (2)" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["TOOL"][:6] == ["TOOL", "VERSION", "CALLS", "FAILED", "REJECTED", "ERROR_RATE"]
    assert lines["refund"][:7] == ["refund", "1", "3", "1", "1", "50.0%", "2"]
    assert lines["lookup"][:7] == ["lookup", "2", "2", "0", "0", "0.0%", "1"]


@pytest.mark.replay_exempt(
    "writes logs by hand through the store API (made-up agent specs and events), not"
    " runs the engine made"
)
def test_charter_stats_json_and_filters(logged_db: str, tmp_path: Path) -> None:
    done = run_charter(tmp_path, "stats", "--json", "--since", "all", "--db", logged_db)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["runs"] == 6 and report["completion_rate"] == 0.4
    assert report["approvals"]["time_to_decision_s"]["p95"] == 90.0
    assert {t["tool"]: t["version"] for t in report["tools"]} == {"lookup": "2", "refund": "1"}
    week = json.loads(run_charter(tmp_path, "stats", "--json", "--db", logged_db).stdout)
    assert week["runs"] == 5  # the default window is 7 days
    billing = run_charter(tmp_path, "stats", "--json", "--agent", "billing", "--db", logged_db)
    assert json.loads(billing.stdout)["by_status"] == {"escalated": 1}
    globex = run_charter(
        tmp_path, "stats", "--json", "--tenant", "globex", "--since", "2h", "--db", logged_db
    )  # run C is 50 minutes older than the module's NOW, which a slow suite pushes back
    assert json.loads(globex.stdout)["escalation_reasons"] == {"budget max_steps exhausted": 1}


def test_charter_stats_with_no_runs_says_so(db_url: str, tmp_path: Path) -> None:
    assert run_charter(tmp_path, "db", "migrate", "--db", db_url).returncode == 0
    done = run_charter(tmp_path, "stats", "--db", db_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "no runs"


@pytest.mark.replay_exempt(
    "writes logs by hand through the store API (made-up agent specs and events), not"
    " runs the engine made"
)
def test_a_bad_since_is_one_line_and_exit_code_2(logged_db: str, tmp_path: Path) -> None:
    done = run_charter(tmp_path, "stats", "--since", "7x", "--db", logged_db)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: --since '7x' is not a duration: use a number and a unit (30m, 24h, 7d, 2w) or all"
    ]
