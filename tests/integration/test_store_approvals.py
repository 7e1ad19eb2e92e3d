"""Conformance: approval requests, role grants and kill-switch actions, on every backend."""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.test_store import Backend, _with_store

from charter._engine.state import fold_all
from charter.events import ApprovalRequested, Event, RunWaiting, arguments_hash
from charter.store import ApprovalRecord, Commit, Store
from charter.testing.store_conformance import FakeClock, new_run, next_events

pytestmark = pytest.mark.replay_exempt(
    "writes logs by hand through the store API (made-up agent specs and events), not"
    " runs the engine made"
)

WORKER = "w1"


@pytest.fixture
def backend(store_url: str) -> Backend:
    return Backend("sqlite" if store_url.startswith("sqlite:") else "postgres", store_url)


def _request(approval_id: str, run_id: str, now: float, expires_in: float = 60) -> ApprovalRecord:
    args = {"order_id": "7", "amount": 120}
    return ApprovalRecord(
        approval_id=approval_id,
        run_id=run_id,
        call_id="c1",
        tenant="acme",
        agent_name="a",
        tool="refund",
        arguments=args,
        arguments_hash=arguments_hash(args),
        risk="high",
        reason="approval required by rule 'medium'",
        rule_ids=("medium",),
        requested_by="ann",
        tier="manager",
        role="lead",
        changes=({"field": "credit", "old": 0, "new": 120},),
        requested_at=now,
        expires_at=now + expires_in,
        on_expiry="deny",
    )


async def _file_and_park(
    store: Store, run_id: str, now: float, *, park: bool = True, expires_in: float = 60
) -> tuple[ApprovalRecord, list[Event], int]:
    """Create a run whose worker files one approval request and (``park``) waits for it."""
    run = new_run(run_id, now)
    await store.create_run(run)
    [claim] = await store.claim(WORKER, lease_s=30, limit=1, run_id=run_id)
    history = list(run.events)
    request = _request(f"ap-{run_id}", run_id, now, expires_in)
    body = ApprovalRequested(
        approval_id=request.approval_id,
        call_id="c1",
        tool="refund",
        arguments=request.arguments,
        arguments_hash=request.arguments_hash,
        risk="high",
        reason=request.reason,
        requested_by="ann",
        tier="manager",
        role="lead",
        expires_at=request.expires_at,
    )
    bodies: list[object] = [body]
    if park:
        bodies.append(RunWaiting(waiting_for="approval", call_id="c1", wake_at=request.expires_at))
    new = next_events(history, *bodies)
    await store.commit(
        Commit(
            run_id=run_id,
            worker_id=WORKER,
            epoch=claim.epoch,
            expected_seq=history[-1].seq,
            events=tuple(new),
            state=fold_all(history + new).model_dump_json(),
            status="waiting" if park else "running",
            ready_at=request.expires_at if park else now,
            waiting_for="approval" if park else None,
            release=park,
            approvals=(request,),
            awaiting=(request.approval_id,) if park else (),
        )
    )
    return request, history + new, claim.epoch


def test_a_request_is_filed_with_its_step_and_read_back_exactly(backend: Backend) -> None:
    clock = FakeClock(1_000.0)

    async def scenario(store: Store) -> None:
        request, _, _ = await _file_and_park(store, "r1", clock.now)
        assert await store.get_approval(request.approval_id) == request
        assert await store.approvals(tenant="acme") == [request]
        assert await store.approvals(tenant="other") == []
        assert await store.approvals(status="granted") == []
        assert await store.approvals(run_id="r1") == [request]
        exported = await store.export_run("r1")
        assert exported.approvals == (request,)

    _with_store(backend, scenario, clock=clock)


def test_a_decision_is_compare_and_set_and_wakes_the_waiting_run(backend: Backend) -> None:
    clock = FakeClock(1_000.0)

    async def scenario(store: Store) -> None:
        request, _, _ = await _file_and_park(store, "r1", clock.now)
        assert (await store.get_run("r1")).ready_at == request.expires_at
        clock.now += 5
        decided, won = await store.decide_approval(
            request.approval_id, decision="granted", by="bob", note="ok"
        )
        assert won and (decided.status, decided.decided_by, decided.note) == (
            "granted",
            "bob",
            "ok",
        )
        assert decided.decided_at == clock.now
        assert (await store.get_run("r1")).ready_at == clock.now  # runnable now
        again, won_again = await store.decide_approval(
            request.approval_id, decision="denied", by="dora", note="no"
        )
        assert not won_again and again == decided  # the first decision stands

    _with_store(backend, scenario, clock=clock)


def test_concurrent_decisions_have_exactly_one_winner(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        request, _, _ = await _file_and_park(store, "r1", 1_000.0, expires_in=10**10)
        results = await asyncio.gather(
            *(
                store.decide_approval(
                    request.approval_id, decision="granted", by=f"p{i}", note=None
                )
                for i in range(8)
            )
        )
        winners = [record.decided_by for record, won in results if won]
        assert len(winners) == 1
        assert (await store.get_approval(request.approval_id)).decided_by == winners[0]

    _with_store(backend, scenario)


def test_past_its_expiry_a_request_can_only_expire(backend: Backend) -> None:
    clock = FakeClock(1_000.0)

    async def scenario(store: Store) -> None:
        request, _, _ = await _file_and_park(store, "r1", clock.now, expires_in=60)
        early, won = await store.decide_approval(
            request.approval_id, decision="expired", by=None, note=None
        )
        assert not won and early.status == "pending"  # not yet
        clock.now += 61
        late, won = await store.decide_approval(
            request.approval_id, decision="granted", by="bob", note=None
        )
        assert not won and (late.status, late.decided_by) == ("expired", None)

    _with_store(backend, scenario, clock=clock)


def test_a_run_parking_for_a_decided_request_is_runnable_at_once(backend: Backend) -> None:
    """The decision lands between filing and parking: the park must not sleep through it."""
    clock = FakeClock(1_000.0)

    async def scenario(store: Store) -> None:
        request, history, epoch = await _file_and_park(store, "r1", clock.now, park=False)
        await store.decide_approval(request.approval_id, decision="granted", by="bob", note=None)
        assert (await store.get_run("r1")).ready_at == clock.now  # still running: unchanged
        clock.now += 1
        new = next_events(history, RunWaiting(waiting_for="approval", wake_at=request.expires_at))
        await store.commit(
            Commit(
                run_id="r1",
                worker_id=WORKER,
                epoch=epoch,
                expected_seq=history[-1].seq,
                events=tuple(new),
                state=fold_all(history + new).model_dump_json(),
                status="waiting",
                ready_at=request.expires_at,
                waiting_for="approval",
                release=True,
                awaiting=(request.approval_id,),
            )
        )
        assert (await store.get_run("r1")).ready_at == clock.now

    _with_store(backend, scenario, clock=clock)


def test_roles_are_granted_listed_and_removed(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.set_role(principal="bob", role="lead", tenant="acme", on=True)
        await store.set_role(principal="bob", role="lead", tenant="acme", on=True)  # no-op
        await store.set_role(principal="ann", role="admin", tenant="*", on=True)
        assert [(g.principal, g.role, g.tenant) for g in await store.role_grants()] == [
            ("ann", "admin", "*"),
            ("bob", "lead", "acme"),
        ]
        assert [g.role for g in await store.role_grants(principal="bob")] == ["lead"]
        await store.set_role(principal="bob", role="lead", tenant="acme", on=False)
        assert await store.role_grants(principal="bob") == []

    _with_store(backend, scenario)


def test_kill_switch_actions_are_kept_and_off_wakes_waiting_runs(backend: Backend) -> None:
    clock = FakeClock(1_000.0)

    async def scenario(store: Store) -> None:
        await store.set_kill_switch(
            tenant="acme", agent="*", on=True, reason="r", action="escalate"
        )
        await store.set_kill_switch(tenant="*", agent="a", on=True, reason="")
        assert [(s.tenant, s.action) for s in await store.kill_switches()] == [
            ("acme", "escalate"),
            ("*", "wait"),
        ]
        run = new_run("r1", clock.now)
        await store.create_run(run)
        [claim] = await store.claim(WORKER, lease_s=30, limit=1, run_id="r1")
        history = list(run.events)
        new = next_events(history, RunWaiting(waiting_for="kill_switch", wake_at=clock.now + 60))
        await store.commit(
            Commit(
                run_id="r1",
                worker_id=WORKER,
                epoch=claim.epoch,
                expected_seq=history[-1].seq,
                events=tuple(new),
                state=fold_all(history + new).model_dump_json(),
                status="waiting",
                ready_at=clock.now + 60,
                waiting_for="kill_switch",
                release=True,
            )
        )
        clock.now += 5
        await store.set_kill_switch(tenant="*", agent="a", on=False, reason="")
        assert (await store.get_run("r1")).ready_at == clock.now

    _with_store(backend, scenario, clock=clock)
