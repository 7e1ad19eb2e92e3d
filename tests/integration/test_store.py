"""The SQLite store against real database files: appends, fencing, leases, inbox, schema."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.helpers.strategies import seal_chain

from charter import ConflictError, NotFoundError, RunStateError, StoreError
from charter._engine.state import fold_all
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
from charter.store import Claim, Commit, NewRun, SQLiteStore, open_store

T = TypeVar("T")


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _with_store(
    path: Path, fn: Callable[[SQLiteStore], Awaitable[T]], *, clock: FakeClock | None = None
) -> T:
    async def main() -> T:
        store = SQLiteStore(path, clock=clock) if clock else open_store(f"sqlite:///{path}")
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


def _after(events: list[Event], *bodies: Any) -> list[Event]:
    """Seal ``bodies`` as the next events of a run's chain."""
    out: list[Event] = []
    prev = events[-1]
    for body in bodies:
        prev = Event.seal(
            run_id=prev.run_id, seq=prev.seq + 1, at=prev.at + 1, body=body, prev_hash=prev.hash
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
    )


def _sql(path: Path, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(query, args).fetchall()


# -- runs and events --------------------------------------------------------------------------


def test_create_run_then_load_events(db_path: Path) -> None:
    run = _new_run("run_1", 1_000.0)

    async def scenario(store: SQLiteStore) -> None:
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
        assert record.lease_owner is None
        assert await store.get_agent_spec("h" * 64) == '{"name": "a"}'
        assert await store.run_ids() == ["run_1"]

    _with_store(db_path, scenario)


def test_an_unknown_run_is_not_found(db_path: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        with pytest.raises(NotFoundError):
            await store.get_run("run_nope")
        with pytest.raises(NotFoundError):
            await store.get_agent_spec("nope")

    _with_store(db_path, scenario)


def test_creating_a_run_id_twice_is_a_store_error_and_keeps_the_first(db_path: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await store.create_run(_new_run("run_1", 1_000.0))
        with pytest.raises(StoreError):
            await store.create_run(_new_run("run_1", 2_000.0))
        assert (await store.get_run("run_1")).created_at == 1_000.0
        assert len(await store.load_events("run_1")) == 2

    _with_store(db_path, scenario)


def test_a_commit_with_the_wrong_expected_seq_is_a_conflict_and_writes_nothing(
    db_path: Path,
) -> None:
    clock = FakeClock()
    run = _new_run("run_1", clock.now)
    history = list(run.events)

    async def scenario(store: SQLiteStore) -> None:
        await store.create_run(run)
        [claim] = await store.claim("w1", lease_s=30, limit=1)
        stale = _commit(claim, "w1", history, _after(history, _responded()), expected_seq=1)
        with pytest.raises(ConflictError):
            await store.commit(stale)
        assert await store.load_events("run_1") == history
        record = await store.get_run("run_1")
        assert record.last_seq == 2
        assert record.state == json.loads(run.state)
        # The right expected_seq goes through.
        await store.commit(_commit(claim, "w1", history, _after(history, _responded())))
        assert (await store.get_run("run_1")).last_seq == 3

    _with_store(db_path, scenario, clock=clock)


def test_a_commit_under_a_lost_lease_is_a_conflict(db_path: Path) -> None:
    clock = FakeClock()
    run = _new_run("run_1", clock.now)
    history = list(run.events)

    async def scenario(store: SQLiteStore) -> None:
        await store.create_run(run)
        [first] = await store.claim("w1", lease_s=10, limit=1)
        assert await store.claim("w2", lease_s=10, limit=1) == []  # w1's lease holds
        clock.now += 11  # w1 stalls past its lease
        [second] = await store.claim("w2", lease_s=10, limit=1)
        assert second.epoch == first.epoch + 1

        with pytest.raises(ConflictError):
            await store.commit(_commit(first, "w1", history, _after(history, _responded())))
        assert len(await store.load_events("run_1")) == 2

        await store.commit(_commit(second, "w2", history, _after(history, _responded())))
        assert (await store.get_run("run_1")).last_seq == 3

    _with_store(db_path, scenario, clock=clock)


def test_a_run_is_claimed_by_only_one_of_two_concurrent_claimers(db_path: Path) -> None:
    run_ids = [f"run_{i:02}" for i in range(20)]

    async def scenario() -> None:
        one, two = open_store(f"sqlite:///{db_path}"), open_store(f"sqlite:///{db_path}")
        try:
            for run_id in run_ids:
                await one.create_run(_new_run(run_id, 1_000.0))
            # Two stores (two writer connections) race for every run at once...
            a, b = await asyncio.gather(
                one.claim("w1", lease_s=30, limit=100), two.claim("w2", lease_s=30, limit=100)
            )
            claimed = [c.run_id for c in a + b]
            assert sorted(claimed) == run_ids
            # ...and for single runs, one at a time.
            for run_id in run_ids:
                await one.release("w1", run_id, next(c.epoch for c in a + b if c.run_id == run_id))
                await two.release("w2", run_id, next(c.epoch for c in a + b if c.run_id == run_id))
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


# -- inbox ------------------------------------------------------------------------------------


def _park(
    store: SQLiteStore, run: NewRun, *, status: str, waiting_for: str | None
) -> Awaitable[Claim]:
    async def park() -> Claim:
        await store.create_run(run)
        [claim] = await store.claim("w1", lease_s=30, limit=1)
        history = list(run.events)
        body: Any = (
            RunWaiting(waiting_for="message")
            if status == "waiting"
            else RunFinished(status="succeeded", output="ok")
        )
        commit = _commit(
            claim,
            "w1",
            history,
            _after(history, body),
            status=status,
            ready_at=None,
            waiting_for=waiting_for,
            release=True,
        )
        await store.commit(commit)
        return claim

    return park()


def test_send_to_a_run_waiting_for_a_message_makes_it_claimable(db_path: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await _park(store, _new_run("run_1", 1_000.0), status="waiting", waiting_for="message")
        assert await store.claim("w2", lease_s=30, limit=10) == []

        inbox_id = await store.send("run_1", "order A1 please")

        [claim] = await store.claim("w2", lease_s=30, limit=10)
        assert claim.run_id == "run_1"
        assert claim.previous_status == "waiting"
        assert claim.waiting_for == "message"
        [message] = await store.pending_messages("run_1")
        assert (message.inbox_id, message.text) == (inbox_id, "order A1 please")

    _with_store(db_path, scenario)


def test_send_to_a_finished_run_is_a_run_state_error(db_path: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        await _park(store, _new_run("run_1", 1_000.0), status="succeeded", waiting_for=None)
        with pytest.raises(RunStateError, match="finished"):
            await store.send("run_1", "hello?")
        assert await store.pending_messages("run_1") == []

    _with_store(db_path, scenario)


def test_send_to_an_unknown_run_is_not_found(db_path: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        with pytest.raises(NotFoundError):
            await store.send("run_nope", "hello?")

    _with_store(db_path, scenario)


# -- schema -----------------------------------------------------------------------------------


def test_a_fresh_file_gets_every_migration_once(db_path: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        assert await store.schema_version() == store.latest_schema_version() == 2

    _with_store(db_path, scenario)
    assert [v for (v,) in _sql(db_path, "SELECT version FROM charter_migrations")] == [1, 2]
    # Opening it again applies nothing twice.
    _with_store(db_path, scenario)
    assert _sql(db_path, "SELECT count(*) FROM charter_migrations") == [(2,)]
    assert _sql(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_a_database_newer_than_charter_is_refused(db_path: Path) -> None:
    _sql(
        db_path,
        "CREATE TABLE charter_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)",
    )
    _sql(db_path, "INSERT INTO charter_migrations VALUES (999, 0)")

    with pytest.raises(SchemaTooNewError) as info:
        SQLiteStore(db_path)

    assert "999" in info.value.message
    assert info.value.code == "schema_too_new"
    tables = {name for (name,) in _sql(db_path, "SELECT name FROM sqlite_master")}
    assert "runs" not in tables  # nothing was migrated into the newer database


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


def test_a_read_only_database_is_a_clear_store_error(db_path: Path) -> None:
    _with_store(db_path, lambda store: asyncio.sleep(0))  # a real, migrated database
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


# -- group commit -----------------------------------------------------------------------------


def test_fifty_concurrent_commits_to_fifty_runs_all_land(db_path: Path) -> None:
    runs = [_new_run(f"run_{i:02}", 1_000.0) for i in range(50)]

    async def scenario(store: SQLiteStore) -> None:
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

    _with_store(db_path, scenario)


def test_one_conflicting_commit_in_a_group_does_not_undo_the_others(db_path: Path) -> None:
    runs = [_new_run(f"run_{i:02}", 1_000.0) for i in range(20)]

    async def scenario(store: SQLiteStore) -> None:
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

    _with_store(db_path, scenario)


# -- memory -----------------------------------------------------------------------------------


def test_memory_recalls_until_its_ttl_and_only_for_its_tenant(db_path: Path) -> None:
    clock = FakeClock(1_000.0)

    async def scenario(store: SQLiteStore) -> None:
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

    _with_store(db_path, scenario, clock=clock)


def test_a_closed_store_refuses_writes(db_path: Path) -> None:
    async def scenario() -> None:
        store = open_store(f"sqlite:///{db_path}")
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.create_run(_new_run("run_1", 1_000.0))

    asyncio.run(scenario())
