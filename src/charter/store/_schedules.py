"""Cron schedules (table ``schedules``, schema 14) and the signatures of accepted webhook
deliveries (``hook_signatures``), as parts of both stores.

A schedule names its agent by the hash of a spec in ``agents`` (stored, with its
``agent_seen`` audit record, when the schedule is added), so any worker or server resolves it
as it resolves a run's agent. ``next_tick_at`` is the first tick not yet started; a ticker
moves it only by compare-and-set (:meth:`advance_schedule`), after starting the due ticks'
runs with keys derived from the schedule and the tick (``charter.schedules``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from charter.errors import ConflictError, NotFoundError
from charter.store import _audit

T = TypeVar("T")
Missed = Literal["skip", "catch-up"]

COLUMNS = (
    "name, schedule_id, cron, agent_hash, agent_name, input, tenant, principal, roles, missed,"
    " next_tick_at, paused_at, last_tick_at, last_run_id, last_error, created_at, created_by"
)
_INSERT = f"INSERT INTO schedules ({COLUMNS}) VALUES ({', '.join(['{p}'] * 17)})"
_SELECT = f"SELECT {COLUMNS} FROM schedules"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as stored: what to start, on which cron expression, and where it stands."""

    name: str
    schedule_id: str
    cron: str
    agent_hash: str
    agent_name: str
    input: str
    tenant: str
    principal: str
    roles: tuple[str, ...]
    missed: Missed
    next_tick_at: float
    paused_at: float | None
    last_tick_at: float | None
    last_run_id: str | None
    last_error: str | None
    created_at: float
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["roles"] = list(self.roles)
        out["state"] = "paused" if self.paused_at is not None else "active"
        return out

    def row(self) -> tuple[Any, ...]:
        values = [getattr(self, name) for name in self.__slots__]
        values[8] = json.dumps(list(self.roles))
        return tuple(values)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Schedule:
        values = list(row)
        values[8] = tuple(json.loads(values[8]))
        for i in (10, 11, 12, 15):
            values[i] = None if values[i] is None else float(values[i])
        return cls(*values)


@dataclass(frozen=True, slots=True)
class Advance:
    """A ticker's compare-and-set: move ``next_tick_at`` from ``expected`` to ``next_tick_at``
    and note the last tick it started (or why it started none)."""

    name: str
    schedule_id: str
    expected: float
    next_tick_at: float
    last_tick_at: float | None
    last_run_id: str | None
    last_error: str | None


class ScheduleStorage(Protocol):
    """Schedules and webhook signatures: what ``charter.schedules`` and the hooks need."""

    async def insert_schedule(self, schedule: Schedule, *, agent_spec: str) -> None:
        """Store a new schedule (ConflictError if its name is taken) and its agent's spec
        unless stored already, audited (``schedule_added``) with ``created_by``."""
        ...

    async def schedules(self, *, tenant: str | None = None) -> list[Schedule]: ...
    async def get_schedule(self, name: str, *, tenant: str | None = None) -> Schedule:
        """NotFoundError for an unknown name (or one of another tenant, when given)."""
        ...

    async def remove_schedule(self, name: str, *, tenant: str | None, actor: str) -> Schedule: ...
    async def pause_schedule(
        self,
        name: str,
        *,
        tenant: str | None,
        paused_at: float | None,
        next_tick_at: float,
        actor: str,
    ) -> Schedule:
        """Pause (``paused_at``) or resume (None, from ``next_tick_at``), audited."""
        ...  # fmt: skip

    async def due_schedules(self, now: float) -> list[Schedule]:
        """Active schedules whose ``next_tick_at`` is at or before ``now``."""
        ...

    async def advance_schedule(self, advance: Advance) -> bool:
        """The compare-and-set; False when another ticker moved it first (or it is gone)."""
        ...

    async def remember_signature(
        self, hook: str, signature: str, delivery_id: str, *, prune_before: float
    ) -> str:
        """Note an accepted delivery's signature; the delivery id it was first seen with.
        Drops signatures seen before ``prune_before``."""
        ...


def _missing(name: str) -> NotFoundError:
    return NotFoundError(
        f"no schedule {name!r}",
        hint="list them with: charter schedules list (or GET /v1/schedules)",
    )


def _taken(name: str) -> ConflictError:
    return ConflictError(
        f"a schedule named {name!r} exists already",
        hint=f"pick another name, or remove it first: charter schedules remove {name}",
    )


def _where(tenant: str | None, p: str) -> tuple[str, tuple[Any, ...]]:
    return ("", ()) if tenant is None else (f" AND tenant = {p}", (tenant,))


def added(s: Schedule) -> _audit.AuditEntry:
    detail = {
        "name": s.name, "schedule_id": s.schedule_id, "cron": s.cron, "agent": s.agent_name,
        "agent_hash": s.agent_hash, "tenant": s.tenant, "principal": s.principal,
        "missed": s.missed, "next_tick_at": s.next_tick_at,
    }  # fmt: skip
    return _audit.AuditEntry("schedule_added", None, s.created_by, detail)


def changed(kind: str, s: Schedule, actor: str) -> _audit.AuditEntry:
    detail = {"name": s.name, "schedule_id": s.schedule_id, "tenant": s.tenant}
    return _audit.AuditEntry(kind, None, actor, detail)


_PRUNE = "DELETE FROM hook_signatures WHERE seen_at < {p}"
_SEEN = (
    "INSERT INTO hook_signatures (hook, signature, delivery_id, seen_at)"
    " VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (hook, signature) DO NOTHING"
)
_FIRST = "SELECT delivery_id FROM hook_signatures WHERE hook = {p} AND signature = {p}"
_ADVANCE = (
    "UPDATE schedules SET next_tick_at = {p}, last_tick_at = COALESCE({p}, last_tick_at),"
    " last_run_id = COALESCE({p}, last_run_id), last_error = {p}"
    " WHERE name = {p} AND schedule_id = {p} AND next_tick_at = {p}"
)
_PAUSE = "UPDATE schedules SET paused_at = {p}, next_tick_at = {p} WHERE name = {p}"


def _advance_args(a: Advance) -> tuple[Any, ...]:
    return (
        a.next_tick_at, a.last_tick_at, a.last_run_id, a.last_error,
        a.name, a.schedule_id, a.expected,
    )  # fmt: skip


class SQLiteSchedules:
    if TYPE_CHECKING:  # provided by SQLiteStore
        audit_key: _audit.AuditKey | None

        async def _write(self, op: Callable[[sqlite3.Connection, float], T]) -> T: ...
        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    async def insert_schedule(self, schedule: Schedule, *, agent_spec: str) -> None:
        def op(conn: sqlite3.Connection, now: float) -> None:
            new_agent = conn.execute(
                "INSERT OR IGNORE INTO agents (agent_hash, spec) VALUES (?, ?)",
                (schedule.agent_hash, agent_spec),
            ).rowcount
            if conn.execute(f"{_SELECT} WHERE name = ?", (schedule.name,)).fetchone():
                raise _taken(schedule.name)
            conn.execute(_INSERT.format(p="?"), schedule.row())
            entries = [_audit.agent_seen(schedule.agent_hash, agent_spec)] if new_agent else []
            _audit.sqlite_append(conn, [*entries, added(schedule)], now, self.audit_key)

        await self._write(op)

    async def schedules(self, *, tenant: str | None = None) -> list[Schedule]:
        where, args = _where(tenant, "?")
        rows = await self._read(
            lambda c: c.execute(f"{_SELECT} WHERE 1 = 1{where} ORDER BY name", args).fetchall()
        )
        return [Schedule.from_row(r) for r in rows]

    async def get_schedule(self, name: str, *, tenant: str | None = None) -> Schedule:
        where, args = _where(tenant, "?")
        row = await self._read(
            lambda c: c.execute(f"{_SELECT} WHERE name = ?{where}", (name, *args)).fetchone()
        )
        if row is None:
            raise _missing(name)
        return Schedule.from_row(row)

    async def remove_schedule(self, name: str, *, tenant: str | None, actor: str) -> Schedule:
        def op(conn: sqlite3.Connection, now: float) -> Schedule:
            where, args = _where(tenant, "?")
            row = conn.execute(f"{_SELECT} WHERE name = ?{where}", (name, *args)).fetchone()
            if row is None:
                raise _missing(name)
            found = Schedule.from_row(row)
            conn.execute("DELETE FROM schedules WHERE name = ?", (name,))
            entry = changed("schedule_removed", found, actor)
            _audit.sqlite_append(conn, [entry], now, self.audit_key)
            return found

        return await self._write(op)

    async def pause_schedule(
        self, name: str, *, tenant: str | None, paused_at: float | None, next_tick_at: float,
        actor: str,
    ) -> Schedule:  # fmt: skip
        def op(conn: sqlite3.Connection, now: float) -> Schedule:
            where, args = _where(tenant, "?")
            if conn.execute(f"{_SELECT} WHERE name = ?{where}", (name, *args)).fetchone() is None:
                raise _missing(name)
            conn.execute(_PAUSE.format(p="?"), (paused_at, next_tick_at, name))
            found = Schedule.from_row(conn.execute(f"{_SELECT} WHERE name = ?", (name,)).fetchone())
            kind = "schedule_resumed" if paused_at is None else "schedule_paused"
            _audit.sqlite_append(conn, [changed(kind, found, actor)], now, self.audit_key)
            return found

        return await self._write(op)

    async def due_schedules(self, now: float) -> list[Schedule]:
        rows = await self._read(
            lambda c: c.execute(
                f"{_SELECT} WHERE paused_at IS NULL AND next_tick_at <= ? ORDER BY next_tick_at",
                (now,),
            ).fetchall()
        )
        return [Schedule.from_row(r) for r in rows]

    async def advance_schedule(self, advance: Advance) -> bool:
        return bool(
            await self._write(
                lambda conn, now: (
                    conn.execute(_ADVANCE.format(p="?"), _advance_args(advance)).rowcount
                )
            )
        )

    async def remember_signature(
        self, hook: str, signature: str, delivery_id: str, *, prune_before: float
    ) -> str:
        def op(conn: sqlite3.Connection, now: float) -> str:
            conn.execute(_PRUNE.format(p="?"), (prune_before,))
            conn.execute(_SEEN.format(p="?"), (hook, signature, delivery_id, now))
            return str(conn.execute(_FIRST.format(p="?"), (hook, signature)).fetchone()[0])

        return await self._write(op)


class PostgresSchedules:
    if TYPE_CHECKING:  # provided by PostgresStore
        audit_key: _audit.AuditKey | None

        async def _fetch(self, query: str, args: Any = None, *, now: bool = False) -> list[Any]: ...
        def _cursor(
            self, *, write: bool, run_id: str | None = None
        ) -> AbstractAsyncContextManager[Any]: ...
        async def _now(self, cur: Any) -> float: ...

    async def insert_schedule(self, schedule: Schedule, *, agent_spec: str) -> None:
        async with self._cursor(write=True) as cur:
            await cur.execute(
                "INSERT INTO agents (agent_hash, spec) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (schedule.agent_hash, agent_spec),
            )
            new_agent = cur.rowcount == 1
            await cur.execute(
                _INSERT.format(p="%s") + " ON CONFLICT (name) DO NOTHING", schedule.row()
            )
            if cur.rowcount != 1:
                raise _taken(schedule.name)
            entries = [_audit.agent_seen(schedule.agent_hash, agent_spec)] if new_agent else []
            now = await self._now(cur)
            await _audit.postgres_append(cur, [*entries, added(schedule)], now, self.audit_key)

    async def schedules(self, *, tenant: str | None = None) -> list[Schedule]:
        where, args = _where(tenant, "%s")
        rows = await self._fetch(f"{_SELECT} WHERE 1 = 1{where} ORDER BY name", args)
        return [Schedule.from_row(r) for r in rows]

    async def get_schedule(self, name: str, *, tenant: str | None = None) -> Schedule:
        where, args = _where(tenant, "%s")
        rows = await self._fetch(f"{_SELECT} WHERE name = %s{where}", (name, *args))
        if not rows:
            raise _missing(name)
        return Schedule.from_row(rows[0])

    async def _locked(self, cur: Any, name: str, tenant: str | None) -> Schedule:
        where, args = _where(tenant, "%s")
        await cur.execute(f"{_SELECT} WHERE name = %s{where} FOR UPDATE", (name, *args))
        row = await cur.fetchone()
        if row is None:
            raise _missing(name)
        return Schedule.from_row(row)

    async def remove_schedule(self, name: str, *, tenant: str | None, actor: str) -> Schedule:
        async with self._cursor(write=True) as cur:
            found = await self._locked(cur, name, tenant)
            await cur.execute("DELETE FROM schedules WHERE name = %s", (name,))
            entry = changed("schedule_removed", found, actor)
            await _audit.postgres_append(cur, [entry], await self._now(cur), self.audit_key)
            return found

    async def pause_schedule(
        self, name: str, *, tenant: str | None, paused_at: float | None, next_tick_at: float,
        actor: str,
    ) -> Schedule:  # fmt: skip
        async with self._cursor(write=True) as cur:
            await self._locked(cur, name, tenant)
            await cur.execute(_PAUSE.format(p="%s"), (paused_at, next_tick_at, name))
            await cur.execute(f"{_SELECT} WHERE name = %s", (name,))
            found = Schedule.from_row(await cur.fetchone())
            kind = "schedule_resumed" if paused_at is None else "schedule_paused"
            entry = changed(kind, found, actor)
            await _audit.postgres_append(cur, [entry], await self._now(cur), self.audit_key)
            return found

    async def due_schedules(self, now: float) -> list[Schedule]:
        rows = await self._fetch(
            f"{_SELECT} WHERE paused_at IS NULL AND next_tick_at <= %s ORDER BY next_tick_at",
            (now,),
        )
        return [Schedule.from_row(r) for r in rows]

    async def advance_schedule(self, advance: Advance) -> bool:
        async with self._cursor(write=True) as cur:
            await cur.execute(_ADVANCE.format(p="%s"), _advance_args(advance))
            return bool(cur.rowcount == 1)

    async def remember_signature(
        self, hook: str, signature: str, delivery_id: str, *, prune_before: float
    ) -> str:
        async with self._cursor(write=True) as cur:
            await cur.execute(_PRUNE.format(p="%s"), (prune_before,))
            now = await self._now(cur)
            await cur.execute(_SEEN.format(p="%s"), (hook, signature, delivery_id, now))
            await cur.execute(_FIRST.format(p="%s"), (hook, signature))
            row = await cur.fetchone()
            return str(row[0])
