"""The stores: the shipped conformance suite on both backends, and what only the database
itself can show (tampering, migrations, pragmas, copies, wake-ups across processes).

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

from charter import StoreError
from charter.errors import SchemaTooNewError
from charter.events import (
    MessageReceived,
    RunFinished,
    verify_chain,
)
from charter.store import (
    PostgresStore,
    SQLiteStore,
    Store,
    open_store,
)
from charter.testing.store_conformance import (
    FakeClock,
    StoreConformance,
    StoreFactory,
    commit_for,
    new_run,
    next_events,
    park,
    responded,
    rows,
    state_of,
)

pytestmark = pytest.mark.replay_exempt(
    "writes logs by hand through the store API (made-up agent specs and events), not"
    " runs the engine made"
)

T = TypeVar("T")


@dataclass(frozen=True)
class Backend:
    """One store backend under test, on its own fresh database."""

    name: str
    url: str

    @property
    def path(self) -> str:
        return self.url.removeprefix("sqlite:///")

    def open(self, clock: Callable[[], float] | None = None) -> Store:
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


class TestConformance(StoreConformance):
    """The shipped conformance suite (``charter.testing.store_conformance``), on both
    backends."""

    @pytest.fixture
    def store_factory(self, backend: Backend) -> StoreFactory:
        return backend.open


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


# -- runs and events --------------------------------------------------------------------------


def test_stored_events_keep_a_verifiable_chain_and_the_state_round_trips(
    backend: Backend,
) -> None:
    clock = FakeClock()
    run = new_run("run_1", clock.now - 0.9)

    async def scenario(store: Store) -> None:
        await store.create_run(run)
        [claim] = await store.claim("w1", lease_s=30, limit=1)
        history = list(run.events)
        for step in (1, 2, 3):
            # Times with every digit a double holds: the hash covers them exactly.
            new = next_events(history, responded(step), gap_s=1 / 3)
            await store.commit(commit_for(claim, "w1", history, new))
            history += new
            record = await store.get_run("run_1")
            assert record.state == json.loads(state_of(history))
        done = next_events(history, RunFinished(status="succeeded", output="ok"), gap_s=0.7)
        await store.commit(
            commit_for(claim, "w1", history, done, status="succeeded", ready_at=None, release=True)
        )
        history += done

        stored = await store.event_rows("run_1")
        assert [tuple(r) for r in stored] == rows(history)
        assert verify_chain(stored, "run_1") is None
        assert await store.load_events("run_1") == history
        assert await store.load_events("run_1", after_seq=4) == history[4:]
        record = await store.get_run("run_1")
        assert record.state == json.loads(state_of(history))
        assert (record.status, record.last_seq, record.last_hash) == ("succeeded", 6, done[0].hash)
        assert (record.lease_owner, record.lease_expires_at, record.ready_at) == (None,) * 3
        assert record.updated_at == clock.now

    _with_store(backend, scenario, clock=clock)
    # Verification reads what was stored: a payload changed behind the store breaks the chain.
    backend.sql("UPDATE event_log SET payload = '{\"step\":9}' WHERE seq = 4")

    async def check(store: Store) -> None:
        found = verify_chain(await store.event_rows("run_1"), "run_1")
        assert found is not None
        assert found.seq == 4

    _with_store(backend, check)


# -- copying between backends -----------------------------------------------------------------


async def _busy_run(store: Store, clock: FakeClock) -> None:
    """run_1 with a consumed message, an unread one, and w2's lease on it."""
    run = new_run("run_1", clock.now - 0.75)
    history = await park(store, run, status="waiting", waiting_for="message")
    clock.now += 1.5
    inbox_id = await store.send("run_1", "order A1")
    [claim] = await store.claim("w2", lease_s=30, limit=1)
    new = next_events(history, MessageReceived(text="order A1", inbox_id=inbox_id), responded())
    clock.now += 1 / 3
    await store.commit(commit_for(claim, "w2", history, new, consumed_inbox=(inbox_id,)))
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
        await store.create_run(new_run("run_1", 1_000.0))
        export = await store.export_run("run_1")
        with pytest.raises(StoreError):
            await store.import_run(export)
        assert await store.run_ids() == ["run_1"]
        assert len(await store.event_rows("run_1")) == 2

    _with_store(backend, scenario)


# -- schema -----------------------------------------------------------------------------------


def test_a_fresh_database_gets_every_migration_once(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        assert await store.schema_version() == store.latest_schema_version() == 15

    _with_store(backend, scenario)
    query = "SELECT version FROM charter_migrations ORDER BY version"
    assert [v for (v,) in backend.sql(query)] == [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15]
    # Opening it again applies nothing twice.
    _with_store(backend, scenario)
    assert backend.sql("SELECT count(*) FROM charter_migrations") == [(13,)]
    tables = {"runs", "event_log", "inbox", "memory", "agents", "workers", "killswitch"}
    tables.update(
        ("counters", "run_keys", "event_types", "cancel_requests", "api_tokens", "schedules")
    )
    tables.add("hook_signatures")
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

    assert asyncio.run(scenario()) == [15] * 6
    postgres = Backend("postgres", pg_url)
    versions = postgres.sql("SELECT version FROM charter_migrations ORDER BY version")
    assert versions == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
        (6,),
        (9,),
        (10,),
        (11,),
        (12,),
        (13,),
        (14,),
        (15,),
    ]


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
            await park(other, new_run("run_1", 1_000.0), status="waiting", waiting_for="message")
            await other.create_run(new_run("run_2", 1_000.0))
            [claim] = await other.claim("w2", lease_s=30, limit=1, run_id="run_2")
            await waiter.wait_for_work(0.5)  # starts listening; takes any earlier wake-up

            triggers: list[Callable[[], Awaitable[Any]]] = [
                lambda: other.create_run(new_run("run_3", 1_000.0)),
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
