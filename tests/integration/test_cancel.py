"""Cancelling a run (``Runtime.cancel``): durable, with a reason, honoured at the next step
boundary, on both stores; a held call's approval is withdrawn, a step in flight completes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from tests.helpers.models import Recording

from charter import Agent, ModelSpec, Runtime, ToolContext, sleep, tool
from charter._engine.state import RunState, fold_all
from charter.errors import ConflictError, InputError, NotFoundError, RunStateError
from charter.events import (
    ApprovalRequested,
    Event,
    ModelResponded,
    RunFinished,
    ToolCallSucceeded,
)
from charter.models import ModelRequest, ModelResponse
from charter.policy import PolicySet
from charter.replay import replay_run
from charter.rerun import RerunChanges, rerun

T = TypeVar("T")
PAID: list[str | None] = []


@tool(effect="read")
def look(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}"


@tool(effect="write", risk="high")
def pay_back(ctx: ToolContext, order_id: str, amount: float) -> str:
    """Refund an order."""
    PAID.append(ctx.idempotency_key)
    return "refunded"


def _agent(script: list[dict[str, Any]], *, policy: PolicySet | None = None) -> Agent:
    return Agent(
        name="canceller",
        instructions="Refund when asked.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[look, pay_back, sleep],
        policy=policy,
    )


LOOK_THEN_ANSWER = [
    {"tool_calls": [{"name": "look", "arguments": {"order_id": "7"}}]},
    {"content": "done"},
]


def _run(url: str, scenario: Callable[[Runtime], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Runtime.open(url) as rt:
            return await scenario(rt)

    return asyncio.run(main())


async def _finish(rt: Runtime, run_id: str) -> list[Event]:
    """Work the run; check its stored state against its log and that it replays identically."""
    await rt.work(run_id=run_id)
    events = await rt.events(run_id)
    record = await rt.get_run(run_id)
    assert RunState.model_validate(record.state) == fold_all(events)
    replayed = await replay_run(rt.store, run_id)
    assert replayed.identical, replayed.to_dict()
    return events


def _bodies(events: list[Event], kind: type[T]) -> list[T]:
    return [e.body for e in events if isinstance(e.body, kind)]


def test_a_queued_run_is_cancelled_with_the_request_on_record(store_url: str) -> None:
    async def scenario(rt: Runtime) -> None:
        agent = _agent(LOOK_THEN_ANSWER)
        run_id = await rt.start(agent, "refund 7", tenant="acme", principal="ann")
        request = await rt.cancel(run_id, reason="customer withdrew", actor="lead@acme")
        assert not request.already_requested
        assert (request.run_id, request.requested_by) == (run_id, "lead@acme")
        again = await rt.cancel(run_id, reason="twice", actor="bob")
        assert again.already_requested and again.request_id == request.request_id
        assert again.reason == "customer withdrew"

        events = await _finish(rt, run_id)
        assert (await rt.get_run(run_id)).status == "cancelled"
        [finished] = _bodies(events, RunFinished)
        assert finished.status == "cancelled"
        assert finished.cancel is not None
        assert finished.cancel.request_id == request.request_id
        assert finished.cancel.requested_by == "lead@acme"
        assert finished.cancel.reason == "customer withdrew"
        assert finished.cancel.requested_at == request.requested_at
        assert _bodies(events, ModelResponded) == []  # nothing was asked after the request
        assert await rt.store.cancel_request(run_id) is None  # consumed with the commit

        # Asking again after it ended: the same request, idempotent; nothing new in the log.
        late = await rt.cancel(run_id, reason="again", actor="bob")
        assert late.already_requested and late.consumed_at is not None
        assert len(await rt.events(run_id)) == len(events)

        audited = [r for r in await rt.audit_log() if r.kind == "cancel_requested"]
        assert [(r.run_id, r.actor, r.data["reason"]) for r in audited] == [
            (run_id, "lead@acme", "customer withdrew")
        ]

    _run(store_url, scenario)


def test_cancelling_a_finished_or_unknown_run_is_refused(store_url: str) -> None:
    async def scenario(rt: Runtime) -> None:
        record = await rt.run(_agent(LOOK_THEN_ANSWER), "refund 7")
        assert record.status == "succeeded"
        with pytest.raises(RunStateError, match="has finished \\(succeeded\\)"):
            await rt.cancel(record.run_id, reason="too late", actor="ann")
        with pytest.raises(NotFoundError):
            await rt.cancel("run_nope", reason="x", actor="ann")
        with pytest.raises(InputError, match="reason"):
            await rt.cancel(record.run_id, reason="  ", actor="ann")
        assert await rt.store.cancel_request(record.run_id) is None
        assert [r for r in await rt.audit_log() if r.kind == "cancel_requested"] == []

    _run(store_url, scenario)


def test_a_run_sleeping_on_a_timer_is_woken_and_cancelled(store_url: str) -> None:
    script = [
        {"tool_calls": [{"name": "sleep", "arguments": {"seconds": 3600}}]},
        {"content": "woke"},
    ]

    async def scenario(rt: Runtime) -> None:
        record = await rt.run(_agent(script), "wait an hour")
        assert (record.status, record.waiting_for) == ("waiting", "timer")
        await rt.cancel(record.run_id, reason="not needed", actor="ops")
        report = await rt.work(until_idle=True)  # claims it now, not in an hour
        assert report is not None
        events = await rt.events(record.run_id)
        assert (await rt.get_run(record.run_id)).status == "cancelled"
        assert len(_bodies(events, ModelResponded)) == 1
        replayed = await replay_run(rt.store, record.run_id)
        assert replayed.identical, replayed.to_dict()

    _run(store_url, scenario)


def _held_policy() -> PolicySet:
    approval = {"tier": "manager", "role": "lead", "expires_in": "1h"}
    return PolicySet.from_dict(
        {
            "policy": {
                "name": "refunds",
                "rules": [
                    {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
                    {
                        "id": "held",
                        "when": {"tool": "pay_back"},
                        "then": {"require_approval": approval},
                    },
                ],
            }
        }
    )


def test_a_held_call_is_withdrawn_and_its_approval_can_no_longer_be_granted(
    store_url: str,
) -> None:
    script = [
        {"tool_calls": [{"name": "pay_back", "arguments": {"order_id": "7", "amount": 120}}]},
        {"content": "done"},
    ]
    PAID.clear()

    async def scenario(rt: Runtime) -> None:
        await rt.store.set_role(principal="bob", role="lead", tenant="acme", on=True)
        agent = _agent(script, policy=_held_policy())
        record = await rt.run(agent, "refund 120 on 7", tenant="acme", principal="ann")
        assert (record.status, record.waiting_for) == ("waiting", "approval")
        [requested] = _bodies(await rt.events(record.run_id), ApprovalRequested)

        await rt.cancel(record.run_id, reason="fraud suspected", actor="bob")
        events = await _finish(rt, record.run_id)
        [finished] = _bodies(events, RunFinished)
        assert finished.status == "cancelled" and finished.cancel is not None
        assert finished.cancel.withdrawn == (requested.approval_id,)
        approval = await rt.approval(requested.approval_id)
        assert approval.status == "withdrawn"
        with pytest.raises(ConflictError, match=r"withdrawn at .*: the run was cancelled"):
            await rt.grant(requested.approval_id, by="bob")
        assert PAID == []
        assert await rt.approvals(tenant="acme") == []  # no longer in the inbox
        figures = (await rt.operations.stats(tenant="acme")).approvals
        assert (figures.requested, figures.pending, figures.withdrawn) == (1, 0, 1)

    _run(store_url, scenario)


IN_FLIGHT: dict[str, asyncio.Event] = {}


@tool(effect="read")
async def slow_look(order_id: str) -> str:
    """Look an order up, slowly: it answers only when the test lets it."""
    IN_FLIGHT["started"].set()
    await IN_FLIGHT["go"].wait()
    return f"order {order_id}"


SLOW_SCRIPT = [
    {"tool_calls": [{"name": "slow_look", "arguments": {"order_id": "7"}}]},
    {"content": "never asked"},
]


def _slow_agent() -> Agent:
    return Agent(
        name="slow",
        instructions="Look.",
        model=ModelSpec(provider="scripted", script=SLOW_SCRIPT),
        tools=[slow_look],
    )


def test_a_step_in_flight_completes_and_no_further_model_call_is_made(store_url: str) -> None:
    model = Recording(SLOW_SCRIPT)
    agent = _slow_agent()

    async def scenario(rt: Runtime) -> None:
        IN_FLIGHT.update(started=asyncio.Event(), go=asyncio.Event())
        rt.register(agent, model=model)
        run_id = await rt.start(agent, "look 7")
        working = asyncio.create_task(rt.work(run_id=run_id))
        await IN_FLIGHT["started"].wait()  # the tool is running now
        await rt.cancel(run_id, reason="stop", actor="ops")
        IN_FLIGHT["go"].set()
        await working

        events = await rt.events(run_id)
        assert (await rt.get_run(run_id)).status == "cancelled"
        [done] = _bodies(events, ToolCallSucceeded)  # the step in flight completed
        assert done.output == "order 7"
        assert len(model.requests) == 1  # and the model was not asked again
        assert events[-1].type == "run_finished"

    _run(store_url, scenario)


class _Gated(Recording):
    """A scripted model whose answers wait until the test lets them go."""

    def __init__(self, script: Any) -> None:
        super().__init__(script)
        self.asked, self.go = asyncio.Event(), asyncio.Event()

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.asked.set()
        await self.go.wait()
        return await super().respond(request)


def test_a_run_that_ends_another_way_refuses_a_later_cancel_as_finished(
    store_url: str,
) -> None:
    """The request came while the run's last step was in flight: the step finishes the run
    (succeeded), the request is never honoured, and a second request must say the run has
    finished, not answer with the first as if it were still pending."""
    script = [{"content": "done"}]
    agent = _agent(script)
    model = _Gated(script)

    async def scenario(rt: Runtime) -> None:
        rt.register(agent, model=model)
        run_id = await rt.start(agent, "refund 7")
        working = asyncio.create_task(rt.work(run_id=run_id))
        await model.asked.wait()  # the last step is in flight
        first = await rt.cancel(run_id, reason="stop", actor="ops")
        assert not first.already_requested
        model.go.set()
        await working
        assert (await rt.get_run(run_id)).status == "succeeded"

        with pytest.raises(RunStateError, match="has finished \\(succeeded\\)"):
            await rt.cancel(run_id, reason="stop again", actor="ops")

    _run(store_url, scenario)


def test_a_rerun_of_a_cancelled_run_is_cancelled_at_the_same_step(store_url: str) -> None:
    """A what-if rerun answers what came from outside as the original got it: the cancel
    included. The original was cancelled after its first step; its rerun must not go on to
    ask the model again and finish as if nobody had stopped it."""
    agent = _slow_agent()

    async def scenario(rt: Runtime) -> None:
        IN_FLIGHT.update(started=asyncio.Event(), go=asyncio.Event())
        rt.register(agent)
        run_id = await rt.start(agent, "look 7")
        working = asyncio.create_task(rt.work(run_id=run_id))
        await IN_FLIGHT["started"].wait()
        await rt.cancel(run_id, reason="wrong customer", actor="ops")
        IN_FLIGHT["go"].set()
        await working
        assert (await rt.get_run(run_id)).status == "cancelled"

        result = await rerun(rt, run_id, changes=RerunChanges(agent=agent))
        events = await rt.events(result.run_id)
        assert result.status == "cancelled", result
        assert len(_bodies(events, ModelResponded)) == 1  # stopped where the original did
        [finished] = _bodies(events, RunFinished)
        assert finished.cancel is not None
        assert "wrong customer" in finished.cancel.reason
        assert finished.cancel.requested_by == "rerun"  # not ops: nobody asked again

    _run(store_url, scenario)
