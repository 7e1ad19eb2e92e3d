"""A conformance suite for stores: what a :class:`~charter.store.Store` must do, as tests.

Charter's own backends pass it on a real SQLite file and a real PostgreSQL database
(``tests/integration/test_store.py``). To check a store of your own, subclass a suite in
your test suite and provide the ``store_factory`` fixture: a function that opens your store
on this test's fresh database with the given clock (``None``: the store's own)::

    import pytest
    from charter.testing.store_conformance import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_factory(self, tmp_path):
            return lambda clock: MyStore(tmp_path / "db", clock=clock)

Two levels of capability:

* :class:`BaseConformance` — the run log (runs, events, commits fenced by sequence number and
  lease epoch, the hash chain), the inbox, leases, claims and workers: what it takes for
  workers to run agents durably;
* :class:`StoreConformance` — the base plus governance state (kill switches, API tokens) and
  memory.

Every test opens its store through the factory, works it with a fake clock where time
matters, and closes it. The suite needs pytest (a dev dependency, not a runtime one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from charter.errors import ConflictError, NotFoundError, RunStateError, StoreError
from charter.events import (
    GENESIS_HASH,
    Event,
    EventBody,
    MessageReceived,
    ModelResponded,
    RunFinished,
    RunStarted,
    RunStatus,
    RunWaiting,
    verify_chain,
)
from charter.memory import StoreMemory
from charter.store import ApiToken, Claim, Commit, NewRun, Store, WorkerInfo

__all__ = [
    "BaseConformance",
    "FakeClock",
    "StoreConformance",
    "StoreFactory",
    "commit_for",
    "new_run",
    "next_events",
    "park",
    "responded",
    "rows",
    "state_of",
]

T = TypeVar("T")
StoreFactory = Callable[[Callable[[], float] | None], Store]
"""Opens the store under test on this test's database, with a clock (None: its own)."""


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _with_store(
    factory: StoreFactory, fn: Callable[[Store], Awaitable[T]], *, clock: FakeClock | None = None
) -> T:
    async def main() -> T:
        store = factory(clock)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def state_of(events: list[Event]) -> str:
    """A run's durable state as the suite writes it. To a store the state is the caller's
    JSON text, kept beside the events and given back as written (Charter's engine stores
    its fold there)."""
    return json.dumps({"last_seq": events[-1].seq, "types": [e.type for e in events]})


def new_run(run_id: str, now: float) -> NewRun:
    """A run of agent ``a`` for acme/ann with its first two events (started, input)."""
    bodies: list[EventBody] = [
        RunStarted(
            agent_name="a", agent_version="1", agent_hash="h" * 64, tenant="acme",
            principal="ann", input="hi",
        ),
        MessageReceived(text="hi", source="input"),
    ]  # fmt: skip
    events, prev = [], GENESIS_HASH
    for i, body in enumerate(bodies):
        event = Event.seal(run_id=run_id, seq=i + 1, at=now + i, body=body, prev_hash=prev)
        events.append(event)
        prev = event.hash
    return NewRun(
        run_id=run_id, agent_name="a", agent_version="1", agent_hash="h" * 64,
        agent_spec='{"name": "a"}', tenant="acme", principal="ann", events=tuple(events),
        state=state_of(events), created_at=now,
    )  # fmt: skip


def next_events(events: list[Event], *bodies: Any, gap_s: float = 1.0) -> list[Event]:
    """Seal ``bodies`` as the next events of a run's chain, ``gap_s`` seconds apart."""
    out: list[Event] = []
    prev = events[-1]
    for body in bodies:
        prev = Event.seal(
            run_id=prev.run_id, seq=prev.seq + 1, at=prev.at + gap_s, body=body, prev_hash=prev.hash
        )
        out.append(prev)
    return out


def responded(step: int = 1) -> ModelResponded:
    return ModelResponded(step=step, provider="scripted", model="m", prompt_hash="p", content="x")


def commit_for(
    claim: Claim,
    worker_id: str,
    history: list[Event],
    new: list[Event],
    *,
    status: RunStatus = "running",
    ready_at: float | None = 0.0,
    waiting_for: str | None = None,
    release: bool = False,
    expected_seq: int | None = None,
    consumed_inbox: tuple[int, ...] = (),
) -> Commit:
    """The commit of ``new`` after ``history`` under ``claim``, with the folded state."""
    return Commit(
        run_id=claim.run_id,
        worker_id=worker_id,
        epoch=claim.epoch,
        expected_seq=history[-1].seq if expected_seq is None else expected_seq,
        events=tuple(new),
        state=state_of(history + new),
        status=status,
        ready_at=ready_at,
        waiting_for=waiting_for,
        release=release,
        consumed_inbox=consumed_inbox,
    )


def rows(events: list[Event]) -> list[tuple[Any, ...]]:
    return [(e.seq, e.type, e.schema_version, e.at, e.payload, e.hash) for e in events]


async def park(
    store: Store,
    run: NewRun,
    *,
    status: RunStatus,
    waiting_for: str | None,
    ready_at: float | None = None,
) -> list[Event]:
    """Create ``run``, claim it as w1 and park it (waiting, or finished); return its events."""
    await store.create_run(run)
    [claim] = await store.claim("w1", lease_s=30, limit=1, run_id=run.run_id)
    history = list(run.events)
    body: Any = (
        RunWaiting(waiting_for=waiting_for or "message")
        if status == "waiting"
        else RunFinished(status="succeeded", output="ok")
    )
    new = next_events(history, body)
    await store.commit(
        commit_for(
            claim, "w1", history, new, status=status, ready_at=ready_at,
            waiting_for=waiting_for, release=True,
        )
    )  # fmt: skip
    return history + new


# -- the suites -----------------------------------------------------------------------------------


class BaseConformance:
    """What every store must do to run agents: the run log (runs, events, commits fenced by
    sequence number and lease), the inbox, leases and workers."""

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        """Override: a function that opens a store on this test's fresh database, with the
        given clock (None: the store's own)."""
        raise NotImplementedError("subclass the suite and provide a store_factory fixture")

    def test_create_run_then_load_events(self, store_factory: StoreFactory) -> None:
        run = new_run("run_1", 1_000.0)

        async def scenario(store: Store) -> None:
            await store.create_run(run)
            assert await store.load_events("run_1") == list(run.events)
            assert await store.load_events("run_1", after_seq=1) == [run.events[1]]
            assert verify_chain(await store.event_rows("run_1"), "run_1") is None
            record = await store.get_run("run_1")
            assert record.status == "queued"
            assert record.last_seq == 2
            assert record.last_hash == run.events[-1].hash
            assert record.state == json.loads(run.state)
            assert (record.tenant, record.principal) == ("acme", "ann")
            assert (record.created_at, record.updated_at, record.ready_at) == (1_000.0,) * 3
            assert record.lease_owner is None
            assert await store.get_agent_spec("h" * 64) == '{"name": "a"}'
            assert await store.run_ids() == ["run_1"]
            assert [r.run_id for r in await store.list_runs(status="queued")] == ["run_1"]
            assert await store.list_runs(status="running") == []
            assert await store.run_counts() == {"queued": 1}

        _with_store(store_factory, scenario)

    def test_runs_are_listed_by_tenant_agent_and_time_a_page_at_a_time(
        self, store_factory: StoreFactory
    ) -> None:
        async def scenario(store: Store) -> None:
            for i, (run_id, at) in enumerate([("run_a", 10.0), ("run_b", 20.0), ("run_c", 20.0)]):
                run = new_run(run_id, at)
                if i == 2:
                    run = replace(run, tenant="globex", agent_name="b")
                await store.create_run(run)

            def ids(runs: list[Any]) -> list[str]:
                return [r.run_id for r in runs]

            assert ids(await store.list_runs()) == ["run_c", "run_b", "run_a"]  # ties: by id
            assert ids(await store.list_runs(tenant="acme")) == ["run_b", "run_a"]
            assert ids(await store.list_runs(agent="b")) == ["run_c"]
            assert ids(await store.list_runs(since=15.0)) == ["run_c", "run_b"]
            first = await store.list_runs(limit=1)
            second = await store.list_runs(limit=1, before=(first[0].created_at, "run_c"))
            third = await store.list_runs(limit=5, before=(second[0].created_at, "run_b"))
            assert ids(first + second + third) == ["run_c", "run_b", "run_a"]
            assert await store.list_runs(status="queued", tenant="initech") == []

        _with_store(store_factory, scenario)

    def test_an_unknown_run_is_not_found(self, store_factory: StoreFactory) -> None:
        async def scenario(store: Store) -> None:
            with pytest.raises(NotFoundError):
                await store.get_run("run_nope")
            with pytest.raises(NotFoundError):
                await store.get_agent_spec("nope")
            assert await store.load_events("run_nope") == []

        _with_store(store_factory, scenario)

    def test_creating_a_run_id_twice_is_a_store_error_and_keeps_the_first(
        self, store_factory: StoreFactory
    ) -> None:
        async def scenario(store: Store) -> None:
            await store.create_run(new_run("run_1", 1_000.0))
            with pytest.raises(StoreError) as info:
                await store.create_run(new_run("run_1", 2_000.0))
            assert not isinstance(info.value, ConflictError)
            assert (await store.get_run("run_1")).created_at == 1_000.0
            assert len(await store.load_events("run_1")) == 2

        _with_store(store_factory, scenario)

    def test_a_commit_with_the_wrong_expected_seq_is_a_conflict_and_writes_nothing(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock()
        run = new_run("run_1", clock.now)
        history = list(run.events)

        async def scenario(store: Store) -> None:
            await store.create_run(run)
            [claim] = await store.claim("w1", lease_s=30, limit=1)
            stale = commit_for(
                claim, "w1", history, next_events(history, responded()), expected_seq=1
            )
            with pytest.raises(ConflictError, match="expected seq 1, lease epoch 1"):
                await store.commit(stale)
            assert await store.load_events("run_1") == history
            record = await store.get_run("run_1")
            assert record.last_seq == 2
            assert record.state == json.loads(run.state)
            # The right expected_seq goes through.
            await store.commit(commit_for(claim, "w1", history, next_events(history, responded())))
            assert (await store.get_run("run_1")).last_seq == 3

        _with_store(store_factory, scenario, clock=clock)

    def test_two_concurrent_appends_with_the_same_expected_seq_one_wins_one_conflicts(
        self, store_factory: StoreFactory
    ) -> None:
        run = new_run("run_1", 1_000.0)
        history = list(run.events)
        ours, theirs = next_events(history, responded(1)), next_events(history, responded(2))

        async def scenario() -> None:
            one, two = store_factory(None), store_factory(None)
            try:
                await one.create_run(run)
                [claim] = await one.claim("w1", lease_s=30, limit=1)
                results = await asyncio.gather(
                    one.commit(commit_for(claim, "w1", history, ours)),
                    two.commit(commit_for(claim, "w1", history, theirs)),
                    return_exceptions=True,
                )
                assert sorted(type(r).__name__ for r in results) == ["ConflictError", "NoneType"]
                winner = ours if results[0] is None else theirs
                assert await two.load_events("run_1") == history + winner
                record = await one.get_run("run_1")
                assert (record.last_seq, record.last_hash) == (3, winner[-1].hash)
                assert record.state == json.loads(state_of(history + winner))
                assert verify_chain(await one.event_rows("run_1"), "run_1") is None
            finally:
                await one.close()
                await two.close()

        asyncio.run(scenario())

    def test_a_commit_under_a_lost_lease_is_a_conflict(self, store_factory: StoreFactory) -> None:
        clock = FakeClock()
        run = new_run("run_1", clock.now)
        history = list(run.events)

        async def scenario(store: Store) -> None:
            await store.create_run(run)
            [first] = await store.claim("w1", lease_s=10, limit=1)
            assert first.previous_status == "queued"
            assert await store.claim("w2", lease_s=10, limit=1) == []  # w1's lease holds
            clock.now += 11  # w1 stalls past its lease
            [second] = await store.claim("w2", lease_s=10, limit=1)
            assert second.epoch == first.epoch + 1
            assert second.previous_status == "running"

            with pytest.raises(ConflictError):
                await store.commit(
                    commit_for(first, "w1", history, next_events(history, responded()))
                )
            assert len(await store.load_events("run_1")) == 2

            await store.commit(commit_for(second, "w2", history, next_events(history, responded())))
            assert (await store.get_run("run_1")).last_seq == 3

        _with_store(store_factory, scenario, clock=clock)

    def test_a_run_is_claimed_by_only_one_of_two_concurrent_claimers(
        self, store_factory: StoreFactory
    ) -> None:
        run_ids = [f"run_{i:02}" for i in range(20)]

        async def scenario() -> None:
            # Two stores: two writer connections (SQLite), two connection pools (PostgreSQL).
            one, two = store_factory(None), store_factory(None)
            try:
                for run_id in run_ids:
                    await one.create_run(new_run(run_id, 1_000.0))
                a, b = await asyncio.gather(
                    one.claim("w1", lease_s=30, limit=100), two.claim("w2", lease_s=30, limit=100)
                )
                claimed = [c.run_id for c in a + b]
                assert sorted(claimed) == run_ids
                # ...and for single runs, one at a time.
                for run_id in run_ids:
                    epoch = next(c.epoch for c in a + b if c.run_id == run_id)
                    await one.release("w1", run_id, epoch)
                    await two.release("w2", run_id, epoch)
                    x, y = await asyncio.gather(
                        one.claim("w1", lease_s=30, limit=1, run_id=run_id),
                        two.claim("w2", lease_s=30, limit=1, run_id=run_id),
                    )
                    assert len(x) + len(y) == 1, run_id
                    assert (x + y)[0].epoch == 2
            finally:
                await one.close()
                await two.close()

        asyncio.run(scenario())

    def test_claims_come_in_ready_order_up_to_the_limit(self, store_factory: StoreFactory) -> None:
        clock = FakeClock(5_000.0)

        async def scenario(store: Store) -> None:
            for i, at in enumerate([1_003.0, 1_001.0, 1_002.0, 9_000.0]):
                await store.create_run(new_run(f"run_{i}", at))
            first = await store.claim("w1", lease_s=30, limit=2)
            assert [c.run_id for c in first] == ["run_1", "run_2"]
            assert [c.epoch for c in first] == [1, 1]
            assert [c.run_id for c in await store.claim("w1", lease_s=30, limit=5)] == ["run_0"]
            assert await store.claim("w1", lease_s=30, limit=5) == []  # run_3 is not ready yet
            record = await store.get_run("run_1")
            assert (record.status, record.lease_owner, record.lease_expires_at) == (
                "running",
                "w1",
                5_030.0,
            )

        _with_store(store_factory, scenario, clock=clock)

    def test_renew_extends_only_leases_still_held_and_release_lets_others_claim(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock()

        async def scenario(store: Store) -> None:
            await store.create_run(new_run("run_1", clock.now))
            [claim] = await store.claim("w1", lease_s=10, limit=1)
            clock.now = 1_008.0
            assert await store.renew("w1", {"run_1": claim.epoch}, lease_s=10) == set()
            assert (await store.get_run("run_1")).lease_expires_at == 1_018.0
            clock.now = 1_015.0  # past the first lease, within the renewed one
            assert await store.claim("w2", lease_s=10, limit=1) == []
            assert await store.renew("w1", {"run_1": claim.epoch + 1}, lease_s=10) == {"run_1"}
            assert await store.renew("w2", {"run_1": claim.epoch}, lease_s=10) == {"run_1"}

            await store.release("w2", "run_1", claim.epoch)  # not w2's: nothing happens
            assert (await store.get_run("run_1")).lease_owner == "w1"
            await store.release("w1", "run_1", claim.epoch)
            record = await store.get_run("run_1")
            assert (record.lease_owner, record.lease_expires_at) == (None, None)
            [again] = await store.claim("w2", lease_s=10, limit=1)
            assert (again.epoch, again.previous_status) == (claim.epoch + 1, "running")
            await store.release("w1", "run_1", claim.epoch)  # a stale release changes nothing
            assert (await store.get_run("run_1")).lease_owner == "w2"

        _with_store(store_factory, scenario, clock=clock)

    def test_work_outlook_counts_claimable_and_leased_runs(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock()

        async def scenario(store: Store) -> None:
            assert await store.work_outlook() == (0, 0)
            assert await store.next_ready_at() is None
            await store.create_run(new_run("run_a", 990.0))
            await store.create_run(new_run("run_b", 995.0))
            await store.create_run(new_run("run_later", 2_000.0))
            assert await store.work_outlook() == (2, 0)
            assert await store.next_ready_at() == 990.0
            await store.claim("w1", lease_s=30, limit=1)
            assert await store.work_outlook() == (1, 1)
            clock.now += 31  # the lease ran out: claimable again
            assert await store.work_outlook() == (2, 0)

        _with_store(store_factory, scenario, clock=clock)

    def test_send_to_a_run_waiting_for_a_message_makes_it_claimable(
        self, store_factory: StoreFactory
    ) -> None:
        async def scenario(store: Store) -> None:
            await park(store, new_run("run_1", 1_000.0), status="waiting", waiting_for="message")
            assert await store.claim("w2", lease_s=30, limit=10) == []
            assert (await store.get_run("run_1")).ready_at is None

            inbox_id = await store.send("run_1", "order A1 please")

            [claim] = await store.claim("w2", lease_s=30, limit=10)
            assert claim.run_id == "run_1"
            assert claim.previous_status == "waiting"
            assert claim.waiting_for == "message"
            [message] = await store.pending_messages("run_1")
            assert (message.inbox_id, message.text) == (inbox_id, "order A1 please")

        _with_store(store_factory, scenario)

    def test_a_message_sent_while_the_run_works_readies_it_when_it_parks(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock()
        run = new_run("run_1", clock.now)

        async def scenario(store: Store) -> None:
            await store.create_run(run)
            [claim] = await store.claim("w1", lease_s=30, limit=1)
            clock.now = 1_002.0
            inbox_id = await store.send("run_1", "one more thing")  # the run is working
            history = list(run.events)
            parked = next_events(history, RunWaiting(waiting_for="message"))
            clock.now = 1_003.0
            await store.commit(
                commit_for(
                    claim,
                    "w1",
                    history,
                    parked,
                    status="waiting",
                    ready_at=None,
                    waiting_for="message",
                    release=True,
                )
            )
            record = await store.get_run("run_1")
            assert (record.status, record.ready_at, record.lease_owner) == (
                "waiting",
                1_003.0,
                None,
            )

            [again] = await store.claim("w2", lease_s=30, limit=1)
            assert (again.previous_status, again.waiting_for) == ("waiting", "message")
            history += parked
            received = next_events(
                history, MessageReceived(text="one more thing", inbox_id=inbox_id)
            )
            clock.now = 1_004.0
            await store.commit(
                commit_for(
                    again,
                    "w2",
                    history,
                    received + next_events(received, RunWaiting(waiting_for="message")),
                    status="waiting",
                    ready_at=None,
                    waiting_for="message",
                    release=True,
                    consumed_inbox=(inbox_id,),
                )
            )
            assert await store.pending_messages("run_1") == []
            assert (await store.get_run("run_1")).ready_at is None  # nothing unread: stays parked
            assert await store.claim("w3", lease_s=30, limit=1) == []
            export = await store.export_run("run_1")
            assert [(t, s, c) for _, t, s, c in export.inbox] == [
                ("one more thing", 1_002.0, 1_004.0)
            ]

        _with_store(store_factory, scenario, clock=clock)

    def test_a_cancel_request_wakes_a_waiting_run_once_and_is_consumed_by_its_commit(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock()

        async def scenario(store: Store) -> None:
            history = await park(
                store, new_run("run_1", clock.now), status="waiting", waiting_for="message"
            )
            clock.now = 1_001.0
            asked = await store.request_cancel(
                "run_1", request_id="cancel_1", reason="duplicate", actor="lead"
            )
            assert (asked.request_id, asked.requested_at, asked.already_requested) == (
                "cancel_1",
                1_001.0,
                False,
            )
            again = await store.request_cancel(
                "run_1", request_id="cancel_2", reason="other", actor="bob"
            )
            assert (again.request_id, again.reason, again.already_requested) == (
                "cancel_1",
                "duplicate",
                True,
            )
            assert await store.cancel_request("run_1") == asked

            [claim] = await store.claim("w2", lease_s=30, limit=1)  # woken for the request
            finished = next_events(history, RunFinished(status="cancelled", reason="duplicate"))
            commit = commit_for(
                claim, "w2", history, finished, status="cancelled", ready_at=None, release=True
            )
            assert await store.commit(dataclasses.replace(commit, cancelled="cancel_1")) is None
            assert await store.cancel_request("run_1") is None
            assert (await store.get_run("run_1")).status == "cancelled"
            late = await store.request_cancel("run_1", request_id="c3", reason="x", actor="y")
            assert late.already_requested and late.consumed_at == 1_001.0
            kinds = [(r.kind, r.actor) for r in await store.audit_records()]
            assert kinds.count(("cancel_requested", "lead")) == 1
            assert ("cancel_requested", "bob") not in kinds

        _with_store(store_factory, scenario, clock=clock)

    def test_a_cancel_requested_while_the_run_works_readies_it_when_it_parks(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock()
        run = new_run("run_1", clock.now)

        async def scenario(store: Store) -> None:
            await store.create_run(run)
            [claim] = await store.claim("w1", lease_s=30, limit=1)
            asked = await store.request_cancel(
                "run_1", request_id="cancel_1", reason="r", actor="a"
            )
            history = list(run.events)
            parked = next_events(history, RunWaiting(waiting_for="message"))
            clock.now = 1_003.0
            answered = await store.commit(
                commit_for(
                    claim, "w1", history, parked, status="waiting", ready_at=None,
                    waiting_for="message", release=True,
                )
            )  # fmt: skip
            assert answered == asked  # the commit says a request is pending
            assert (await store.get_run("run_1")).ready_at == 1_003.0
            assert [c.run_id for c in await store.claim("w2", lease_s=30, limit=1)] == ["run_1"]

        _with_store(store_factory, scenario, clock=clock)

    def test_cancel_of_a_finished_or_missing_run_is_refused(
        self, store_factory: StoreFactory
    ) -> None:
        async def scenario(store: Store) -> None:
            await park(store, new_run("run_1", 1_000.0), status="succeeded", waiting_for=None)
            with pytest.raises(RunStateError, match="finished"):
                await store.request_cancel("run_1", request_id="c1", reason="r", actor="a")
            with pytest.raises(NotFoundError):
                await store.request_cancel("run_2", request_id="c2", reason="r", actor="a")
            assert await store.cancel_request("run_1") is None

        _with_store(store_factory, scenario)

    def test_send_to_a_finished_run_is_a_run_state_error(self, store_factory: StoreFactory) -> None:
        async def scenario(store: Store) -> None:
            await park(store, new_run("run_1", 1_000.0), status="succeeded", waiting_for=None)
            with pytest.raises(RunStateError, match="finished"):
                await store.send("run_1", "hello?")
            assert await store.pending_messages("run_1") == []

        _with_store(store_factory, scenario)

    def test_send_to_an_unknown_run_is_not_found(self, store_factory: StoreFactory) -> None:
        async def scenario(store: Store) -> None:
            with pytest.raises(NotFoundError):
                await store.send("run_nope", "hello?")

        _with_store(store_factory, scenario)

    def test_a_run_parked_on_a_timer_is_claimable_only_once_it_is_due(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock()

        async def scenario(store: Store) -> None:
            run = new_run("run_1", clock.now)
            await park(store, run, status="waiting", waiting_for="timer", ready_at=1_060.0)
            assert await store.claim("w2", lease_s=30, limit=1) == []
            assert await store.next_ready_at() == 1_060.0
            assert await store.work_outlook() == (0, 0)
            clock.now = 1_059.9
            assert await store.claim("w2", lease_s=30, limit=1) == []
            clock.now = 1_060.0
            assert await store.work_outlook() == (1, 0)
            [claim] = await store.claim("w2", lease_s=30, limit=1)
            assert (claim.previous_status, claim.waiting_for) == ("waiting", "timer")

        _with_store(store_factory, scenario, clock=clock)

    def test_workers_heartbeat_are_listed_with_their_leases_and_are_removed(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock()
        w1 = WorkerInfo(
            worker_id="w1", host="host-a", pid=4_000_000, concurrency=4, started_at=990.0
        )
        w2 = WorkerInfo(worker_id="w2", host="host-b", pid=12, concurrency=1, started_at=995.0)

        async def scenario(store: Store) -> None:
            await store.heartbeat_worker(w2)
            await store.heartbeat_worker(w1)
            await store.create_run(new_run("run_1", 1_000.0))
            await store.create_run(new_run("run_2", 1_000.0))
            await store.claim("w1", lease_s=10, limit=2)
            clock.now = 1_005.0
            await store.heartbeat_worker(w1)
            listed = await store.list_workers()
            assert [w.to_dict() for w in listed] == [
                {**w1.to_dict(), "heartbeat_at": 1_005.0, "leases": 2},
                {**w2.to_dict(), "heartbeat_at": 1_000.0, "leases": 0},
            ]
            clock.now = 1_011.0  # the leases ran out
            assert [w.leases for w in await store.list_workers()] == [0, 0]
            await store.remove_worker("w1")
            await store.remove_worker("w_unknown")
            assert [w.worker_id for w in await store.list_workers()] == ["w2"]

        _with_store(store_factory, scenario, clock=clock)

    def test_fifty_concurrent_commits_to_fifty_runs_all_land(
        self, store_factory: StoreFactory
    ) -> None:
        runs = [new_run(f"run_{i:02}", 1_000.0) for i in range(50)]

        async def scenario(store: Store) -> None:
            await asyncio.gather(*(store.create_run(r) for r in runs))
            claims = {c.run_id: c for c in await store.claim("w1", lease_s=30, limit=100)}
            assert len(claims) == 50
            new = {r.run_id: next_events(list(r.events), responded(), responded(2)) for r in runs}
            await asyncio.gather(
                *(
                    store.commit(commit_for(claims[r.run_id], "w1", list(r.events), new[r.run_id]))
                    for r in runs
                )
            )
            for r in runs:
                assert await store.load_events(r.run_id) == [*r.events, *new[r.run_id]]
                assert verify_chain(await store.event_rows(r.run_id), r.run_id) is None
                assert (await store.get_run(r.run_id)).last_seq == 4

        _with_store(store_factory, scenario)

    def test_one_conflicting_commit_among_concurrent_ones_does_not_undo_the_others(
        self, store_factory: StoreFactory
    ) -> None:
        runs = [new_run(f"run_{i:02}", 1_000.0) for i in range(20)]

        async def scenario(store: Store) -> None:
            for r in runs:
                await store.create_run(r)
            claims = {c.run_id: c for c in await store.claim("w1", lease_s=30, limit=100)}
            commits = []
            for i, r in enumerate(runs):
                history = list(r.events)
                commits.append(
                    commit_for(
                        claims[r.run_id],
                        "w1",
                        history,
                        next_events(history, responded()),
                        expected_seq=7 if i == 10 else None,
                    )
                )
            results = await asyncio.gather(
                *(store.commit(c) for c in commits), return_exceptions=True
            )
            assert isinstance(results[10], ConflictError)
            assert [i for i, r in enumerate(results) if r is not None] == [10]
            seqs = [(await store.get_run(r.run_id)).last_seq for r in runs]
            assert seqs == [2 if i == 10 else 3 for i in range(20)]

        _with_store(store_factory, scenario)

    def test_a_closed_store_refuses_writes(self, store_factory: StoreFactory) -> None:
        async def scenario() -> None:
            store = store_factory(None)
            await store.schema_version()
            await store.close()
            await store.close()  # closing twice is harmless
            with pytest.raises(StoreError, match="closed"):
                await store.create_run(new_run("run_1", 1_000.0))

        asyncio.run(scenario())


class StoreConformance(BaseConformance):
    """The base, plus governance state (kill switches) and memory."""

    def test_memory_recalls_until_its_ttl_and_only_for_its_tenant(
        self, store_factory: StoreFactory
    ) -> None:
        clock = FakeClock(1_000.0)

        async def scenario(store: Store) -> None:
            memory = StoreMemory(store, clock=clock)
            source = {"run_id": "run_1", "seq": 7}
            await memory.remember("acme", "tone", {"style": "formal"}, provenance=source, ttl_s=60)
            await memory.remember("globex", "tone", "casual", provenance={"run_id": "run_2"})

            item = await memory.recall("acme", "tone")
            assert item is not None
            assert item.value == {"style": "formal"}
            assert item.provenance == source
            assert (item.created_at, item.expires_at) == (1_000.0, 1_060.0)
            assert await memory.recall("initech", "tone") is None

            clock.now = 1_059.9
            assert await memory.recall("acme", "tone") is not None
            clock.now = 1_060.0
            assert await memory.recall("acme", "tone") is None
            other = await memory.recall("globex", "tone")
            assert other is not None
            assert other.value == "casual"
            assert other.expires_at is None

            # Remembering again replaces the value and its expiry.
            await memory.remember("acme", "tone", "warm", provenance=source)
            again = await memory.recall("acme", "tone")
            assert again is not None
            assert (again.value, again.expires_at) == ("warm", None)
            assert [(m.tenant, m.value) for m in await store.memory_items()] == [
                ("acme", "warm"),
                ("globex", "casual"),
            ]

        _with_store(store_factory, scenario, clock=clock)

    def test_api_tokens_are_found_by_hash_listed_and_revoked_once(
        self, store_factory: StoreFactory
    ) -> None:
        token = ApiToken(
            token_id="tok_1", token_hash="f" * 64, principal="ann@acme.com", tenant="acme",
            roles=("support", "lead"), created_at=1_000.0, expires_at=2_000.0, revoked_at=None,
        )  # fmt: skip

        async def scenario(store: Store) -> None:
            assert await store.api_tokens() == []
            await store.insert_token(token, actor="root")
            assert await store.find_token("f" * 64) == token
            assert await store.find_token("e" * 64) is None
            assert await store.api_tokens() == [token]
            revoked = await store.revoke_token("tok_1", at=1_500.0, actor="root")
            assert revoked == replace(token, revoked_at=1_500.0)
            again = await store.revoke_token("tok_1", at=1_600.0, actor="root")
            assert again.revoked_at == 1_500.0  # the first revocation stands
            with pytest.raises(NotFoundError):
                await store.revoke_token("tok_nope", at=1_600.0, actor="root")
            kinds = [r.kind for r in await store.audit_records() if r.kind.startswith("token_")]
            assert kinds == ["token_created", "token_revoked"]

        _with_store(store_factory, scenario)

    def test_kill_switches_are_set_listed_and_lifted(self, store_factory: StoreFactory) -> None:
        async def scenario(store: Store) -> None:
            assert await store.kill_switches() == []
            await store.set_kill_switch(tenant="acme", agent="*", on=True, reason="incident 12")
            await store.set_kill_switch(tenant="*", agent="mailer", on=True, reason="")
            await store.set_kill_switch(tenant="acme", agent="*", on=True, reason="incident 13")
            switches = await store.kill_switches()
            assert [(s.tenant, s.agent, s.reason) for s in switches] == [
                ("acme", "*", "incident 13"),
                ("*", "mailer", ""),
            ]
            assert switches[0].covers("acme", "anyone") and not switches[0].covers("globex", "x")
            assert switches[1].covers("globex", "mailer") and not switches[1].covers("acme", "x")
            await store.set_kill_switch(tenant="acme", agent="*", on=False, reason="")
            assert [(s.tenant, s.agent) for s in await store.kill_switches()] == [("*", "mailer")]

        _with_store(store_factory, scenario)
