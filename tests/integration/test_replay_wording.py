"""Replay serves every outside answer from event fields, never from the wording of a reason.

Each run here is recorded and replayed with the loop's messages reworded (the kill switch's
message, the spending cap's reason), so a replay that parsed prose would get nothing back:
the switch, the spend figures and the counters come from ``KillSwitchSeen``,
``CounterReading`` and ``budget_exceeded`` instead. A log of an older Charter, which kept such
an answer only as prose, is refused (exit code 10), not parsed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.cli import run_charter

from charter import Agent, Budgets, ModelSpec, Runtime, ToolContext, tool
from charter._engine import decider
from charter._engine.limits import DAY_S, Limiter, spend_key
from charter.errors import ReplayUnavailableError
from charter.events import (
    BudgetExceeded,
    CounterReading,
    Event,
    KillSwitchSeen,
    PolicyEvaluated,
    RunFinished,
    ToolCallBlocked,
    ToolCallReconciled,
    ToolCallRejected,
    ToolOutcomeUnknown,
)
from charter.models import ModelRequest, ModelResponse, ScriptedModel
from charter.policy import PolicySet
from charter.replay import replay_run
from charter.tools import Reconciliation, RetryPolicy

pytestmark = pytest.mark.replay_exempt(
    "records with the loop's prose reworded (monkeypatched), which the teardown"
    " replay no longer has: each test replays under the rewording itself"
)

CREDITED: list[str] = []


@tool(effect="write", cost_usd=0.5)
def credit(order_id: str) -> str:
    """Credit an order (the provider charges 50 cents)."""
    CREDITED.append(order_id)
    return f"credited {order_id}"


@tool(effect="write", idempotent=False, timeout_s=0.1, retry=RetryPolicy(max_attempts=1))
async def hang(ctx: ToolContext, order_id: str) -> str:
    """A write that never answers: each attempt is cancelled at its timeout."""
    await asyncio.sleep(3600)
    return "never"


@hang.reconciler
def _hang_fenced(ctx: ToolContext, arguments: dict[str, object]) -> Reconciliation:
    return Reconciliation(applied=False, fenced=True)


def _calls(*orders: str, name: str = "credit") -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": {"order_id": o}} for o in orders]}


def _agent(
    script: list[dict[str, Any]],
    *,
    rules: list[dict[str, Any]] | None = None,
    tools: list[Any] | None = None,
    **policy: Any,
) -> Agent:
    allow = [{"id": "writes", "when": {"effect": "write"}, "then": "allow"}]
    document = {"policy": {"name": "desk", "rules": (rules or []) + allow, **policy}}
    return Agent(
        name="crediter",
        instructions="Credit orders when asked.",
        model=ModelSpec(provider="scripted", script=script),
        tools=tools or [credit],
        policy=PolicySet.from_dict(document),
    )


@pytest.fixture(autouse=True)
def reworded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's prose, reworded for recording and replay alike: nothing parses it now."""

    def switch_message(switch: KillSwitchSeen) -> str:
        return f"[{switch.reason}] halted for {switch.agent}@{switch.tenant}"

    def describe(self: Limiter, exceeded: BudgetExceeded) -> str:
        return f"over {exceeded.budget}: {exceeded.used} > {exceeded.limit}"

    monkeypatch.setattr(decider, "switch_message", switch_message)
    monkeypatch.setattr(Limiter, "describe", describe)
    CREDITED.clear()


def _bodies(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e.body for e in events if isinstance(e.body, kind)]


async def _identical(rt: Runtime, run_id: str) -> list[Event]:
    report = await replay_run(rt.store, run_id)
    assert report.identical, report.divergence
    return await rt.events(run_id)


@pytest.mark.parametrize("action", ["wait", "escalate", "reject"])
def test_a_write_stopped_by_a_kill_switch_replays_from_the_recorded_switch(
    store_url: str, action: str
) -> None:
    agent = _agent([_calls("7"), {"content": "done"}])

    async def main() -> list[Event]:
        async with Runtime.open(store_url) as rt:
            await rt.store.set_kill_switch(
                tenant="acme", agent="*", on=True, reason="audit, (tenant x): 1", action=action
            )
            run_id = await rt.start(agent, "credit 7", tenant="acme")
            await rt.work(run_id=run_id)
            if action == "wait":
                await _identical(rt, run_id)  # parked: replays as far as it went
                await rt.store.set_kill_switch(tenant="acme", agent="*", on=False, reason="")
                await rt.work(run_id=run_id)
            return await _identical(rt, run_id)

    events = asyncio.run(main())
    seen = KillSwitchSeen(tenant="acme", agent="*", reason="audit, (tenant x): 1")
    if action == "reject":
        (rejected,) = _bodies(events, ToolCallRejected)
        assert (rejected.error.code, rejected.switch) == ("kill_switch", seen)
        assert rejected.error.message == "[audit, (tenant x): 1] halted for *@acme"
    else:
        (blocked,) = _bodies(events, ToolCallBlocked)
        assert (blocked.action, blocked.switch) == (action, seen)
    made = ["7"] if action == "wait" else []  # the write went once the switch was off
    assert made == CREDITED


def test_a_policy_rule_on_the_kill_switch_replays_from_the_decisions_flag(store_url: str) -> None:
    rules = [{"id": "frozen", "when": {"kill_switch": True}, "then": "deny"}]
    agent = _agent([_calls("7"), {"content": "told"}], rules=rules)

    async def main() -> list[Event]:
        async with Runtime.open(store_url) as rt:
            await rt.store.set_kill_switch(tenant="*", agent="crediter", on=True, reason="freeze")
            run = await rt.run(agent, "credit 7", tenant="acme")
            return await _identical(rt, run.run_id)

    (decision,) = _bodies(asyncio.run(main()), PolicyEvaluated)
    assert (decision.outcome, decision.rule_ids, decision.kill_switch) == (
        "deny",
        ("frozen",),
        True,
    )


class _SpendsElsewhere:
    """The scripted model; before its first answer another worker spends the tenant's day."""

    provider = "scripted"
    name = "scripted"

    def __init__(self, script: list[dict[str, Any]], rt: Runtime, amount: float) -> None:
        self._inner = ScriptedModel(script)
        self.rt, self.amount = rt, amount

    async def respond(self, request: ModelRequest) -> ModelResponse:
        if request.step == 0:
            key = spend_key("tenant", "acme")
            await self.rt.store.add(key, window_s=DAY_S, amount=self.amount)
        return await self._inner.respond(request)


def test_a_priced_call_denied_by_a_day_cap_replays_from_the_recorded_figures(
    store_url: str,
) -> None:
    script = [_calls("7"), {"content": "done"}]
    agent = _agent(script, spending={"per_agent_per_day_usd": 50, "per_tenant_per_day_usd": 5})

    async def main() -> list[Event]:
        async with Runtime.open(store_url) as rt:
            rt.register(agent, model=_SpendsElsewhere(script, rt, 7.25))
            run = await rt.run(agent, "credit 7", tenant="acme")
            return await _identical(rt, run.run_id)

    events = asyncio.run(main())
    (decision,) = _bodies(events, PolicyEvaluated)
    assert decision.outcome == "deny"
    assert decision.rule_ids[-1] == "spending.per_tenant_per_day_usd"
    assert decision.reason.startswith("over per_tenant_per_day_usd")  # the reworded reason
    assert decision.counters == (
        CounterReading(counter="per_agent_per_day_usd", total=0.0, cap=50.0),
        CounterReading(counter="per_tenant_per_day_usd", total=7.25, cap=5.0),
    )
    assert CREDITED == []


def test_a_model_step_stopped_by_the_second_cap_replays_with_the_first_under_it(
    store_url: str,
) -> None:
    """The tenant's day is spent (by others) past the agent's cap too: replay serves each cap
    its own figure, not the one the escalation recorded."""
    agent = _agent([{"content": "done"}], spending={"per_agent_per_day_usd": 10,
                                                    "per_tenant_per_day_usd": 1})  # fmt: skip

    async def main() -> list[Event]:
        async with Runtime.open(store_url) as rt:
            await rt.store.add(spend_key("tenant", "acme"), window_s=DAY_S, amount=20.0)
            run = await rt.run(agent, "hello", tenant="acme")
            return await _identical(rt, run.run_id)

    events = asyncio.run(main())
    (exceeded,) = _bodies(events, BudgetExceeded)
    assert (exceeded.budget, exceeded.used) == ("per_tenant_per_day_usd", 20.0)
    (finished,) = _bodies(events, RunFinished)
    assert finished.status == "escalated" and "over per_tenant_per_day_usd" in finished.reason


def test_a_call_over_a_timed_rate_limit_replays_from_the_recorded_counts(store_url: str) -> None:
    limit = {"id": "credits-per-hour", "when": {"tool": "credit"}, "per": ["tenant"],
             "max": 2, "window": "1h"}  # fmt: skip
    agent = _agent([_calls("1", "2", "3"), {"content": "done"}], limits=[limit])

    async def main() -> list[Event]:
        async with Runtime.open(store_url) as rt:
            run = await rt.run(agent, "credit three", tenant="acme")
            return await _identical(rt, run.run_id)

    decisions = _bodies(asyncio.run(main()), PolicyEvaluated)
    label = "credits-per-hour[tenant=acme]"
    assert [(d.outcome, d.counters) for d in decisions] == [
        ("allow", (CounterReading(counter=label, total=1.0, cap=2.0),)),
        ("allow", (CounterReading(counter=label, total=2.0, cap=2.0),)),
        ("deny", (CounterReading(counter=label, total=None, cap=2.0),)),
    ]
    assert CREDITED == ["1", "2"]


def test_a_write_that_times_out_again_after_a_fenced_reconcile_replays(store_url: str) -> None:
    agent = _agent([_calls("7", name="hang"), {"content": "done"}], tools=[hang])

    async def main() -> list[Event]:
        async with Runtime.open(store_url) as rt:
            run = await rt.run(agent, "credit 7", tenant="acme")
            assert run.status == "escalated"
            return await _identical(rt, run.run_id)

    events = asyncio.run(main())
    (verdict,) = _bodies(events, ToolCallReconciled)
    assert verdict.applied is False and verdict.fenced
    unknown = [(u.resolution, u.cause) for u in _bodies(events, ToolOutcomeUnknown)]
    assert unknown == [("reconcile", "timeout"), ("escalate", "timeout")]  # again, as data


def _strip(db_path: Path, run_id: str, kind: str, field: str) -> None:
    """Make a stored event look like an older Charter's: without ``field``."""
    with sqlite3.connect(db_path) as conn:
        seq, payload = conn.execute(
            "SELECT seq, payload FROM events WHERE run_id = ? AND type = ? ORDER BY seq LIMIT 1",
            (run_id, kind),
        ).fetchone()
        body = json.loads(payload)
        assert field in body
        del body[field]
        conn.execute(
            "UPDATE event_log SET payload = ?"
            " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) AND seq = ?",
            (json.dumps(body), run_id, seq),
        )


def test_an_older_log_with_the_switch_only_in_prose_is_refused_not_parsed(
    db_url: str, db_path: Path, tmp_path: Path
) -> None:
    agent = _agent([_calls("7"), {"content": "done"}])

    async def record() -> str:
        async with Runtime.open(db_url) as rt:
            await rt.store.set_kill_switch(
                tenant="acme", agent="*", on=True, reason="audit", action="escalate"
            )
            return (await rt.run(agent, "credit 7", tenant="acme")).run_id

    run_id = asyncio.run(record())
    _strip(db_path, run_id, "tool_call_blocked", "switch")

    async def replay() -> None:
        async with Runtime.open(db_url) as rt:
            await replay_run(rt.store, run_id)

    with pytest.raises(ReplayUnavailableError, match="recorded by an older Charter"):
        asyncio.run(replay())
    done = run_charter(tmp_path, "replay", run_id, "--db", db_url)
    assert done.returncode == 10, done.stderr
    assert "older Charter" in done.stderr and "tool_call_blocked" in done.stderr


@tool(effect="read", retry=1, timeout_s=30)
async def dawdle() -> str:
    """A read slower than the run's time budget."""
    await asyncio.sleep(3)
    return "late"


def test_a_run_stopped_by_its_time_budget_replays_from_the_recorded_clock(store_url: str) -> None:
    agent = Agent(
        name="dawdler",
        instructions="Wait.",
        model=ModelSpec(
            provider="scripted", script=[{"tool_calls": [{"name": "dawdle", "arguments": {}}]}] * 3
        ),
        tools=[dawdle],
        budgets=Budgets(timeout_s=0.2),
    )

    async def main() -> list[Event]:
        async with Runtime.open(store_url) as rt:
            run = await rt.run(agent, "wait", tenant="acme")
            return await _identical(rt, run.run_id)

    (exceeded,) = _bodies(asyncio.run(main()), BudgetExceeded)
    assert exceeded.budget == "timeout_seconds" and exceeded.used >= 0.2
