"""The storage conformance suite: one behaviour, every backend.

Each test that takes ``backend`` runs twice: against a real SQLite file and against a fresh
database on the real PostgreSQL server (``store_url`` in conftest). Tests that only one
backend can mean (a read-only file, the WAL pragma, connection errors) say so in their name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from tests.helpers.strategies import seal_chain

from charter import ConflictError, NotFoundError, RunStateError, StoreError
from charter._engine.state import RunState, fold_all
from charter.errors import SchemaTooNewError
from charter.events import (
    Event,
    MessageReceived,
    ModelResponded,
    RunFinished,
    RunStarted,
    RunWaiting,
    verify_chain,
)
from charter.memory import StoreMemory
from charter.store import (
    Claim,
    Commit,
    NewRun,
    PostgresStore,
    SQLiteStore,
    Store,
    WorkerInfo,
    open_store,
)

T = TypeVar("T")


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Backend:
    """One store backend under test, on its own fresh database."""

    name: str
    url: str

    @property
    def path(self) -> str:
        return self.url.removeprefix("sqlite:///")

    def open(self, clock: FakeClock | None = None) -> Store:
        if clock is None:
            return open_store(self.url)
        if self.name == "sqlite":
            return SQLiteStore(self.path, clock=clock)
        return PostgresStore(self.url, clock=clock)

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Run one statement directly on the database, outside any store."""
        if self.name == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
                return conn.execute(query).fetchall()
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query.encode())
            return cur.fetchall() if cur.description else []

    def tables(self) -> set[str]:
        if self.name == "sqlite":
            return {name for (name,) in self.sql("SELECT name FROM sqlite_master")}
        query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        return {name for (name,) in self.sql(query)}


@pytest.fixture
def backend(store_url: str) -> Backend:
    return Backend("sqlite" if store_url.startswith("sqlite:") else "postgres", store_url)


def _with_store(
    backend: Backend, fn: Callable[[Store], Awaitable[T]], *, clock: FakeClock | None = None
) -> T:
    async def main() -> T:
        store = backend.open(clock)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def _new_run(run_id: str, now: float) -> NewRun:
    events = seal_chain(
        run_id,
        [
            RunStarted(
                agent_name="a",
                agent_version="1",
                agent_hash="h" * 64,
                tenant="acme",
                principal="ann",
                input="hi",
            ),
            MessageReceived(text="hi", source="input"),
        ],
        start_at=now,
    )
    return NewRun(
        run_id=run_id,
        agent_name="a",
        agent_version="1",
        agent_hash="h" * 64,
        agent_spec='{"name": "a"}',
        tenant="acme",
        principal="ann",
        events=tuple(events),
        state=fold_all(events).model_dump_json(),
        created_at=now,
    )


def _after(events: list[Event], *bodies: Any, gap: float = 1.0) -> list[Event]:
    """Seal ``bodies`` as the next events of a run's chain."""
    out: list[Event] = []
    prev = events[-1]
    for body in bodies:
        prev = Event.seal(
            run_id=prev.run_id, seq=prev.seq + 1, at=prev.at + gap, body=body, prev_hash=prev.hash
        )
        out.append(prev)
    return out


def _responded(step: int = 1) -> ModelResponded:
    return ModelResponded(step=step, provider="scripted", model="m", prompt_hash="p", content="x")


def _commit(
    claim: Claim,
    worker: str,
    history: list[Event],
    new: list[Event],
    *,
    status: str = "running",
    ready_at: float | None = 0.0,
    waiting_for: str | None = None,
    release: bool = False,
    expected_seq: int | None = None,
    consumed_inbox: tuple[int, ...] = (),
) -> Commit:
    return Commit(
        run_id=claim.run_id,
        worker=worker,
        epoch=claim.epoch,
        expected_seq=history[-1].seq if expected_seq is None else expected_seq,
        events=tuple(new),
        state=fold_all(history + new).model_dump_json(),
        status=status,
        ready_at=ready_at,
        waiting_for=waiting_for,
        release=release,
        consumed_inbox=consumed_inbox,
    )


def _rows(events: list[Event]) -> list[tuple[Any, ...]]:
    return [(e.seq, e.type, e.schema_version, e.at, e.payload, e.hash) for e in events]


async def _park(
    store: Store,
    run: NewRun,
    *,
    status: str,
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
    new = _after(history, body)
    await store.commit(
        _commit(
            claim,
            "w1",
            history,
            new,
            status=status,
            ready_at=ready_at,
            waiting_for=waiting_for,
            release=True,
        )
    )
    return history + new


# -- runs and events --------------------------------------------------------------------------


def test_create_run_then_load_events(backend: Backend) -> None:
    run = _new_run("run_1", 1_000.0)

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

    _with_store(backend, scenario)


def test_an_unknown_run_is_not_found(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        with pytest.raises(NotFoundError):
            await store.get_run("run_nope")
        with pytest.raises(NotFoundError):
            await store.get_agent_spec("nope")
        assert await store.load_events("run_nope") == []

    _with_store(backend, scenario)


def test_creating_a_run_id_twice_is_a_store_error_and_keeps_the_first(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.create_run(_new_run("run_1", 1_000.0))
        with pytest.raises(StoreError) as info:
            await store.create_run(_new_run("run_1", 2_000.0))
        assert not isinstance(info.value, ConflictError)
        if backend.name == "postgres":
            assert "run_1" in info.value.message
        assert (await store.get_run("run_1")).created_at == 1_000.0
        assert len(await store.load_events("run_1")) == 2

    _with_store(backend, scenario)


def test_a_commit_with_the_wrong_expected_seq_is_a_conflict_and_writes_nothing(
    backend: Backend,
) -> None:
    clock = FakeClock()
    run = _new_run("run_1", clock.now)
    history = list(run.events)

    async def scenario(store: Store) -> None:
        await store.create_run(run)
        [claim] = await store.claim("w1", lease_s=30, limit=1)
        stale = _commit(claim, "w1", history, _after(history, _responded()), expected_seq=1)
        with pytest.raises(ConflictError, match="expected seq 1, lease epoch 1"):
            await store.commit(stale)
        assert await store.load_events("run_1") == history
        record = await store.get_run("run_1")
        assert record.last_seq == 2
        assert record.state == json.loads(run.state)
        # The right expected_seq goes through.
        await store.commit(_commit(claim, "w1", history, _after(history, _responded())))
        assert (await store.get_run("run_1")).last_seq == 3

    _with_store(backend, scenario, clock=clock)


def test_two_concurrent_appends_with_the_same_expected_seq_one_wins_one_conflicts(
    backend: Backend,
) -> None:
    run = _new_run("run_1", 1_000.0)
    history = list(run.events)
    ours, theirs = _after(history, _responded(1)), _after(history, _responded(2))

    async def scenario() -> None:
        one, two = backend.open(), backend.open()
        try:
            await one.create_run(run)
            [claim] = await one.claim("w1", lease_s=30, limit=1)
            results = await asyncio.gather(
                one.commit(_commit(claim, "w1", history, ours)),
                two.commit(_commit(claim, "w1", history, theirs)),
                return_exceptions=True,
            )
            assert sorted(type(r).__name__ for r in results) == ["ConflictError", "NoneType"]
            winner = ours if results[0] is None else theirs
            assert await two.load_events("run_1") == history + winner
            record = await one.get_run("run_1")
            assert (record.last_seq, record.last_hash) == (3, winner[-1].hash)
            assert record.state == json.loads(fold_all(history + winner).model_dump_json())
            assert verify_chain(await one.event_rows("run_1"), "run_1") is None
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_stored_events_keep_a_verifiable_chain_and_the_state_round_trips(
    backend: Backend,
) -> None:
    clock = FakeClock()
    run = _new_run("run_1", clock.now - 0.9)

    async def scenario(store: Store) -> None:
        await store.create_run(run)
        [claim] = await store.claim("w1", lease_s=30, limit=1)
        history = list(run.events)
        for step in (1, 2, 3):
            # Times with every digit a double holds: the hash covers them exactly.
            new = _after(history, _responded(step), gap=1 / 3)
            await store.commit(_commit(claim, "w1", history, new))
            history += new
            record = await store.get_run("run_1")
            assert RunState.model_validate(record.state) == fold_all(history)
        done = _after(history, RunFinished(status="succeeded", output="ok"), gap=0.7)
        await store.commit(
            _commit(claim, "w1", history, done, status="succeeded", ready_at=None, release=True)
        )
        history += done

        rows = await store.event_rows("run_1")
        assert [tuple(r) for r in rows] == _rows(history)
        assert verify_chain(rows, "run_1") is None
        assert await store.load_events("run_1") == history
        assert await store.load_events("run_1", after_seq=4) == history[4:]
        record = await store.get_run("run_1")
        assert record.state == json.loads(fold_all(history).model_dump_json())
        assert (record.status, record.last_seq, record.last_hash) == ("succeeded", 6, done[0].hash)
        assert (record.lease_owner, record.lease_expires_at, record.ready_at) == (None,) * 3
        assert record.updated_at == clock.now

    _with_store(backend, scenario, clock=clock)
    # Verification reads what was stored: a payload changed behind the store breaks the chain.
    backend.sql("UPDATE events SET payload = '{\"step\":9}' WHERE seq = 4")

    async def check(store: Store) -> None:
        found = verify_chain(await store.event_rows("run_1"), "run_1")
        assert found is not None
        assert found.seq == 4

    _with_store(backend, check)


# -- leases and fencing -----------------------------------------------------------------------


def test_a_commit_under_a_lost_lease_is_a_conflict(backend: Backend) -> None:
    clock = FakeClock()
    run = _new_run("run_1", clock.now)
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
            await store.commit(_commit(first, "w1", history, _after(history, _responded())))
        assert len(await store.load_events("run_1")) == 2

        await store.commit(_commit(second, "w2", history, _after(history, _responded())))
        assert (await store.get_run("run_1")).last_seq == 3

    _with_store(backend, scenario, clock=clock)


def test_a_run_is_claimed_by_only_one_of_two_concurrent_claimers(backend: Backend) -> None:
    run_ids = [f"run_{i:02}" for i in range(20)]

    async def scenario() -> None:
        # Two stores: two writer connections (SQLite), two connection pools (PostgreSQL).
        one, two = backend.open(), backend.open()
        try:
            for run_id in run_ids:
                await one.create_run(_new_run(run_id, 1_000.0))
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


def test_claims_come_in_ready_order_up_to_the_limit(backend: Backend) -> None:
    clock = FakeClock(5_000.0)

    async def scenario(store: Store) -> None:
        for i, at in enumerate([1_003.0, 1_001.0, 1_002.0, 9_000.0]):
            await store.create_run(_new_run(f"run_{i}", at))
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

    _with_store(backend, scenario, clock=clock)


def test_renew_extends_only_leases_still_held_and_release_lets_others_claim(
    backend: Backend,
) -> None:
    clock = FakeClock()

    async def scenario(store: Store) -> None:
        await store.create_run(_new_run("run_1", clock.now))
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

    _with_store(backend, scenario, clock=clock)


def test_work_outlook_counts_claimable_and_leased_runs(backend: Backend) -> None:
    clock = FakeClock()

    async def scenario(store: Store) -> None:
        assert await store.work_outlook() == (0, 0)
        assert await store.next_ready_at() is None
        await store.create_run(_new_run("run_a", 990.0))
        await store.create_run(_new_run("run_b", 995.0))
        await store.create_run(_new_run("run_later", 2_000.0))
        assert await store.work_outlook() == (2, 0)
        assert await store.next_ready_at() == 990.0
        await store.claim("w1", lease_s=30, limit=1)
        assert await store.work_outlook() == (1, 1)
        clock.now += 31  # the lease ran out: claimable again
        assert await store.work_outlook() == (2, 0)

    _with_store(backend, scenario, clock=clock)


# -- inbox ------------------------------------------------------------------------------------


def test_send_to_a_run_waiting_for_a_message_makes_it_claimable(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await _park(store, _new_run("run_1", 1_000.0), status="waiting", waiting_for="message")
        assert await store.claim("w2", lease_s=30, limit=10) == []
        assert (await store.get_run("run_1")).ready_at is None

        inbox_id = await store.send("run_1", "order A1 please")

        [claim] = await store.claim("w2", lease_s=30, limit=10)
        assert claim.run_id == "run_1"
        assert claim.previous_status == "waiting"
        assert claim.waiting_for == "message"
        [message] = await store.pending_messages("run_1")
        assert (message.inbox_id, message.text) == (inbox_id, "order A1 please")

    _with_store(backend, scenario)


def test_a_message_sent_while_the_run_works_readies_it_when_it_parks(backend: Backend) -> None:
    clock = FakeClock()
    run = _new_run("run_1", clock.now)

    async def scenario(store: Store) -> None:
        await store.create_run(run)
        [claim] = await store.claim("w1", lease_s=30, limit=1)
        clock.now = 1_002.0
        inbox_id = await store.send("run_1", "one more thing")  # the run is working
        history = list(run.events)
        parked = _after(history, RunWaiting(waiting_for="message"))
        clock.now = 1_003.0
        await store.commit(
            _commit(
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
        assert (record.status, record.ready_at, record.lease_owner) == ("waiting", 1_003.0, None)

        [again] = await store.claim("w2", lease_s=30, limit=1)
        assert (again.previous_status, again.waiting_for) == ("waiting", "message")
        history += parked
        received = _after(history, MessageReceived(text="one more thing", inbox_id=inbox_id))
        clock.now = 1_004.0
        await store.commit(
            _commit(
                again,
                "w2",
                history,
                received + _after(received, RunWaiting(waiting_for="message")),
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
        assert [(t, s, c) for _, t, s, c in export.inbox] == [("one more thing", 1_002.0, 1_004.0)]

    _with_store(backend, scenario, clock=clock)


def test_send_to_a_finished_run_is_a_run_state_error(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await _park(store, _new_run("run_1", 1_000.0), status="succeeded", waiting_for=None)
        with pytest.raises(RunStateError, match="finished"):
            await store.send("run_1", "hello?")
        assert await store.pending_messages("run_1") == []

    _with_store(backend, scenario)


def test_send_to_an_unknown_run_is_not_found(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        with pytest.raises(NotFoundError):
            await store.send("run_nope", "hello?")

    _with_store(backend, scenario)


# -- timers -----------------------------------------------------------------------------------


def test_a_run_parked_on_a_timer_is_claimable_only_once_it_is_due(backend: Backend) -> None:
    clock = FakeClock()

    async def scenario(store: Store) -> None:
        run = _new_run("run_1", clock.now)
        await _park(store, run, status="waiting", waiting_for="timer", ready_at=1_060.0)
        assert await store.claim("w2", lease_s=30, limit=1) == []
        assert await store.next_ready_at() == 1_060.0
        assert await store.work_outlook() == (0, 0)
        clock.now = 1_059.9
        assert await store.claim("w2", lease_s=30, limit=1) == []
        clock.now = 1_060.0
        assert await store.work_outlook() == (1, 0)
        [claim] = await store.claim("w2", lease_s=30, limit=1)
        assert (claim.previous_status, claim.waiting_for) == ("waiting", "timer")

    _with_store(backend, scenario, clock=clock)


# -- workers ----------------------------------------------------------------------------------


def test_workers_heartbeat_are_listed_with_their_leases_and_are_removed(
    backend: Backend,
) -> None:
    clock = FakeClock()
    w1 = WorkerInfo(worker_id="w1", host="host-a", pid=4_000_000, concurrency=4, started_at=990.0)
    w2 = WorkerInfo(worker_id="w2", host="host-b", pid=12, concurrency=1, started_at=995.0)

    async def scenario(store: Store) -> None:
        await store.heartbeat_worker(w2)
        await store.heartbeat_worker(w1)
        await store.create_run(_new_run("run_1", 1_000.0))
        await store.create_run(_new_run("run_2", 1_000.0))
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

    _with_store(backend, scenario, clock=clock)


# -- many at once -----------------------------------------------------------------------------


def test_fifty_concurrent_commits_to_fifty_runs_all_land(backend: Backend) -> None:
    runs = [_new_run(f"run_{i:02}", 1_000.0) for i in range(50)]

    async def scenario(store: Store) -> None:
        await asyncio.gather(*(store.create_run(r) for r in runs))
        claims = {c.run_id: c for c in await store.claim("w1", lease_s=30, limit=100)}
        assert len(claims) == 50
        new = {r.run_id: _after(list(r.events), _responded(), _responded(2)) for r in runs}
        await asyncio.gather(
            *(
                store.commit(_commit(claims[r.run_id], "w1", list(r.events), new[r.run_id]))
                for r in runs
            )
        )
        for r in runs:
            assert await store.load_events(r.run_id) == [*r.events, *new[r.run_id]]
            assert verify_chain(await store.event_rows(r.run_id), r.run_id) is None
            assert (await store.get_run(r.run_id)).last_seq == 4

    _with_store(backend, scenario)


def test_one_conflicting_commit_among_concurrent_ones_does_not_undo_the_others(
    backend: Backend,
) -> None:
    runs = [_new_run(f"run_{i:02}", 1_000.0) for i in range(20)]

    async def scenario(store: Store) -> None:
        for r in runs:
            await store.create_run(r)
        claims = {c.run_id: c for c in await store.claim("w1", lease_s=30, limit=100)}
        commits = []
        for i, r in enumerate(runs):
            history = list(r.events)
            commits.append(
                _commit(
                    claims[r.run_id],
                    "w1",
                    history,
                    _after(history, _responded()),
                    expected_seq=7 if i == 10 else None,
                )
            )
        results = await asyncio.gather(*(store.commit(c) for c in commits), return_exceptions=True)
        assert isinstance(results[10], ConflictError)
        assert [i for i, r in enumerate(results) if r is not None] == [10]
        seqs = [(await store.get_run(r.run_id)).last_seq for r in runs]
        assert seqs == [2 if i == 10 else 3 for i in range(20)]

    _with_store(backend, scenario)


# -- memory -----------------------------------------------------------------------------------


def test_memory_recalls_until_its_ttl_and_only_for_its_tenant(backend: Backend) -> None:
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

    _with_store(backend, scenario, clock=clock)


# -- copying between backends -----------------------------------------------------------------


async def _busy_run(store: Store, clock: FakeClock) -> None:
    """run_1 with a consumed message, an unread one, and w2's lease on it."""
    run = _new_run("run_1", clock.now - 0.75)
    history = await _park(store, run, status="waiting", waiting_for="message")
    clock.now += 1.5
    inbox_id = await store.send("run_1", "order A1")
    [claim] = await store.claim("w2", lease_s=30, limit=1)
    new = _after(history, MessageReceived(text="order A1", inbox_id=inbox_id), _responded())
    clock.now += 1 / 3
    await store.commit(_commit(claim, "w2", history, new, consumed_inbox=(inbox_id,)))
    await store.send("run_1", "and A2")  # unread; w2 still holds the run


def test_a_run_copies_from_sqlite_to_postgres_and_back_exactly(
    db_path: Path, pg_url: str, tmp_path: Path
) -> None:
    clock = FakeClock(1_000.0)
    sqlite_a = Backend("sqlite", f"sqlite:///{db_path}")
    postgres = Backend("postgres", pg_url)
    sqlite_b = Backend("sqlite", f"sqlite:///{tmp_path / 'back.db'}")

    async def scenario() -> None:
        stores = [b.open(clock) for b in (sqlite_a, postgres, sqlite_b)]
        try:
            await _busy_run(stores[0], clock)
            original = await stores[0].export_run("run_1")
            assert len(original.events) == 5
            assert [c is None for *_, c in original.inbox] == [False, True]
            previous = original
            for target in stores[1:]:
                await target.import_run(previous)
                copy = await target.export_run("run_1")
                assert copy.record == original.record
                assert copy.agent_spec == original.agent_spec
                assert [tuple(r) for r in copy.events] == [tuple(r) for r in original.events]
                assert verify_chain(list(copy.events), "run_1") is None
                assert [m[1:] for m in copy.inbox] == [m[1:] for m in original.inbox]
                assert await target.load_events("run_1") == await stores[0].load_events("run_1")
                assert [m.text for m in await target.pending_messages("run_1")] == ["and A2"]
                previous = copy
            # An id already there is refused, and the run there stays as it was.
            with pytest.raises(StoreError, match="run_1"):
                await stores[1].import_run(original)
            assert len(await stores[1].event_rows("run_1")) == 5
        finally:
            for store in stores:
                await store.close()

    asyncio.run(scenario())


def test_importing_a_run_id_that_exists_is_a_store_error(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.create_run(_new_run("run_1", 1_000.0))
        export = await store.export_run("run_1")
        with pytest.raises(StoreError):
            await store.import_run(export)
        assert await store.run_ids() == ["run_1"]
        assert len(await store.event_rows("run_1")) == 2

    _with_store(backend, scenario)


# -- schema -----------------------------------------------------------------------------------


def test_a_fresh_database_gets_every_migration_once(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        assert await store.schema_version() == store.latest_schema_version() == 10

    _with_store(backend, scenario)
    query = "SELECT version FROM charter_migrations ORDER BY version"
    assert [v for (v,) in backend.sql(query)] == [1, 2, 3, 4, 5, 6, 9, 10]
    # Opening it again applies nothing twice.
    _with_store(backend, scenario)
    assert backend.sql("SELECT count(*) FROM charter_migrations") == [(8,)]
    tables = {"runs", "events", "inbox", "memory", "agents", "workers", "killswitch", "counters"}
    tables.add("run_keys")
    assert tables <= backend.tables()


def test_sqlite_only_a_database_file_is_in_wal_mode(db_path: Path) -> None:
    sqlite = Backend("sqlite", f"sqlite:///{db_path}")
    _with_store(sqlite, lambda store: store.schema_version())
    assert sqlite.sql("PRAGMA journal_mode") == [("wal",)]


def test_a_database_newer_than_charter_is_refused(backend: Backend) -> None:
    backend.sql(
        "CREATE TABLE charter_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    backend.sql("INSERT INTO charter_migrations VALUES (999, 0)")

    async def open_and_use() -> None:
        store: Store | None = None
        try:
            store = backend.open()  # SQLite refuses here; PostgreSQL at its first use
            await store.schema_version()
        finally:
            if store is not None:
                await store.close()

    with pytest.raises(SchemaTooNewError) as info:
        asyncio.run(open_and_use())

    assert "999" in info.value.message
    assert info.value.code == "schema_too_new"
    assert "runs" not in backend.tables()  # nothing was migrated into the newer database


def test_postgres_only_workers_starting_at_once_migrate_a_fresh_database_once(
    pg_url: str,
) -> None:
    async def scenario() -> list[int]:
        stores = [PostgresStore(pg_url) for _ in range(6)]
        try:
            return list(await asyncio.gather(*(s.schema_version() for s in stores)))
        finally:
            for store in stores:
                await store.close()

    assert asyncio.run(scenario()) == [10] * 6
    postgres = Backend("postgres", pg_url)
    versions = postgres.sql("SELECT version FROM charter_migrations ORDER BY version")
    assert versions == [(1,), (2,), (3,), (4,), (5,), (6,), (9,), (10,)]


_OPEN_READ_ONLY = """
import asyncio, json, sys
from charter.errors import CharterError
from charter.store import SQLiteStore
try:
    store = SQLiteStore(sys.argv[1])
except CharterError as exc:
    print(json.dumps({"class": type(exc).__name__, "message": exc.message, "hint": exc.hint}))
else:
    asyncio.run(store.close())
    print(json.dumps({"class": None}))
"""


def test_sqlite_only_a_read_only_database_is_a_clear_store_error(db_path: Path) -> None:
    sqlite = Backend("sqlite", f"sqlite:///{db_path}")
    _with_store(sqlite, lambda store: asyncio.sleep(0))  # a real, migrated database
    command = [sys.executable, "-c", _OPEN_READ_ONLY, str(db_path)]
    if os.geteuid() == 0:
        # Root writes read-only files anyway; a child without the capabilities that let it
        # override file permissions meets them as any other user would.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file read-only to us")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]
    db_path.chmod(0o444)
    db_path.parent.chmod(0o555)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    finally:
        db_path.parent.chmod(0o755)
        db_path.chmod(0o644)
    outcome = json.loads(result.stdout)
    assert outcome["class"] == "StoreError", outcome
    assert "read-only" in outcome["message"]
    assert str(db_path) in outcome["message"]


def test_a_closed_store_refuses_writes(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.open()
        await store.schema_version()
        await store.close()
        await store.close()  # closing twice is harmless
        with pytest.raises(StoreError, match="closed"):
            await store.create_run(_new_run("run_1", 1_000.0))

    asyncio.run(scenario())


# -- wake-ups ---------------------------------------------------------------------------------


def test_wait_for_work_wakes_at_another_stores_news_or_returns_after_its_timeout(
    backend: Backend,
) -> None:
    async def timed(waiter: Store, timeout: float, trigger: Callable[[], Awaitable[Any]]) -> float:
        """Seconds from ``trigger`` to the return of a ``wait_for_work`` begun before it."""
        task = asyncio.create_task(waiter.wait_for_work(timeout))
        await asyncio.sleep(0.2)
        assert not task.done()  # nothing happened yet: it waits
        started = time.monotonic()
        await trigger()
        await task
        return time.monotonic() - started

    async def scenario() -> None:
        waiter, other = backend.open(), backend.open()
        try:
            await _park(other, _new_run("run_1", 1_000.0), status="waiting", waiting_for="message")
            await other.create_run(_new_run("run_2", 1_000.0))
            [claim] = await other.claim("w2", lease_s=30, limit=1, run_id="run_2")
            await waiter.wait_for_work(0.5)  # starts listening; takes any earlier wake-up

            triggers: list[Callable[[], Awaitable[Any]]] = [
                lambda: other.create_run(_new_run("run_3", 1_000.0)),
                lambda: other.send("run_1", "hello"),
                lambda: other.release("w2", "run_2", claim.epoch),
            ]
            for trigger in triggers:
                if backend.name == "postgres":
                    # Woken by the notification, long before the timeout.
                    assert await timed(waiter, 5.0, trigger) < 2.0
                else:  # SQLite has no notifications: the waiter simply sleeps its time out
                    assert await timed(waiter, 0.5, trigger) >= 0.25
        finally:
            await waiter.close()
            await other.close()

    asyncio.run(scenario())


# -- kill switch ------------------------------------------------------------------------------


def test_kill_switches_are_set_listed_and_lifted(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        assert await store.killswitches() == []
        await store.set_killswitch(tenant="acme", agent="*", on=True, reason="incident 12")
        await store.set_killswitch(tenant="*", agent="mailer", on=True, reason="")
        await store.set_killswitch(tenant="acme", agent="*", on=True, reason="incident 13")
        switches = await store.killswitches()
        assert [(s.tenant, s.agent, s.reason) for s in switches] == [
            ("acme", "*", "incident 13"),
            ("*", "mailer", ""),
        ]
        assert switches[0].covers("acme", "anyone") and not switches[0].covers("globex", "x")
        assert switches[1].covers("globex", "mailer") and not switches[1].covers("acme", "x")
        await store.set_killswitch(tenant="acme", agent="*", on=False, reason="")
        assert [(s.tenant, s.agent) for s in await store.killswitches()] == [("*", "mailer")]

    _with_store(backend, scenario)
