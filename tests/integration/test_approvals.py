"""Durable approvals: a held call waits, one decision executes it exactly once, on both stores."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from tests.helpers.models import Recording

from charter import Agent, ModelSpec, Runtime, ToolContext, tool
from charter._engine.state import RunState, fold_all
from charter.errors import ConflictError, ForbiddenError
from charter.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    RunResumed,
    RunWaiting,
    ToolCallRejected,
    ToolCallSucceeded,
    arguments_hash,
)
from charter.policy import PolicySet

T = TypeVar("T")
EXECUTED: list[dict[str, Any]] = []
BALANCES = {"7": {"credit": 10.0}}


def _policy(expires_in: str = "1h", on_expiry: str = "deny") -> PolicySet:
    approval = {"tier": "manager", "role": "lead", "expires_in": expires_in}
    approval["on_expiry"] = on_expiry
    return PolicySet.from_dict(
        {
            "policy": {
                "name": "refunds",
                "rules": [
                    {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
                    {
                        "id": "small",
                        "when": {"tool": "pay_back", "args": {"amount": {"lte": 50}}},
                        "then": "allow",
                    },
                    {
                        "id": "medium",
                        "when": {"tool": "pay_back", "args": {"amount": {"gt": 50}}},
                        "then": {"require_approval": approval},
                    },
                ],
            }
        }
    )


@tool(effect="read")
def look(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}"


@tool(effect="write", risk="high", owner="billing")
def pay_back(ctx: ToolContext, order_id: str, amount: float) -> str:
    """Refund an order."""
    EXECUTED.append({"order_id": order_id, "amount": amount, "key": ctx.idempotency_key})
    return "refunded"


@pay_back.previewer
def _pay_back_changes(ctx: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    credit = BALANCES[arguments["order_id"]]["credit"]
    return {"credit": (credit, credit + arguments["amount"])}


SCRIPT = [
    {
        "tool_calls": [
            {"name": "look", "arguments": {"order_id": "7"}},
            {"name": "pay_back", "arguments": {"order_id": "7", "amount": 120}},
        ]
    },
    {"content": "done"},
]


def _agent(policy: PolicySet | None = None) -> Agent:
    return Agent(
        name="refunder",
        instructions="Refund when asked.",
        model=ModelSpec(provider="scripted", script=SCRIPT),
        tools=[look, pay_back],
        policy=policy or _policy(),
    )


Scenario = Callable[[Runtime, str, Recording], Awaitable[T]]


def _run(url: str, scenario: Scenario[T], *, policy: PolicySet | None = None) -> T:
    """Start a held refund as ann (support), work it until it waits, then play ``scenario``."""
    EXECUTED.clear()
    agent, model = _agent(policy), Recording(SCRIPT)

    async def main() -> T:
        async with Runtime.open(url) as rt:
            rt.register(agent, model=model)
            await rt.store.set_role(principal="bob", role="lead", tenant="acme", on=True)
            await rt.store.set_role(principal="ann", role="lead", tenant="*", on=True)
            await rt.store.set_role(principal="carl", role="lead", tenant="other", on=True)
            run = await rt.run(agent, "refund 120 on 7", tenant="acme", principal="ann")
            assert (run.status, run.waiting_for) == ("waiting", "approval")
            return await scenario(rt, run.run_id, model)

    return asyncio.run(main())


async def _finish(rt: Runtime, run_id: str) -> list[Event]:
    await rt.work(run_id=run_id)
    events = await rt.events(run_id)
    record = await rt.get_run(run_id)
    assert RunState.model_validate(record.state) == fold_all(events)
    return events


def _bodies(events: list[Event], kind: type[T]) -> list[T]:
    return [e.body for e in events if isinstance(e.body, kind)]


def test_a_held_call_waits_with_its_request_on_record(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> None:
        events = await rt.events(run_id)
        [requested] = _bodies(events, ApprovalRequested)
        args = {"order_id": "7", "amount": 120.0}
        assert requested.arguments == args
        assert requested.arguments_hash == arguments_hash(args)
        assert (requested.tier, requested.role, requested.requested_by) == (
            "manager",
            "lead",
            "ann",
        )
        assert requested.rule_ids == ("medium",) and requested.risk == "high"
        assert requested.expires_at == pytest.approx(time.time() + 3600, abs=60)
        assert [c.model_dump() for c in requested.changes or ()] == [
            {"field": "credit", "old": 10.0, "new": 130.0}
        ]
        # the read of the same step ran; the held write did not
        assert [b.tool for b in _bodies(events, ToolCallSucceeded)] == ["look"]
        assert isinstance(events[-1].body, RunWaiting)
        assert events[-1].body.waiting_for == "approval"
        [stored] = await rt.approvals(tenant="acme")
        assert (stored.approval_id, stored.status) == (requested.approval_id, "pending")
        assert stored.changes == ({"field": "credit", "old": 10.0, "new": 130.0},)
        assert await rt.approvals(tenant="other") == []
        # nothing to do until someone decides: working it again changes nothing
        await rt.work(run_id=run_id)
        assert len(await rt.events(run_id)) == len(events)
        assert EXECUTED == []

    _run(store_url, scenario)


def test_a_grant_executes_the_call_once_and_records_who(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> list[Event]:
        [request] = await rt.approvals()
        granted = await rt.grant(request.approval_id, by="bob", note="customer is right")
        assert (granted.status, granted.decided_by) == ("granted", "bob")
        assert (await rt.get_run(run_id)).ready_at is not None  # the grant woke the run
        return await _finish(rt, run_id)

    events = _run(store_url, scenario)
    assert [(e["order_id"], e["amount"]) for e in EXECUTED] == [("7", 120.0)]
    assert EXECUTED[0]["key"] is not None  # a write: it ran with its idempotency key
    [decided] = _bodies(events, ApprovalDecided)
    assert (decided.decision, decided.decided_by, decided.note) == (
        "granted",
        "bob",
        "customer is right",
    )
    assert any(
        isinstance(b, RunResumed) and b.reason == "approval" for b in _bodies(events, RunResumed)
    )
    assert [b.tool for b in _bodies(events, ToolCallSucceeded)] == ["look", "pay_back"]
    assert events[-1].body.type == "run_finished" and events[-1].body.status == "succeeded"


def test_a_denial_reaches_the_model_as_a_structured_result(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> tuple[list[Event], str]:
        [request] = await rt.approvals()
        await rt.deny(request.approval_id, by="bob", reason="refund policy says no")
        events = await _finish(rt, run_id)
        return events, model.requests[-1].messages[-1].content or ""

    events, told = _run(store_url, scenario)
    assert EXECUTED == []
    [rejected] = _bodies(events, ToolCallRejected)
    assert rejected.error.code == "approval_denied"
    assert json.loads(told)["error"]["code"] == "approval_denied"
    assert "refund policy says no" in json.loads(told)["error"]["message"]
    assert events[-1].body.type == "run_finished" and events[-1].body.status == "succeeded"


def test_the_requester_and_principals_without_the_role_cannot_decide(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> None:
        [request] = await rt.approvals()
        with pytest.raises(ForbiddenError, match="separation of duties"):
            await rt.grant(request.approval_id, by="ann")  # ann has the role, but asked
        with pytest.raises(ForbiddenError, match="role 'lead' for tenant 'acme'"):
            await rt.grant(request.approval_id, by="carl")  # lead elsewhere only
        with pytest.raises(ForbiddenError):
            await rt.deny(request.approval_id, by="mallory", reason="no")
        [still] = await rt.approvals()
        assert still.status == "pending"

    _run(store_url, scenario)


def test_two_approvers_at_once_one_wins_and_the_call_runs_once(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> list[Any]:
        await rt.store.set_role(principal="dora", role="lead", tenant="acme", on=True)
        [request] = await rt.approvals()
        results = await asyncio.gather(
            rt.grant(request.approval_id, by="bob"),
            rt.grant(request.approval_id, by="dora"),
            return_exceptions=True,
        )
        await _finish(rt, run_id)
        return results

    results = _run(store_url, scenario)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], ConflictError) and "already granted" in str(losers[0])
    assert len(EXECUTED) == 1


def test_a_grant_is_bound_to_the_arguments_it_names(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> None:
        [request] = await rt.approvals()
        with pytest.raises(ConflictError, match="differs from what you reviewed"):
            await rt.grant(request.approval_id, by="bob", arguments_hash=arguments_hash({}))
        granted = await rt.grant(
            request.approval_id, by="bob", arguments_hash=request.arguments_hash
        )
        assert granted.status == "granted"
        with pytest.raises(ConflictError, match="already granted by bob"):
            await rt.deny(request.approval_id, by="bob", reason="changed my mind")

    _run(store_url, scenario)


def test_an_expired_request_is_denied_to_the_model(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> list[Event]:
        [request] = await rt.approvals()
        await asyncio.sleep(max(0.0, request.expires_at - time.time()) + 0.05)
        with pytest.raises(ConflictError, match="expired"):
            await rt.grant(request.approval_id, by="bob")  # too late: nothing runs
        return await _finish(rt, run_id)

    events = _run(store_url, scenario, policy=_policy(expires_in="1s"))
    assert EXECUTED == []
    [decided] = _bodies(events, ApprovalDecided)
    assert decided.decision == "expired" and decided.decided_by is None
    [rejected] = _bodies(events, ToolCallRejected)
    assert rejected.error.code == "approval_expired"
    assert events[-1].body.type == "run_finished" and events[-1].body.status == "succeeded"


def test_an_expired_request_can_escalate_instead(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> list[Event]:
        [request] = await rt.approvals()
        await asyncio.sleep(max(0.0, request.expires_at - time.time()) + 0.05)
        deadline = time.time() + 5  # the run wakes at its request's expiry by itself
        while (await rt.get_run(run_id)).status == "waiting" and time.time() < deadline:
            await rt.work(until_idle=True)
            await asyncio.sleep(0.1)
        return await rt.events(run_id)

    events = _run(store_url, scenario, policy=_policy(expires_in="1s", on_expiry="escalate"))
    assert EXECUTED == []
    finished = events[-1].body
    assert finished.type == "run_finished" and finished.status == "escalated"
    assert "expired" in (finished.reason or "")


def test_a_grant_survives_a_new_runtime_and_store(store_url: str) -> None:
    async def scenario(rt: Runtime, run_id: str, model: Recording) -> list[Event]:
        [request] = await rt.approvals()
        await rt.grant(request.approval_id, by="bob")
        async with Runtime.open(store_url) as other:  # a restart: nothing kept in memory
            other.register(_agent(), model=Recording(SCRIPT))
            await other.work(run_id=run_id)
            return await other.events(run_id)

    events = _run(store_url, scenario)
    assert len(EXECUTED) == 1
    assert events[-1].body.type == "run_finished" and events[-1].body.status == "succeeded"
