"""SQLite store: WAL, immediate transactions, a stated fsync policy, one writer with group commit.

Every write goes through one writer thread. It takes whatever requests are queued (up to
``_BATCH``) and runs them in a single ``BEGIN IMMEDIATE`` transaction, each inside its own
savepoint, so that one disk flush serves every run that committed at that moment and one
request's conflict does not undo the others. Reads use their own connection (WAL lets them
run beside the writer).
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from charter.clock import Clock, wall_clock
from charter.errors import (
    ConflictError,
    NotFoundError,
    RunStateError,
    SchemaTooNewError,
    StoreError,
    StoreLockedError,
)
from charter.events import FINAL_STATUSES, GENESIS_HASH, Event, RunStatus, parse_body
from charter.stats import StatsReport
from charter.store import (
    _audit,
    _cache,
    _event_log,
    _opening,
    _run_filter,
    _run_keys,
    _sqlite_approvals as _approvals,
    _stats,
)
from charter.store._base import (
    ApprovalRecord,
    CancelRequest,
    Claim,
    Commit,
    EventRow,
    InboxMessage,
    KillSwitch,
    KillSwitchAction,
    NewRun,
    RoleGrant,
    RunExport,
    RunHead,
    RunRecord,
)
from charter.store._cancels import SQLiteCancels, honour_sqlite, pending_sqlite
from charter.store._notifications import SQLiteNotifications, outbox_rows, outbox_sql
from charter.store._schedules import SQLiteSchedules
from charter.store._sqlite_retention import SQLiteRetention
from charter.store._sqlite_side import SQLiteSideTables
from charter.store._sqlite_tables import SQLiteTables

T = TypeVar("T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
_BATCH = 256
_AUDIT_SCHEMA = 10
_RUN_COLUMNS = (
    "run_id, agent_name, agent_version, agent_hash, tenant, principal, status, waiting_for,"
    " ready_at, lease_owner, lease_expires_at, lease_epoch, last_seq, last_hash, state,"
    " created_at, updated_at"
)
_NEXT_RUN_NO = "(SELECT coalesce(max(run_no), 0) + 1 FROM runs)"
"""A new run's number (schema 11): one writer, so the largest plus one is free."""


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("charter.store") / "migrations" / "sqlite"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (comments must not contain ';')."""
    return [s for s in sql.split(";") if s.strip()]


def translate(exc: sqlite3.Error, path: str) -> StoreError:
    """SQLite's errors, translated once at the boundary."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreLockedError(
            f"database {path} is locked by another process and stayed locked",
            hint="is another program holding a long transaction on it?",
        )
    if "readonly" in text or "read-only" in text:
        return StoreError(
            f"database {path} is read-only",
            hint="Charter needs write access to the file and to its directory (for the WAL)",
        )
    if "unable to open" in text:
        return StoreError(
            f"cannot open database {path}", hint="does the directory exist and is it writable?"
        )
    if "not a database" in text or "malformed" in text:
        return StoreError(f"{path} is not a Charter database or is corrupt: {text}")
    return StoreError(f"database {path}: {text}")


class SQLiteStore(
    SQLiteRetention,
    SQLiteCancels,
    SQLiteSchedules,
    SQLiteNotifications,
    SQLiteSideTables,
    SQLiteTables,
):
    """The embedded store. Open it with :func:`charter.store.open_store` or directly."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_s: float = 5.0,
        clock: Clock = wall_clock,
        read_only: bool = False,
        audit_key: _audit.AuditKey | None = None,
    ) -> None:
        self.path = str(path)
        self.audit_key = audit_key
        """Seals what this store appends to the audit log (``store/_audit.py``)."""
        self.url = f"sqlite:///{self.path}"
        self.synchronous = synchronous
        self.read_only = read_only
        """Opened to read (``store/_opening.py``): never created, migrated, locked or written."""
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        try:
            if read_only:
                self._reader = _opening.connect_sqlite_read(self.path, timeout_s=busy_timeout_s)
            else:
                _opening.check_sqlite_write(self.path, timeout_s=busy_timeout_s)
                self._reader = self._connect()
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        try:
            if read_only:
                _opening.check_sqlite_read(self._reader, self.path, self.latest_schema_version())
            else:
                self._migrate(self._reader)
        except BaseException as exc:
            self._reader.close()
            if isinstance(exc, sqlite3.Error):
                raise translate(exc, self.path) from exc
            raise
        # Reads get their own thread, so tools hung in the default executor cannot starve them.
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="charter-sqlite-read")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False

    # -- connections and schema ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrations = _migrations()
        latest = migrations[-1][0]
        conn.create_function("charter_unhex", 1, _event_log.unhex, deterministic=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS charter_migrations"
                " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = conn.execute("SELECT max(version) FROM charter_migrations").fetchone()[0]
            current = current or 0
            if current > latest:
                raise SchemaTooNewError(
                    f"database {self.path} has schema version {current};"
                    f" this Charter knows up to {latest}",
                    hint="upgrade Charter; it will not open a database newer than itself",
                )
            for version, sql in migrations:
                if version > current:
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO charter_migrations VALUES (?, ?)", (version, self._clock())
                    )
                    if version == _AUDIT_SCHEMA:
                        runs = [r[0] for r in conn.execute("SELECT run_id FROM runs")]
                        entry = _audit.genesis(runs)
                        _audit.sqlite_append(conn, [entry], self._clock(), self.audit_key)
            _event_log.check_types(conn.execute("SELECT code, type FROM event_types"))
            conn.executemany(
                "INSERT OR IGNORE INTO event_types (code, type) VALUES (?, ?)",
                _event_log.type_rows(),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def schema_version(self) -> int:
        row = await self._read(
            lambda c: c.execute("SELECT max(version) FROM charter_migrations").fetchone()
        )
        return int(row[0] or 0)

    def latest_schema_version(self) -> int:
        return _migrations()[-1][0]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
        await asyncio.get_running_loop().run_in_executor(self._reads, self._reader.close)
        self._reads.shutdown(wait=True)

    # -- the writer ---------------------------------------------------------------------------

    async def _write(self, op: Callable[[sqlite3.Connection, float], T]) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        if self.read_only:
            raise StoreError(
                f"database {self.path} was opened to read; this command cannot write to it"
            )
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="charter-sqlite-writer")
            self._writer.daemon = True
            self._writer.start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((op, fut, loop))
        return await fut

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < _BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            now = self._clock()
            if len(batch) == 1:  # nothing to isolate it from: its failure rolls back all
                try:
                    results.append((True, batch[0][0](conn, now)))
                except Exception as exc:
                    conn.execute("ROLLBACK")
                    results.append((False, exc))
                else:
                    conn.execute("COMMIT")
                self._resolve_all(batch, results)
                return
            for op, _, _ in batch:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op(conn, now)))
                    conn.execute("RELEASE op")
                except Exception as exc:  # delivered to the caller; the others go on
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = translate(exc, self.path)
            results = [(False, error)] * len(batch)
        self._resolve_all(batch, results)

    def _resolve_all(self, batch: list[Any], results: list[tuple[bool, Any]]) -> None:
        for (_, fut, loop), (ok, value) in zip(batch, results, strict=True):
            if isinstance(value, sqlite3.Error):
                ok, value = False, translate(value, self.path)
            loop.call_soon_threadsafe(_resolve, fut, ok, value)

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            try:
                return op(self._reader)
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

        if self._closed:
            raise StoreError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reads, run)

    # -- agents and runs ----------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> None:
        def op(conn: sqlite3.Connection, now: float) -> None:
            new_agent = conn.execute(
                "INSERT OR IGNORE INTO agents (agent_hash, spec) VALUES (?, ?)",
                (run.agent_hash, run.agent_spec),
            ).rowcount
            last = run.events[-1]
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, run_no) VALUES (?, ?, ?, ?, ?, ?, 'queued',"
                f" NULL, ?, NULL, NULL, 0, ?, ?, ?, ?, ?, {_NEXT_RUN_NO})",
                (
                    run.run_id,
                    run.agent_name,
                    run.agent_version,
                    run.agent_hash,
                    run.tenant,
                    run.principal,
                    run.created_at,
                    last.seq,
                    last.hash,
                    run.state,
                    run.created_at,
                    run.created_at,
                ),
            )
            _insert_events(conn, run.events)
            _run_keys.sqlite_insert(conn, run)
            entries = [_audit.agent_seen(run.agent_hash, run.agent_spec)] if new_agent else []
            entries.append(
                _audit.created(run.run_id, run.tenant, run.principal, run.agent_hash, last)
            )
            _audit.sqlite_append(conn, entries, now, self.audit_key)

        await self._write(op)

    async def run_for_key(self, tenant: str, key: str) -> tuple[str, str] | None:
        return await self._read(lambda c: _run_keys.sqlite_select(c, tenant, key))

    async def get_agent_spec(self, agent_hash: str) -> str:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT spec FROM agents WHERE agent_hash = ?", (agent_hash,)
            ).fetchone()
            return None if row is None else str(row[0])

        spec = await self._read(op)
        if spec is None:
            raise NotFoundError(f"no agent with hash {agent_hash}")
        return spec

    async def get_run(self, run_id: str) -> RunRecord:
        def op(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _record(row)

        record = await self._read(op)
        if record is None:
            raise NotFoundError(
                f"no run {run_id!r} in {self.url}", hint="'charter runs list' shows the runs"
            )
        return record

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        limit: int = 100,
        tenant: str | None = None,
        agent: str | None = None,
        since: float | None = None,
        before: tuple[float, str] | None = None,
        principal: str | None = None,
        model: str | None = None,
    ) -> list[RunRecord]:
        where, args = _run_filter.where(
            "?", status=status, tenant=tenant, agent=agent, since=since, before=before,
            principal=principal, model=model,
        )  # fmt: skip

        def op(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs{where}{_run_filter.ORDER} LIMIT ?",
                [*args, limit],
            ).fetchall()
            return [_record(r) for r in rows]

        return await self._read(op)

    async def run_heads(
        self, run_ids: Sequence[str], *, created_since: float | None = None
    ) -> list[RunHead]:
        ids = list(dict.fromkeys(run_ids))
        query, args = _run_filter.heads("?", len(ids), created_since)
        if not query:
            return []
        rows = await self._read(lambda c: c.execute(query, [*ids, *args]).fetchall())
        return [RunHead(*r) for r in rows]

    async def run_counts(self) -> dict[str, int]:
        rows = await self._read(
            lambda c: c.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
        )
        return {status: int(n) for status, n in rows}

    async def run_ids(self) -> list[str]:
        return await self._read(
            lambda c: [r[0] for r in c.execute("SELECT run_id FROM runs ORDER BY created_at")]
        )

    # -- events -------------------------------------------------------------------------------

    async def load_events(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            # One row before the range, for the first event's prev_hash.
            rows = conn.execute(_event_log.select_sql("?"), (run_id, after_seq)).fetchall()
            prev = GENESIS_HASH
            events = []
            for seq, type_, version, at, payload, hash_ in map(_event_log.shown, rows):
                if seq > after_seq:
                    events.append(
                        Event(
                            run_id=run_id,
                            seq=seq,
                            at=at,
                            body=parse_body(payload, type_),
                            payload=payload,
                            prev_hash=prev,
                            hash=hash_,
                            schema_version=version,
                        )
                    )
                prev = hash_
            return events

        return await self._read(op)

    async def event_rows(self, run_id: str) -> list[EventRow]:
        rows = await self._read(
            lambda c: c.execute(_event_log.select_sql("?"), (run_id, 0)).fetchall()
        )
        return [_event_log.shown(r) for r in rows]

    async def commit(self, commit: Commit) -> CancelRequest | None:
        return await self._write(lambda conn, now: _apply_commit(conn, commit, now, self.audit_key))

    # -- inbox --------------------------------------------------------------------------------

    async def send(self, run_id: str, text: str) -> int:
        def op(conn: sqlite3.Connection, now: float) -> int:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no run {run_id!r} in {self.url}")
            if row[0] in FINAL_STATUSES:
                raise RunStateError(
                    f"run {run_id} has finished ({row[0]}); it takes no more messages",
                    hint="start a new run instead",
                )
            cur = conn.execute(
                "INSERT INTO inbox (run_id, text, sent_at) VALUES (?, ?, ?)", (run_id, text, now)
            )
            conn.execute(
                "UPDATE runs SET ready_at = ? WHERE run_id = ? AND status = 'waiting'"
                " AND waiting_for = 'message'",
                (now, run_id),
            )
            return int(cur.lastrowid or 0)

        return await self._write(op)

    async def pending_messages(self, run_id: str) -> list[InboxMessage]:
        return await self._read(
            lambda c: [
                InboxMessage(*row)
                for row in c.execute(
                    "SELECT inbox_id, text, sent_at FROM inbox"
                    " WHERE run_id = ? AND consumed_at IS NULL ORDER BY inbox_id",
                    (run_id,),
                )
            ]
        )

    # -- leases -------------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, *, lease_s: float, limit: int, run_id: str | None = None
    ) -> list[Claim]:
        def op(conn: sqlite3.Connection, now: float) -> list[Claim]:
            rows = conn.execute(
                "SELECT run_id, status, waiting_for FROM runs WHERE ready_at <= ?"
                " AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
                " AND (? IS NULL OR run_id = ?) ORDER BY ready_at LIMIT ?",
                (now, now, run_id, run_id, limit),
            ).fetchall()
            claims = []
            for found, status, waiting_for in rows:
                epoch = conn.execute(
                    "UPDATE runs SET lease_owner = ?, lease_expires_at = ?,"
                    " lease_epoch = lease_epoch + 1, status = 'running' WHERE run_id = ?"
                    " RETURNING lease_epoch",
                    (worker_id, now + lease_s, found),
                ).fetchone()[0]
                claims.append(Claim(found, int(epoch), status, waiting_for))
            return claims

        return await self._write(op)

    async def renew(self, worker_id: str, leases: dict[str, int], *, lease_s: float) -> set[str]:
        def op(conn: sqlite3.Connection, now: float) -> set[str]:
            lost = set()
            for run_id, epoch in leases.items():
                cur = conn.execute(
                    "UPDATE runs SET lease_expires_at = ? WHERE run_id = ?"
                    " AND lease_owner = ? AND lease_epoch = ?",
                    (now + lease_s, run_id, worker_id, epoch),
                )
                if cur.rowcount != 1:
                    lost.add(run_id)
            return lost

        return await self._write(op)

    async def release(self, worker_id: str, run_id: str, epoch: int) -> None:
        await self._write(
            lambda conn, now: conn.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE run_id = ? AND lease_owner = ? AND lease_epoch = ?",
                (run_id, worker_id, epoch),
            )
        )

    async def work_outlook(self) -> tuple[int, int]:
        """(runs claimable now, runs ready but leased): zero and zero means idle."""
        now = self._clock()

        def op(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(
                "SELECT"
                " sum(lease_expires_at IS NULL OR lease_expires_at < ?),"
                " sum(lease_expires_at IS NOT NULL AND lease_expires_at >= ?)"
                " FROM runs WHERE ready_at <= ?",
                (now, now, now),
            ).fetchone()
            return int(row[0] or 0), int(row[1] or 0)

        return await self._read(op)

    async def next_ready_at(self) -> float | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT min(ready_at) FROM runs WHERE ready_at IS NOT NULL"
            ).fetchone()
        )
        return None if row[0] is None else float(row[0])

    async def wait_for_work(self, timeout_s: float) -> None:
        """SQLite has no notifications between processes: workers poll."""
        await asyncio.sleep(timeout_s)

    # -- kill switch --------------------------------------------------------------------------

    async def set_kill_switch(
        self,
        *,
        tenant: str,
        agent: str,
        on: bool,
        reason: str,
        action: KillSwitchAction = "wait",
        actor: str | None = None,
    ) -> None:
        entry = _audit.kill_switch(on, actor, tenant, agent, reason, action)

        def op(conn: sqlite3.Connection, now: float) -> None:
            _audit.sqlite_append(conn, [entry], now, self.audit_key)
            if on:
                conn.execute(
                    "INSERT INTO killswitch (tenant, agent, since, reason, action)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, agent)"
                    " DO UPDATE SET reason = excluded.reason, action = excluded.action",
                    (tenant, agent, now, reason, action),
                )
            else:
                conn.execute(
                    "DELETE FROM killswitch WHERE tenant = ? AND agent = ?", (tenant, agent)
                )
                conn.execute(
                    "UPDATE runs SET ready_at = ? WHERE status = 'waiting'"
                    " AND waiting_for = 'kill_switch'",
                    (now,),
                )

        await self._write(op)

    async def kill_switches(self) -> list[KillSwitch]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT tenant, agent, since, reason, action FROM killswitch ORDER BY since"
            ).fetchall()
        )
        return [KillSwitch(*row) for row in rows]

    # -- approvals and roles ------------------------------------------------------------------

    async def approvals(
        self,
        *,
        tenant: str | None = None,
        status: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ApprovalRecord]:
        return await self._read(
            lambda c: _approvals.select(c, tenant=tenant, status=status, run_id=run_id, limit=limit)
        )

    async def get_approval(self, approval_id: str) -> ApprovalRecord:
        return await self._read(lambda c: _approvals.get(c, approval_id, self.url))

    async def decide_approval(
        self,
        approval_id: str,
        *,
        decision: Literal["granted", "denied", "expired"],
        by: str | None,
        note: str | None,
    ) -> tuple[ApprovalRecord, bool]:
        def op(conn: sqlite3.Connection, now: float) -> tuple[ApprovalRecord, bool]:
            pending = _approvals.get(conn, approval_id, self.url).status == "pending"
            record, won = _approvals.decide(
                conn, approval_id, decision=decision, by=by, note=note, now=now, url=self.url
            )
            if pending and record.status != "pending":
                _audit.sqlite_append(conn, [_audit.decided(record)], now, self.audit_key)
            return record, won

        return await self._write(op)

    async def set_role(
        self, *, principal: str, role: str, tenant: str, on: bool, actor: str | None = None
    ) -> None:
        def op(conn: sqlite3.Connection, now: float) -> None:
            changed = _approvals.set_role(
                conn, principal=principal, role=role, tenant=tenant, on=on, now=now
            )
            if changed:
                entry = _audit.role(on, actor, principal, role, tenant)
                _audit.sqlite_append(conn, [entry], now, self.audit_key)

        await self._write(op)

    async def audit(self, entries: Sequence[_audit.AuditEntry]) -> None:
        await self._write(
            lambda conn, now: _audit.sqlite_append(conn, entries, now, self.audit_key)
        )

    async def audit_records(self, *, after_seq: int = 0) -> list[_audit.AuditRecord]:
        rows = await self._read(
            lambda c: c.execute(_audit.SELECT.format(p="?"), (after_seq,)).fetchall()
        )
        return [_audit.from_row(r) for r in rows]

    async def role_grants(self, *, principal: str | None = None) -> list[RoleGrant]:
        return await self._read(lambda c: _approvals.role_grants(c, principal))

    # -- copying ------------------------------------------------------------------------------

    async def export_run(self, run_id: str) -> RunExport:
        record = await self.get_run(run_id)
        spec = await self.get_agent_spec(record.agent_hash)
        rows = await self.event_rows(run_id)
        inbox = await self._read(
            lambda c: c.execute(
                "SELECT inbox_id, text, sent_at, consumed_at FROM inbox WHERE run_id = ?"
                " ORDER BY inbox_id",
                (run_id,),
            ).fetchall()
        )
        approvals = await self.approvals(run_id=run_id, limit=1_000_000)
        [(state,)] = await self._read(
            lambda c: c.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,)).fetchall()
        )
        inbox_rows = tuple(tuple(r) for r in inbox)
        return RunExport(record, spec, tuple(rows), inbox_rows, tuple(approvals), state)

    async def import_run(self, export: RunExport) -> None:
        """Insert a run exactly as exported (hashes, leases and all); an existing id conflicts."""
        r = export.record

        def op(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO agents (agent_hash, spec) VALUES (?, ?)",
                (r.agent_hash, export.agent_spec),
            )
            values = [getattr(r, name.strip()) for name in _RUN_COLUMNS.split(",")]
            values[14] = export.state_text or json.dumps(r.state)
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, run_no)"
                f" VALUES ({', '.join('?' * 17)}, {_NEXT_RUN_NO})",
                values,
            )
            conn.executemany(
                _event_log.insert_sql("?"),
                [(r.run_id, *_event_log.stored(*row)) for row in export.events],
            )
            # Inbox ids are kept: message_received events name them.
            conn.executemany(
                "INSERT INTO inbox (inbox_id, run_id, text, sent_at, consumed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(i, r.run_id, text, sent, consumed) for i, text, sent, consumed in export.inbox],
            )
            _approvals.insert(conn, export.approvals)

        await self._write(op)

    # -- statistics (see _stats.py) -----------------------------------------------------------

    async def stats(
        self, *, since: float | None = None, agent: str | None = None, tenant: str | None = None
    ) -> StatsReport:
        query = _stats.StatsQuery("sqlite", since=since, agent=agent, tenant=tenant)
        return await self._read(lambda conn: _stats.sqlite_stats(conn, query))

    # -- model usage (see _cache.py) ------------------------------------------------------

    async def runs_with_model(
        self, model: str, *, status: RunStatus | None = None, limit: int = 100
    ) -> list[RunRecord]:
        query = _cache.runs_with_model(_RUN_COLUMNS, "sqlite")
        args = (model, model, status, status, limit)
        rows = await self._read(lambda c: c.execute(query, args).fetchall())
        return [_record(r) for r in rows]


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


_OUTBOX = outbox_sql("?")


def _insert_events(conn: sqlite3.Connection, events: Iterable[Event]) -> None:
    conn.executemany(_event_log.insert_sql("?"), _event_log.stored_events(events))


def _apply_commit(
    conn: sqlite3.Connection, c: Commit, now: float, key: _audit.AuditKey | None
) -> CancelRequest | None:
    last = c.events[-1] if c.events else None
    cur = conn.execute(
        "UPDATE runs SET last_seq = ?, last_hash = coalesce(?, last_hash), state = ?, status = ?,"
        " ready_at = ?, waiting_for = ?, updated_at = ?,"
        " lease_owner = CASE WHEN ? THEN NULL ELSE lease_owner END,"
        " lease_expires_at = CASE WHEN ? THEN NULL ELSE lease_expires_at END"
        " WHERE run_id = ? AND last_seq = ? AND lease_epoch = ? AND lease_owner = ?",
        (
            last.seq if last else c.expected_seq,
            last.hash if last else None,
            c.state,
            c.status,
            c.ready_at,
            c.waiting_for,
            now,
            c.release,
            c.release,
            c.run_id,
            c.expected_seq,
            c.epoch,
            c.worker_id,
        ),
    )
    if cur.rowcount != 1:
        raise ConflictError(
            f"run {c.run_id} moved on (expected seq {c.expected_seq}, lease epoch {c.epoch}):"
            " another worker holds it now"
        )
    _insert_events(conn, c.events)
    if notifications := outbox_rows(c.events, now):
        conn.executemany(_OUTBOX, notifications)
    if c.consumed_inbox:
        conn.executemany(
            "UPDATE inbox SET consumed_at = ? WHERE inbox_id = ?",
            [(now, i) for i in c.consumed_inbox],
        )
    if c.approvals:
        _approvals.insert(conn, c.approvals)
    honour_sqlite(conn, c, now)
    if c.waiting_for == "approval" and c.awaiting:
        _approvals.wake_if_decided(conn, c.run_id, c.awaiting, now)
    if c.waiting_for == "message":
        # A message that arrived while the run was working makes it runnable at once.
        conn.execute(
            "UPDATE runs SET ready_at = ? WHERE run_id = ? AND EXISTS"
            " (SELECT 1 FROM inbox WHERE run_id = ? AND consumed_at IS NULL)",
            (now, c.run_id, c.run_id),
        )
    _audit.sqlite_append(conn, _audit.head(c.run_id, c.status, c.events), now, key)
    return pending_sqlite(conn, c)


def _record(row: tuple[Any, ...]) -> RunRecord:
    values = list(row)
    values[14] = json.loads(values[14])
    return RunRecord(*values)
