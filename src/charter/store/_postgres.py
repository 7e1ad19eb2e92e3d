"""PostgreSQL store: psycopg 3 async, a small pool, claims with SKIP LOCKED, LISTEN/NOTIFY.

It behaves exactly as the SQLite store (one conformance suite runs against both). Each write
is one transaction; PostgreSQL's own group commit serves the runs that commit at the same
moment. Times come from the database's clock unless a ``clock`` is given, so that workers on
several machines agree about leases and timers. The pool opens on first use, inside the
caller's event loop, once the schema has been migrated under an advisory lock.

A run that becomes runnable now is announced with ``NOTIFY charter_work`` in the transaction
that made it so; ``wait_for_work`` listens on one dedicated connection per store.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal
from urllib.parse import urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from charter.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    RunStateError,
    SchemaTooNewError,
    StoreError,
)
from charter.events import FINAL_STATUSES, GENESIS_HASH, Event, RunStatus, parse_body
from charter.redaction import redact_url
from charter.stats import StatsReport
from charter.store import (
    _audit,
    _cache,
    _counters,
    _event_log,
    _opening,
    _postgres_approvals as _approvals,
    _run_filter,
    _run_keys,
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
from charter.store._cancels import PostgresCancels, honour_postgres, pending_postgres
from charter.store._notifications import PostgresNotifications, outbox_rows, outbox_sql
from charter.store._postgres_retention import PostgresRetention
from charter.store._postgres_side import PostgresSideTables
from charter.store._postgres_tables import PostgresTables
from charter.store._schedules import PostgresSchedules

log = logging.getLogger("charter.store")

Row = tuple[Any, ...]
Cursor = psycopg.AsyncCursor[Row]
Args = Sequence[Any] | dict[str, Any] | None
CHANNEL = "charter_work"
_MIGRATION_LOCK = 0x63686172746572  # "charter": one migrator at a time per database
_AUDIT_SCHEMA = 10
_RELISTEN_S = 0.5
_RUN_COLUMNS = (
    "run_id, agent_name, agent_version, agent_hash, tenant, principal, status, waiting_for,"
    " ready_at, lease_owner, lease_expires_at, lease_epoch, last_seq, last_hash, state,"
    " created_at, updated_at"
)
_INSERT_EVENT = _event_log.insert_sql("%s")
_OUTBOX = outbox_sql("%s")
_CLAIM = """
WITH picked AS (
    SELECT run_id, status, waiting_for, ready_at FROM runs
    WHERE ready_at <= %(now)s AND (lease_expires_at IS NULL OR lease_expires_at < %(now)s)
      AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s::text)
    ORDER BY ready_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE runs r SET lease_owner = %(worker)s, lease_expires_at = %(now)s + %(lease_s)s,
        lease_epoch = r.lease_epoch + 1, status = 'running'
    FROM picked p WHERE r.run_id = p.run_id
    RETURNING r.run_id, r.lease_epoch, p.status, p.waiting_for, p.ready_at
)
SELECT run_id, lease_epoch, status, waiting_for FROM claimed ORDER BY ready_at, run_id
"""


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("charter.store") / "migrations" / "postgres"
    files = [f for f in folder.iterdir() if f.name.endswith(".sql")]
    return sorted((int(f.name.split("_", 1)[0]), f.read_text()) for f in files)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a store points, as messages name it: never with the password."""

    host: str
    port: str
    dbname: str
    user: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.address}/{self.dbname}"


def _reason(text: str) -> str:
    """libpq's own words, without its preamble: 'Connection refused', 'role "x" ...'."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first.rsplit("failed: ", 1)[-1].replace("FATAL:  ", "").strip()


_LOST = re.compile(
    "server closed the connection|terminating connection|consuming input failed|connection is lost"
)
_AUTH = re.compile('password authentication failed|no password supplied|pg_hba.conf|role ".*" does')


def translate(exc: Exception, target: Target, *, run_id: str | None = None) -> StoreError:
    """psycopg's errors, translated once at the boundary into messages a user can act on."""
    text, state = str(exc), getattr(exc, "sqlstate", None) or ""
    where, reason = target.address, _reason(text)
    if isinstance(exc, pg_errors.UniqueViolation) and run_id is not None:
        return StoreError(
            f"run {run_id} already exists in the database at {target}",
            hint="run ids are unique; copy into an empty database or use another id",
        )
    if isinstance(exc, PoolClosed):
        return StoreError("the store is closed")
    if state == "3D000" or re.search('database ".*" does not exist', text):
        return StoreError(
            f"database {target.dbname!r} does not exist on the PostgreSQL server at {where}",
            hint=f"create it with `createdb {target.dbname}` or point --db at an existing one",
        )
    if state.startswith("28") or _AUTH.search(text):
        return StoreError(
            f"PostgreSQL at {where} refused user {target.user!r}: {reason}",
            hint="check the user and password in the URL",
        )
    connecting = text.startswith("connection failed")  # never got a connection at all
    if (
        isinstance(exc, PoolTimeout | psycopg.InterfaceError)
        or state.startswith(("08", "57P"))
        or (_LOST.search(text) and not connecting)
    ):
        return StoreError(
            f"lost the connection to PostgreSQL at {where}: {reason}",
            hint="the worker will retry; is the server running?",
        )
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(
            f"cannot connect to PostgreSQL at {where}: {reason}",
            hint="is the server running? check the URL",
        )
    return StoreError(f"PostgreSQL at {target}: {reason}")


class PostgresStore(
    PostgresRetention,
    PostgresCancels,
    PostgresSchedules,
    PostgresNotifications,
    PostgresSideTables,
    PostgresTables,
):
    """The server store. Open it with :func:`charter.store.open_store` or directly."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        max_connections: int = 10,
        timeout_s: float = 10.0,
        read_only: bool = False,
        audit_key: _audit.AuditKey | None = None,
    ) -> None:
        self.url = redact_url(url)
        self.audit_key = audit_key
        """Seals what this store appends to the audit log (``store/_audit.py``)."""
        self.read_only = read_only
        """Opened to read (``store/_opening.py``): the schema is checked, never created."""
        try:
            params: dict[str, Any] = conninfo_to_dict(url)
        except psycopg.Error as exc:
            secret = urlsplit(url).password  # libpq may quote it back: then say nothing
            reason = "" if secret and secret in str(exc) else f": {_reason(str(exc))}"
            raise ConfigError(
                f"{self.url!r} is not a valid PostgreSQL URL{reason}",
                hint="postgresql://user:password@host:5432/dbname",
            ) from None
        params.setdefault("connect_timeout", str(max(1, round(timeout_s))))
        params.setdefault("application_name", "charter")  # how pg_stat_activity names us
        if read_only:
            params["options"] = _opening.read_only_options(params.get("options"))
        user = str(params.get("user") or getpass.getuser())
        host, port = str(params.get("host") or "localhost"), str(params.get("port") or 5432)
        self.target = Target(host, port, str(params.get("dbname") or user), user)
        self._conninfo = make_conninfo("", **params)
        self._clock = clock
        self._max_connections, self._timeout_s = max_connections, timeout_s
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._woken = asyncio.Event()

    # -- connections and schema ---------------------------------------------------------------

    async def _open(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Row]]:
        if self._closed:
            raise StoreError("the store is closed")
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    await self._migrate()
                    pool = AsyncConnectionPool(
                        self._conninfo,
                        min_size=1,
                        max_size=self._max_connections,
                        open=False,
                        timeout=self._timeout_s,
                        kwargs={"autocommit": True},
                        check=AsyncConnectionPool.check_connection,  # survives server restarts
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def _cursor(self, *, write: bool, run_id: str | None = None) -> AsyncIterator[Cursor]:
        """A pooled connection's cursor; ``write``: inside one transaction."""
        pool = await self._open()
        try:
            async with (
                pool.connection() as conn,
                conn.cursor() as cur,
                conn.transaction() if write else contextlib.nullcontext(),
            ):
                yield cur
        except psycopg.Error as exc:
            raise translate(exc, self.target, run_id=run_id) from exc

    async def _now(self, cur: Cursor) -> float:
        if self._clock is not None:
            return self._clock()
        await cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
        return float((await _one(cur))[0])

    async def _announce(self, cur: Cursor, run_id: str) -> None:
        await _notify(cur, run_id)

    async def _migrate(self) -> None:
        migrations = _migrations()
        latest = migrations[-1][0]
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise translate(exc, self.target) from exc
        try:
            async with conn.transaction(), conn.cursor() as cur:
                if self.read_only:
                    await _opening.check_postgres_read(cur, str(self.target), latest)
                    return
                await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await cur.execute(
                    "CREATE TABLE IF NOT EXISTS charter_migrations"
                    " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                )
                await cur.execute("SELECT max(version) FROM charter_migrations")
                current = int((await _one(cur))[0] or 0)
                if current > latest:
                    raise SchemaTooNewError(
                        f"database {self.target} has schema version {current};"
                        f" this Charter knows up to {latest}",
                        hint="upgrade Charter; it will not open a database newer than itself",
                    )
                for version, sql in migrations:
                    if version > current:
                        await cur.execute(sql)
                        await cur.execute(
                            "INSERT INTO charter_migrations VALUES (%s, %s)",
                            (version, await self._now(cur)),
                        )
                        if version == _AUDIT_SCHEMA:
                            await cur.execute("SELECT run_id FROM runs")
                            entry = _audit.genesis([r[0] for r in await cur.fetchall()])
                            now = await self._now(cur)
                            await _audit.postgres_append(cur, [entry], now, self.audit_key)
                await cur.execute("SELECT code, type FROM event_types")
                _event_log.check_types(await cur.fetchall())
                await cur.executemany(
                    "INSERT INTO event_types (code, type) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    _event_log.type_rows(),
                )
        except psycopg.Error as exc:
            raise translate(exc, self.target) from exc
        finally:
            await conn.close()

    async def schema_version(self) -> int:
        [(version,)] = await self._fetch("SELECT max(version) FROM charter_migrations")
        return int(version or 0)

    def latest_schema_version(self) -> int:
        return _migrations()[-1][0]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()

    async def _fetch(self, query: str, args: Args = None, *, now: bool = False) -> list[Row]:
        """One statement (atomic by itself); ``now``: ``%(now)s`` is the store's time."""
        async with self._cursor(write=False) as cur:
            if now:
                args = {**(args if isinstance(args, dict) else {}), "now": await self._now(cur)}
            await cur.execute(query, args)
            return await cur.fetchall() if cur.description else []

    # -- agents and runs ----------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> None:
        r, last = run, run.events[-1]
        values: list[Any] = [r.run_id, r.agent_name, r.agent_version, r.agent_hash, r.tenant]
        values += [r.principal, "queued", None, r.created_at, None, None, 0, last.seq, last.hash]
        values += [r.state, r.created_at, r.created_at]
        async with self._cursor(write=True, run_id=run.run_id) as cur:
            new_agent = await _insert_run(cur, values, run.agent_spec)
            await _insert_events(cur, run.events)
            if (key := _run_keys.key_values(run)) is not None:
                await cur.execute(_run_keys.INSERT.format(p="%s"), key)
            await _notify(cur, run.run_id)
            entries = [_audit.agent_seen(run.agent_hash, run.agent_spec)] if new_agent else []
            entries.append(
                _audit.created(run.run_id, run.tenant, run.principal, run.agent_hash, last)
            )
            await _audit.postgres_append(cur, entries, await self._now(cur), self.audit_key)

    async def run_for_key(self, tenant: str, key: str) -> tuple[str, str] | None:
        rows = await self._fetch(_run_keys.SELECT.format(p="%s"), (tenant, key))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    async def get_agent_spec(self, agent_hash: str) -> str:
        query = "SELECT spec FROM agents WHERE agent_hash = %s"
        for (spec,) in await self._fetch(query, (agent_hash,)):
            return str(spec)
        raise NotFoundError(f"no agent with hash {agent_hash}")

    async def get_run(self, run_id: str) -> RunRecord:
        query = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = %s"
        for row in await self._fetch(query, (run_id,)):
            return _record(row)
        raise NotFoundError(
            f"no run {run_id!r} in {self.url}", hint="'charter runs list' shows the runs"
        )

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
            "%s", status=status, tenant=tenant, agent=agent, since=since, before=before,
            principal=principal, model=model,
        )  # fmt: skip
        query = f"SELECT {_RUN_COLUMNS} FROM runs{where}{_run_filter.ORDER} LIMIT %s"
        return [_record(r) for r in await self._fetch(query, [*args, limit])]

    async def run_heads(
        self, run_ids: Sequence[str], *, created_since: float | None = None
    ) -> list[RunHead]:
        ids = list(dict.fromkeys(run_ids))
        query, args = _run_filter.heads("%s", len(ids), created_since)
        if not query:
            return []
        return [RunHead(*r) for r in await self._fetch(query, [*ids, *args])]

    async def run_counts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT status, count(*) FROM runs GROUP BY status")
        return {str(status): int(n) for status, n in rows}

    async def run_ids(self) -> list[str]:
        return [str(r[0]) for r in await self._fetch("SELECT run_id FROM runs ORDER BY created_at")]

    # -- events -------------------------------------------------------------------------------

    async def load_events(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        # One row before the range, for the first event's prev_hash.
        rows = await self._fetch(_event_log.select_sql("%s"), (run_id, after_seq))
        prev = GENESIS_HASH
        events = []
        for seq, type_, version, at, payload, hash_ in map(_event_log.shown, rows):
            if seq > after_seq:
                body = parse_body(payload, type_)
                events.append(Event(run_id, seq, at, body, payload, prev, hash_, version))
            prev = hash_
        return events

    async def event_rows(self, run_id: str) -> list[EventRow]:
        rows = await self._fetch(_event_log.select_sql("%s"), (run_id, 0))
        return [_event_log.shown(r) for r in rows]

    async def commit(self, commit: Commit) -> CancelRequest | None:
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            ready_at = await _apply_commit(cur, commit, now)
            if commit.release and ready_at is not None and ready_at <= now:
                await _notify(cur, commit.run_id)
            pending = await pending_postgres(cur, commit)
            heads = _audit.head(commit.run_id, commit.status, commit.events)
            await _audit.postgres_append(cur, heads, now, self.audit_key)
            return pending

    # -- inbox --------------------------------------------------------------------------------

    async def send(self, run_id: str, text: str) -> int:
        async with self._cursor(write=True) as cur:
            # The row lock orders this send with a commit that parks the run at the same time.
            await cur.execute("SELECT status FROM runs WHERE run_id = %s FOR UPDATE", (run_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFoundError(f"no run {run_id!r} in {self.url}")
            if row[0] in FINAL_STATUSES:
                raise RunStateError(
                    f"run {run_id} has finished ({row[0]}); it takes no more messages",
                    hint="start a new run instead",
                )
            now = await self._now(cur)
            await cur.execute(
                "INSERT INTO inbox (run_id, text, sent_at) VALUES (%s, %s, %s) RETURNING inbox_id",
                (run_id, text, now),
            )
            inbox_id = int((await _one(cur))[0])
            await cur.execute(
                "UPDATE runs SET ready_at = %s WHERE run_id = %s AND status = 'waiting'"
                " AND waiting_for = 'message'",
                (now, run_id),
            )
            if cur.rowcount == 1:
                await _notify(cur, run_id)
            return inbox_id

    async def pending_messages(self, run_id: str) -> list[InboxMessage]:
        rows = await self._fetch(
            "SELECT inbox_id, text, sent_at FROM inbox"
            " WHERE run_id = %s AND consumed_at IS NULL ORDER BY inbox_id",
            (run_id,),
        )
        return [InboxMessage(*row) for row in rows]

    # -- leases -------------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, *, lease_s: float, limit: int, run_id: str | None = None
    ) -> list[Claim]:
        args = {"run_id": run_id, "limit": limit, "worker": worker_id, "lease_s": lease_s}
        return [Claim(r, int(e), s, w) for r, e, s, w in await self._fetch(_CLAIM, args, now=True)]

    async def renew(self, worker_id: str, leases: dict[str, int], *, lease_s: float) -> set[str]:
        ids, epochs = list(leases), list(leases.values())
        held = await self._fetch(
            "UPDATE runs r SET lease_expires_at = %(now)s + %(lease_s)s"
            " FROM unnest(%(ids)s::text[], %(epochs)s::bigint[]) AS l (run_id, epoch)"
            " WHERE r.run_id = l.run_id AND r.lease_owner = %(worker)s AND r.lease_epoch = l.epoch"
            " RETURNING r.run_id",
            {"ids": ids, "epochs": epochs, "worker": worker_id, "lease_s": lease_s},
            now=True,
        )
        return set(leases) - {run_id for (run_id,) in held}

    async def release(self, worker_id: str, run_id: str, epoch: int) -> None:
        async with self._cursor(write=True) as cur:
            await cur.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE run_id = %s AND lease_owner = %s AND lease_epoch = %s RETURNING ready_at",
                (run_id, worker_id, epoch),
            )
            row = await cur.fetchone()
            if row is not None and row[0] is not None and row[0] <= await self._now(cur):
                await _notify(cur, run_id)

    async def work_outlook(self) -> tuple[int, int]:
        """(runs claimable now, runs ready but leased): zero and zero means idle."""
        [(claimable, leased)] = await self._fetch(
            "SELECT"
            " count(*) FILTER (WHERE lease_expires_at IS NULL OR lease_expires_at < %(now)s),"
            " count(*) FILTER (WHERE lease_expires_at >= %(now)s)"
            " FROM runs WHERE ready_at <= %(now)s",
            now=True,
        )
        return int(claimable), int(leased)

    async def next_ready_at(self) -> float | None:
        query = "SELECT min(ready_at) FROM runs WHERE ready_at IS NOT NULL"
        [(found,)] = await self._fetch(query)
        return None if found is None else float(found)

    async def wait_for_work(self, timeout_s: float) -> None:
        """Return at the first wake-up (from any process), or after ``timeout_s``; never raises.

        One background task per store holds the LISTEN connection and reconnects when it
        breaks, so waiters can be cancelled freely and several may wait at once. A wake-up
        that arrives while nobody waits is kept for the next waiter.
        """
        if self._closed:
            await asyncio.sleep(timeout_s)
            return
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="charter-pg-listen")
        try:
            async with asyncio.timeout(timeout_s):
                await self._listening.wait()
                await self._woken.wait()
        except TimeoutError:
            return
        self._woken.clear()

    async def _listen(self) -> None:
        """Hold ``LISTEN charter_work`` for the store's life; reconnect, backing off, if lost."""
        delay, first = _RELISTEN_S, True
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except psycopg.Error as exc:
                log.warning("cannot listen for work: %s", translate(exc, self.target))
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
                continue
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                if not first:
                    self._woken.set()  # wake-ups may have been missed while reconnecting
                delay, first = _RELISTEN_S, False
                self._listening.set()
                async for _ in conn.notifies():
                    self._woken.set()
            except psycopg.Error as exc:
                log.warning("lost the wake-up connection: %s", translate(exc, self.target))
            finally:
                self._listening.clear()
                await conn.close()
            await asyncio.sleep(delay)

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
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            if on:
                await cur.execute(
                    "INSERT INTO killswitch (tenant, agent, since, reason, action)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, agent)"
                    " DO UPDATE SET reason = excluded.reason, action = excluded.action",
                    (tenant, agent, now, reason, action),
                )
            else:
                await cur.execute(
                    "DELETE FROM killswitch WHERE tenant = %s AND agent = %s", (tenant, agent)
                )
                await cur.execute(
                    "UPDATE runs SET ready_at = %s WHERE status = 'waiting'"
                    " AND waiting_for = 'kill_switch' RETURNING run_id",
                    (now,),
                )
                for (run_id,) in await cur.fetchall():
                    await _notify(cur, run_id)
            await _audit.postgres_append(cur, [entry], now, self.audit_key)

    async def kill_switches(self) -> list[KillSwitch]:
        rows = await self._fetch(
            "SELECT tenant, agent, since, reason, action FROM killswitch ORDER BY since"
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
        async with self._cursor(write=False) as cur:
            return await _approvals.select(
                cur, tenant=tenant, status=status, run_id=run_id, limit=limit
            )

    async def get_approval(self, approval_id: str) -> ApprovalRecord:
        async with self._cursor(write=False) as cur:
            return await _approvals.get(cur, approval_id, self.url)

    async def decide_approval(
        self,
        approval_id: str,
        *,
        decision: Literal["granted", "denied", "expired"],
        by: str | None,
        note: str | None,
    ) -> tuple[ApprovalRecord, bool]:
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            record, won, woke, changed = await _approvals.decide(
                cur, approval_id, decision=decision, by=by, note=note, now=now, url=self.url
            )
            if woke:
                await _notify(cur, record.run_id)
            if changed:
                await _audit.postgres_append(cur, [_audit.decided(record)], now, self.audit_key)
            return record, won

    async def set_role(
        self, *, principal: str, role: str, tenant: str, on: bool, actor: str | None = None
    ) -> None:
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            changed = await _approvals.set_role(
                cur, principal=principal, role=role, tenant=tenant, on=on, now=now
            )
            if changed:
                entry = _audit.role(on, actor, principal, role, tenant)
                await _audit.postgres_append(cur, [entry], now, self.audit_key)

    async def audit(self, entries: Sequence[_audit.AuditEntry]) -> None:
        async with self._cursor(write=True) as cur:
            await _audit.postgres_append(cur, entries, await self._now(cur), self.audit_key)

    async def audit_records(self, *, after_seq: int = 0) -> list[_audit.AuditRecord]:
        rows = await self._fetch(_audit.SELECT.format(p="%s"), (after_seq,))
        return [_audit.from_row(r) for r in rows]

    async def role_grants(self, *, principal: str | None = None) -> list[RoleGrant]:
        async with self._cursor(write=False) as cur:
            return await _approvals.role_grants(cur, principal)

    # -- copying ------------------------------------------------------------------------------

    async def export_run(self, run_id: str) -> RunExport:
        record = await self.get_run(run_id)
        spec = await self.get_agent_spec(record.agent_hash)
        rows = await self.event_rows(run_id)
        inbox = await self._fetch(
            "SELECT inbox_id, text, sent_at, consumed_at FROM inbox WHERE run_id = %s"
            " ORDER BY inbox_id",
            (run_id,),
        )
        approvals = await self.approvals(run_id=run_id, limit=1_000_000)
        inbox_rows = tuple((i, t, s, c) for i, t, s, c in inbox)
        [(state,)] = await self._fetch("SELECT state FROM runs WHERE run_id = %s", (run_id,))
        return RunExport(record, spec, tuple(rows), inbox_rows, tuple(approvals), state)

    async def import_run(self, export: RunExport) -> None:
        """Insert a run exactly as exported (hashes, leases and all); an existing id conflicts."""
        r = export.record
        values = [getattr(r, name.strip()) for name in _RUN_COLUMNS.split(",")]
        values[14] = export.state_text or json.dumps(r.state)
        async with self._cursor(write=True, run_id=r.run_id) as cur:
            await _insert_run(cur, values, export.agent_spec)
            await cur.executemany(
                _INSERT_EVENT, [(r.run_id, *_event_log.stored(*row)) for row in export.events]
            )
            # Inbox ids are kept (message_received events name them); the identity moves past.
            await cur.executemany(
                "INSERT INTO inbox (inbox_id, run_id, text, sent_at, consumed_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(i, r.run_id, text, sent, consumed) for i, text, sent, consumed in export.inbox],
            )
            if export.inbox:
                await cur.execute(
                    "SELECT setval(pg_get_serial_sequence('inbox', 'inbox_id'),"
                    " greatest((SELECT max(inbox_id) FROM inbox), 1))"
                )
            await _approvals.insert(cur, export.approvals)

    # -- statistics (see _stats.py) -----------------------------------------------------------

    async def stats(
        self, *, since: float | None = None, agent: str | None = None, tenant: str | None = None
    ) -> StatsReport:
        query = _stats.StatsQuery("postgres", since=since, agent=agent, tenant=tenant)
        async with self._cursor(write=True) as cur:  # one transaction: one snapshot
            return await _stats.postgres_stats(cur, query)

    # -- model usage (see _cache.py) ------------------------------------------------------

    async def runs_with_model(
        self, model: str, *, status: RunStatus | None = None, limit: int = 100
    ) -> list[RunRecord]:
        query = _counters.pg(_cache.runs_with_model(_RUN_COLUMNS, "postgres"))
        args = (model, model, status, status, limit)
        return [_record(r) for r in await self._fetch(query, args)]


async def _one(cur: Cursor) -> Row:
    row = await cur.fetchone()
    assert row is not None, "the query returns one row"
    return row


async def _insert_run(cur: Cursor, values: list[Any], agent_spec: str) -> bool:
    """The run's row (``_RUN_COLUMNS``), and its agent's spec unless stored already (then
    True: the spec is new)."""
    await cur.execute(
        "INSERT INTO agents (agent_hash, spec) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (values[3], agent_spec),
    )
    new_agent = cur.rowcount == 1
    await cur.execute(
        f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join(['%s'] * 17)})", values
    )
    return new_agent


async def _notify(cur: Cursor, run_id: str) -> None:
    """Announce a run that is runnable now; delivered when the transaction commits."""
    await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, run_id))


async def _insert_events(cur: Cursor, events: Iterable[Event]) -> None:
    await cur.executemany(_INSERT_EVENT, _event_log.stored_events(events))


async def _apply_commit(cur: Cursor, c: Commit, now: float) -> float | None:
    """Append a step, fenced by sequence number and lease; return the run's new ready_at."""
    head = (c.events[-1].seq, c.events[-1].hash) if c.events else (c.expected_seq, None)
    changes = (*head, c.state, c.status, c.ready_at, c.waiting_for, now, c.release, c.release)
    fence = (c.run_id, c.expected_seq, c.epoch, c.worker_id)
    await cur.execute(
        "UPDATE runs SET last_seq = %s, last_hash = coalesce(%s, last_hash), state = %s,"
        " status = %s, ready_at = %s, waiting_for = %s, updated_at = %s,"
        " lease_owner = CASE WHEN %s THEN NULL ELSE lease_owner END,"
        " lease_expires_at = CASE WHEN %s THEN NULL ELSE lease_expires_at END"
        " WHERE run_id = %s AND last_seq = %s AND lease_epoch = %s AND lease_owner = %s",
        (*changes, *fence),
    )
    if cur.rowcount != 1:
        raise ConflictError(
            f"run {c.run_id} moved on (expected seq {c.expected_seq}, lease epoch {c.epoch}):"
            " another worker holds it now"
        )
    await _insert_events(cur, c.events)
    if notifications := outbox_rows(c.events, now):
        await cur.executemany(_OUTBOX, notifications)
    if c.consumed_inbox:
        await cur.execute(
            "UPDATE inbox SET consumed_at = %s WHERE inbox_id = ANY(%s)",
            (now, list(c.consumed_inbox)),
        )
    await _approvals.insert(cur, c.approvals)
    if await honour_postgres(cur, c, now):
        return now
    awaiting = c.waiting_for == "approval" and c.awaiting
    if awaiting and await _approvals.wake_if_decided(cur, c.run_id, c.awaiting, now):
        return now
    if c.waiting_for == "message":
        # A message that arrived while the run was working makes it runnable at once.
        await cur.execute(
            "UPDATE runs SET ready_at = %s WHERE run_id = %s AND EXISTS"
            " (SELECT 1 FROM inbox WHERE run_id = %s AND consumed_at IS NULL)",
            (now, c.run_id, c.run_id),
        )
        if cur.rowcount == 1:
            return now
    return c.ready_at


def _record(row: Row) -> RunRecord:
    values = list(row)
    values[14] = json.loads(values[14])
    return RunRecord(*values)
