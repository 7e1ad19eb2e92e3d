"""`charter db copy` carries every table that holds state: SQLite → PostgreSQL → SQLite gives
back every row of every table, enumerated from the schema itself (so a table added later
cannot be silently left out), and kill switches and role grants land before any run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.helpers.cli import run_charter
from tests.helpers.refund_agent import write_refund_agent

from charter.store import MemoryItem, WorkerInfo, copy_store, open_store
from charter.store._notifications import KINDS, Route

NOT_COPIED = ("charter_migrations", "workers")
"""The documented exclusions (docs/architecture.md, `db copy`): the target's own schema
history, and the live heartbeats of the source's worker processes."""


def _populate(tmp: Path, db: str) -> None:
    """State in every table: runs, events, inbox, agents, an approval, a role grant, a kill
    switch, a cancel request, an API token, a schedule, a webhook signature, counters, cache
    entries, memory, a worker's heartbeat, and notifications with their deliveries."""
    write_refund_agent(tmp, extra="  cache: {models: true}\n")
    for n in range(2):
        started = run_charter(tmp, "start", "agent.yaml", "--input", "refund", "--tenant",
                              "acme", "--principal", "ann", "--idempotency-key", f"req-{n}",
                              "--db", db)  # fmt: skip
        assert started.returncode == 0, started.stderr
    assert run_charter(tmp, "worker", "--until-idle", "--db", db).returncode == 0
    first = json.loads(run_charter(tmp, "runs", "list", "--json", "--db", db).stdout)[0]
    assert run_charter(tmp, "send", first["run_id"], "hello?", "--db", db).returncode == 0
    cancel = ("runs", "cancel", first["run_id"], "--reason", "duplicate", "--db", db)
    assert run_charter(tmp, *cancel).returncode == 0  # pending: no worker honours it here
    for args in (
        ("roles", "add", "bob", "lead", "--tenant", "acme"),
        ("killswitch", "on", "--tenant", "acme", "--reason", "incident 12"),
        ("tokens", "create", "carol", "--tenant", "acme", "--role", "support"),
        ("schedules", "add", "nightly", "--cron", "0 3 * * *", "--agent", "agent.yaml",
         "--input", "refund review", "--tenant", "acme"),
    ):  # fmt: skip
        done = run_charter(tmp, *args, "--db", db)
        assert done.returncode == 0, done.stderr

    async def side_tables() -> None:
        store = open_store(db)
        try:
            await store.take("refunds-per-hour", window_s=3600, limit=20)
            await store.add("spend:acme", window_s=86400, amount=12.5)
            await store.remember(
                MemoryItem("acme", "vip:7", {"tier": "gold"}, {"source": "crm"}, 1.0, None)
            )
            await store.remember_signature("tickets", "v1=ab", "d-1", prune_before=0.0)
            await store.heartbeat_worker(WorkerInfo("w-1", "host", 1, 4, time.time(), 0.0, 0))
            await store.fan_out([Route("ops", "http://127.0.0.1:9/", frozenset(KINDS))])
        finally:
            await store.close()

    asyncio.run(side_tables())


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of a SQLite file, from sqlite_master, with its rows in a stable order."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        found = {}
        for name in names:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
            listed = ", ".join(f'"{c}"' for c in sorted(columns))
            rows = conn.execute(f'SELECT {listed} FROM "{name}"').fetchall()
            found[name] = sorted(rows, key=repr)
        return found


def test_sqlite_to_postgres_to_sqlite_gives_back_every_row_of_every_table(
    tmp_path: Path, pg_url: str
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    _populate(tmp_path, source_url)
    source = _tables(tmp_path / "source.db")
    empty = [t for t, rows in source.items() if not rows]
    assert empty == [], f"populate these tables in _populate so the copy is checked: {empty}"
    assert set(NOT_COPIED) <= set(source)

    there = run_charter(tmp_path, "db", "copy", "--from", source_url, "--to", pg_url, "--json")
    assert there.returncode == 0, there.stderr
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    back = run_charter(tmp_path, "db", "copy", "--from", pg_url, "--to", back_url, "--json")
    assert back.returncode == 0, back.stderr

    copied = _tables(tmp_path / "back.db")
    assert set(copied) == set(source)
    for table in sorted(set(source) - set(NOT_COPIED)):
        assert copied[table] == source[table], table
    assert copied["workers"] == []  # live heartbeats belong to the source's processes
    report = json.loads(there.stdout)
    assert report["runs"] == 2
    assert report["tables"]["killswitch"] == 1 and report["tables"]["role_grants"] == 1

    # Writes stay off on the copy: the incident's kill switch came along.
    status = run_charter(tmp_path, "killswitch", "status", "--json", "--db", pg_url)
    assert [s["reason"] for s in json.loads(status.stdout)] == ["incident 12"]

    again = run_charter(tmp_path, "db", "copy", "--from", source_url, "--to", pg_url, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 2
    assert _tables(tmp_path / "source.db") == source  # the source was only read


def test_kill_switches_and_roles_are_copied_before_any_run(tmp_path: Path) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    _populate(tmp_path, source_url)
    target_path = tmp_path / "target.db"
    seen: list[tuple[int, int]] = []

    def look(_: str) -> None:  # as each run lands, what the target already holds
        with contextlib.closing(sqlite3.connect(target_path)) as conn:
            switches = conn.execute("SELECT count(*) FROM killswitch").fetchone()[0]
            grants = conn.execute("SELECT count(*) FROM role_grants").fetchone()[0]
        seen.append((switches, grants))

    async def scenario() -> None:
        source = open_store(source_url, mode="read")
        target = open_store(f"sqlite:///{target_path}")
        try:
            await copy_store(source, target, on_run=look)
        finally:
            await source.close()
            await target.close()

    asyncio.run(scenario())
    assert seen == [(1, 1), (1, 1)]


def test_runs_are_renumbered_by_the_copy_and_keep_their_own_events(tmp_path: Path) -> None:
    """Run numbers (``runs.run_no``) are per database: a copy gives each run the destination's
    next number, and no event lands on another run or is left without one."""
    source_path = tmp_path / "source.db"
    _populate(tmp_path, f"sqlite:///{source_path}")
    with contextlib.closing(sqlite3.connect(source_path)) as conn, conn:
        # Numbers as a database that has had other runs would give: the destination, which
        # numbers runs in the order it copies them, gives them others.
        for table in ("runs", "event_log"):
            conn.execute(f"UPDATE {table} SET run_no = -run_no")
            conn.execute(f"UPDATE {table} SET run_no = 3 - 2 * run_no")  # 1 -> 5, 2 -> 7
    target_path = tmp_path / "copy.db"
    done = run_charter(tmp_path, "db", "copy", "--from", f"sqlite:///{source_path}",
                       "--to", f"sqlite:///{target_path}")  # fmt: skip
    assert done.returncode == 0, done.stderr

    def log(path: Path) -> tuple[list[tuple[Any, ...]], int]:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            rows = conn.execute("SELECT run_id, seq, type, hash FROM events ORDER BY 1, 2")
            [(stored,)] = conn.execute("SELECT count(*) FROM event_log")
            return rows.fetchall(), stored

    (source, source_count), (target, target_count) = log(source_path), log(target_path)
    assert target == source
    assert target_count == source_count == len(source)
    verified = run_charter(tmp_path, "audit", "verify", "--all", "--db",
                           f"sqlite:///{target_path}")  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_destination_with_its_own_audit_log_is_refused_before_anything_is_copied(
    tmp_path: Path,
) -> None:
    """Two audit histories cannot be merged into one chain, so the copy is refused — and it
    must be refused up front: a copy stopped at its last step would leave the destination
    holding the source's runs and tables with none of its audit log (half-written)."""
    source, dest = tmp_path / "source.db", tmp_path / "dest.db"
    _populate(tmp_path, f"sqlite:///{source}")
    own = ("roles", "add", "dan", "lead", "--tenant", "acme", "--db", f"sqlite:///{dest}")
    assert run_charter(tmp_path, *own).returncode == 0  # an operator action: its own audit log
    before = _tables(dest)

    copied = run_charter(
        tmp_path, "db", "copy", "--from", f"sqlite:///{source}", "--to", f"sqlite:///{dest}"
    )

    assert copied.returncode != 0
    assert "audit log of its own" in copied.stderr
    assert "Traceback" not in copied.stderr
    assert _tables(dest) == before
