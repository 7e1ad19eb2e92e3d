"""Rate limits, costs and spending caps through the real runtime, on SQLite and PostgreSQL.

Limits are enforced inside the decision: a call over a limit is denied (recorded in
``policy_evaluated``, returned to the model as ``policy_denied``); timed windows are counted in
the store, so they are shared by every run and survive a new Runtime on the same database.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

import pytest

from charter import Agent, Budgets, ModelSpec, Runtime, tool
from charter._engine.limits import DAY_S, spend_key
from charter._engine.state import RunState, fold_all
from charter.events import (
    BudgetExceeded,
    Event,
    ModelResponded,
    PolicyEvaluated,
    RunFinished,
    ToolCallRejected,
    ToolCallSucceeded,
)
from charter.models import ModelRequest, ModelResponse, ScriptedModel
from charter.policy import PolicySet
from charter.store import Store

T = TypeVar("T")
REFUNDS: list[str] = []
PRICES = {"input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0}


@tool(effect="write", risk="high", cost_usd=0.3)
def pay_back(order_id: str, amount: float) -> str:
    """Refund an order (the provider charges 30 cents a refund)."""
    REFUNDS.append(order_id)
    return "refunded"


@tool(effect="read")
def look(order_id: str) -> str:
    """Look an order up (free)."""
    return f"order {order_id}"


def _policy(*, limits: list[dict[str, Any]] | None = None, **extra: Any) -> PolicySet:
    rules = [
        {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
        {"id": "refunds", "when": {"tool": "pay_back"}, "then": "allow"},
    ]
    return PolicySet.from_dict(
        {"policy": {"name": "desk", "rules": rules, "limits": limits or [], **extra}}
    )


HOURLY = [
    {
        "id": "refunds-per-hour",
        "when": {"tool": "pay_back"},
        "per": ["tenant", "tool"],
        "max": 2,
        "window": "1h",
    }
]


def _refunds(*orders: str) -> dict[str, Any]:
    calls = [{"name": "pay_back", "arguments": {"order_id": o, "amount": 5}} for o in orders]
    return {"tool_calls": calls}


class Recording:
    """The scripted model, keeping every request (what the model was told)."""

    provider = "scripted"
    name = "scripted"

    def __init__(self, script: Any, before: Any = None) -> None:
        self._inner = ScriptedModel(script)
        self.requests: list[ModelRequest] = []
        self.before = before

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if self.before is not None:
            await self.before(request)
        return await self._inner.respond(request)


def _agent(
    script: list[dict[str, Any]], policy: PolicySet, *, budgets: Budgets | None = None
) -> Agent:
    return Agent(
        name="refunder",
        instructions="Refund when asked.",
        model=ModelSpec(provider="scripted", script=script, **PRICES),
        tools=[look, pay_back],
        policy=policy,
        budgets=budgets or Budgets(),
    )


async def _run(
    url: str, agent: Agent, *, tenant: str = "acme", model: Recording | None = None
) -> tuple[str, list[Event]]:
    async with Runtime.open(url) as rt:
        rt.register(agent, model=model or Recording(agent.model.script))
        run = await rt.run(agent, "refund please", tenant=tenant, principal="ann")
        events = await rt.events(run.run_id)
        assert RunState.model_validate(run.state) == fold_all(events)
        return run.status, events


def _bodies(events: list[Event], kind: type[T]) -> list[T]:
    return [e.body for e in events if isinstance(e.body, kind)]


def test_a_rate_limit_denies_the_call_over_it_and_the_model_is_told(store_url: str) -> None:
    REFUNDS.clear()
    script = [_refunds("1", "2", "3"), {"content": "done"}]
    agent = _agent(script, _policy(limits=HOURLY))
    model = Recording(script)
    status, events = asyncio.run(_run(store_url, agent, model=model))
    assert status == "succeeded" and REFUNDS == ["1", "2"]
    decisions = _bodies(events, PolicyEvaluated)
    assert [(d.outcome, d.rule_ids) for d in decisions] == [
        ("allow", ("refunds",)),
        ("allow", ("refunds",)),
        ("deny", ("refunds", "refunds-per-hour")),
    ]
    label = "refunds-per-hour[tenant=acme,tool=pay_back]"
    assert [d.limits for d in decisions] == [(label,), (label,), ()]
    reason = "rate limit refunds-per-hour: 2 per 1h for tenant acme, tool pay_back"
    assert decisions[2].reason == reason
    [rejected] = _bodies(events, ToolCallRejected)
    assert (rejected.call_id, rejected.error.code) == ("call_0_2", "policy_denied")
    [told] = [m for m in model.requests[1].messages if m.tool_call_id == "call_0_2"]
    error = json.loads(told.content or "")["error"]
    assert (error["code"], error["message"]) == ("policy_denied", reason)


def test_a_limit_is_shared_by_runs_and_survives_a_new_runtime(store_url: str) -> None:
    REFUNDS.clear()
    first = _agent([_refunds("1", "2"), {"content": "done"}], _policy(limits=HOURLY))
    asyncio.run(_run(store_url, first))
    assert REFUNDS == ["1", "2"]
    # A new Runtime (a restart: a new store instance on the same database) and a new run.
    second = _agent([_refunds("3"), {"content": "done"}], _policy(limits=HOURLY))
    _, events = asyncio.run(_run(store_url, second))
    assert REFUNDS == ["1", "2"]
    assert _bodies(events, PolicyEvaluated)[0].rule_ids == ("refunds", "refunds-per-hour")
    # The counter is per tenant: another tenant still has its two refunds.
    _, events = asyncio.run(_run(store_url, second, tenant="globex"))
    assert REFUNDS == ["1", "2", "3"]


def test_a_run_window_counts_within_the_run_only(db_url: str) -> None:
    REFUNDS.clear()
    per_run = [{"id": "one-refund-a-run", "when": {"tool": "pay_back"}, "max": 1, "window": "run"}]
    script = [_refunds("1"), _refunds("2"), {"content": "done"}]
    agent = _agent(script, _policy(limits=per_run))
    for _ in range(2):
        _, events = asyncio.run(_run(db_url, agent))
        assert [d.outcome for d in _bodies(events, PolicyEvaluated)] == ["allow", "deny"]
        assert fold_all(events).limits_used == {"one-refund-a-run": 1}
    assert REFUNDS == ["1", "1"]


def test_costs_are_accounted_on_each_event_and_summed_in_state(db_url: str) -> None:
    script = [
        {"tool_calls": [{"name": "look", "arguments": {"order_id": "1"}}]},
        _refunds("1"),
        {"content": "done"},
    ]
    agent = _agent(script, _policy())
    status, events = asyncio.run(_run(db_url, agent))
    assert status == "succeeded"
    responses = _bodies(events, ModelResponded)
    assert len(responses) == 3
    for response in responses:
        assert response.cost_usd == agent.model.cost_usd(response.usage) > 0
    assert [(s.tool, s.cost_usd) for s in _bodies(events, ToolCallSucceeded)] == [
        ("look", 0.0),
        ("pay_back", 0.3),
    ]
    expected = sum(r.cost_usd for r in responses) + 0.3
    assert fold_all(events).cost_usd == pytest.approx(expected)


def test_the_per_run_money_cap_escalates(db_url: str) -> None:
    REFUNDS.clear()
    script = [_refunds("1"), _refunds("2"), _refunds("3"), {"content": "done"}]
    agent = _agent(script, _policy(), budgets=Budgets(max_cost_usd=0.5))
    status, events = asyncio.run(_run(db_url, agent))
    assert status == "escalated"
    assert REFUNDS == ["1", "2"]  # 0.6 dollars and some tokens: no third refund
    [exceeded] = _bodies(events, BudgetExceeded)
    assert (exceeded.budget, exceeded.limit) == ("max_cost_usd", 0.5)
    assert exceeded.used == pytest.approx(fold_all(events).cost_usd)
    [finished] = _bodies(events, RunFinished)
    assert "budget max_cost_usd exhausted" in (finished.reason or "")


def test_a_daily_tenant_cap_stops_the_next_runs(store_url: str) -> None:
    REFUNDS.clear()
    capped = _policy(spending={"per_tenant_per_day_usd": 1.0})
    agent = _agent([_refunds("1", "2"), {"content": "done"}], capped)
    status, _ = asyncio.run(_run(store_url, agent))  # spends 0.6 and tokens: under the cap
    assert status == "succeeded"
    status, events = asyncio.run(_run(store_url, agent))  # passes the cap with its refunds
    assert status == "escalated" and len(REFUNDS) == 4
    [exceeded] = _bodies(events, BudgetExceeded)
    assert (exceeded.budget, exceeded.limit) == ("per_tenant_per_day_usd", 1.0)
    assert exceeded.used >= 1.0
    # A third run of the tenant stops before its first model call; another tenant goes on.
    status, events = asyncio.run(_run(store_url, agent))
    assert status == "escalated" and _bodies(events, ModelResponded) == []
    [finished] = _bodies(events, RunFinished)
    assert "per_tenant_per_day_usd exhausted for tenant acme" in (finished.reason or "")
    status, _ = asyncio.run(_run(store_url, agent, tenant="globex"))
    assert status == "succeeded"


def test_a_priced_call_is_denied_once_the_day_cap_is_reached(db_url: str) -> None:
    """Another worker spent the tenant's budget while this run's model was answering."""
    REFUNDS.clear()
    agent = _agent(
        [_refunds("1"), {"content": "done"}], _policy(spending={"per_tenant_per_day_usd": 5})
    )

    async def main() -> list[Event]:
        async with Runtime.open(db_url) as rt:
            store: Store = rt.store

            async def spend_elsewhere(request: ModelRequest) -> None:
                if request.step == 0:
                    await store.add(spend_key("tenant", "acme"), window_s=DAY_S, amount=5.0)

            rt.register(agent, model=Recording(agent.model.script, before=spend_elsewhere))
            run = await rt.run(agent, "refund please", tenant="acme")
            return await rt.events(run.run_id)

    events = asyncio.run(main())
    assert REFUNDS == []
    [decision] = _bodies(events, PolicyEvaluated)
    assert (decision.outcome, decision.rule_ids) == (
        "deny",
        ("refunds", "spending.per_tenant_per_day_usd"),
    )
    assert "per_tenant_per_day_usd exhausted for tenant acme" in decision.reason
    [finished] = _bodies(events, RunFinished)
    assert finished.status == "escalated"  # the next model call is refused too
