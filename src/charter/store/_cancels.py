"""Requests to cancel a run (table ``cancel_requests``, schema 12), as parts of both stores.

A request is written with its audit record and a wake-up of the run in one transaction; the
run reads it at its next step boundary (``cancel_request``) and the commit that finishes the
run ``cancelled`` consumes it and withdraws the run's pending approvals (``honour_*``), in
that commit's transaction: a crash leaves either the request pending or the run finished,
never a request honoured twice or lost. One request per run (its primary key): a second
finds the first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from charter.errors import NotFoundError, RunStateError
from charter.events import FINAL_STATUSES
from charter.store import _audit
from charter.store._base import CANCEL_COLUMNS, CancelRequest, Commit

T = TypeVar("T")

WITHDRAWN = "withdrawn"
"""The status of an approval request whose run was cancelled: it can no longer be decided."""
_WITHDRAW_NOTE = "the run was cancelled"
_INSERT = (
    f"INSERT INTO cancel_requests ({CANCEL_COLUMNS})"
    " VALUES ({p}, {p}, {p}, {p}, {p}, NULL)"
)
_PENDING = f"SELECT {CANCEL_COLUMNS} FROM cancel_requests WHERE run_id = {{p}}"
_WAKE = (
    "UPDATE runs SET ready_at = {p} WHERE run_id = {p}"
    " AND (ready_at IS NULL OR ready_at > {p}) AND lease_owner IS NULL"
)


def _finished(run_id: str, status: str, *, unused: CancelRequest | None = None) -> RunStateError:
    late = ""
    if unused is not None:
        late = f" before {unused.requested_by}'s request {unused.request_id} was honoured"
    return RunStateError(
        f"run {run_id} has finished ({status}){late}; there is nothing to cancel",
        hint="only a queued, running or waiting run can be cancelled",
    )


def _answer(run_id: str, status: str, earlier: Sequence[Any] | None) -> CancelRequest | None:
    """Before a new request: the earlier one to answer with (marked ``already_requested``),
    None to write a new one; RunStateError when the run has finished — also when it finished
    another way while an earlier request waited for its next step boundary."""
    request = None if earlier is None else _request(earlier, already=True)
    if status in FINAL_STATUSES:
        if request is not None and request.consumed_at is not None:
            return request  # the run was cancelled by that request: the same answer again
        raise _finished(run_id, status, unused=request)
    return request


def _request(row: Sequence[Any], *, already: bool = False) -> CancelRequest:
    request_id, run_id, reason, requested_by, requested_at, consumed_at = row
    return CancelRequest(
        request_id,
        run_id,
        reason,
        requested_by,
        float(requested_at),
        None if consumed_at is None else float(consumed_at),
        already_requested=already,
    )


class SQLiteCancels:
    if TYPE_CHECKING:  # provided by SQLiteStore
        url: str
        audit_key: _audit.AuditKey | None

        async def _write(self, op: Callable[[sqlite3.Connection, float], T]) -> T: ...
        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    async def request_cancel(
        self, run_id: str, *, request_id: str, reason: str, actor: str
    ) -> CancelRequest:
        def op(conn: sqlite3.Connection, now: float) -> CancelRequest:
            row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no run {run_id!r} in {self.url}")
            earlier = conn.execute(_PENDING.format(p="?"), (run_id,)).fetchone()
            answer = _answer(run_id, row[0], earlier)
            if answer is not None:
                return answer
            conn.execute(_INSERT.format(p="?"), (request_id, run_id, reason, actor, now))
            conn.execute(_WAKE.format(p="?"), (now, run_id, now))
            entry = _audit.cancel_requested(run_id, actor, request_id, reason)
            _audit.sqlite_append(conn, [entry], now, self.audit_key)
            return CancelRequest(request_id, run_id, reason, actor, now)

        return await self._write(op)

    async def cancel_request(self, run_id: str) -> CancelRequest | None:
        row = await self._read(
            lambda c: c.execute(
                _PENDING.format(p="?") + " AND consumed_at IS NULL", (run_id,)
            ).fetchone()
        )
        return None if row is None else _request(row)


def pending_sqlite(conn: sqlite3.Connection, c: Commit) -> CancelRequest | None:
    """Inside a commit that leaves the run going: its pending request, if any."""
    if c.cancelled is not None or c.status in FINAL_STATUSES:
        return None
    row = conn.execute(_PENDING.format(p="?") + " AND consumed_at IS NULL", (c.run_id,)).fetchone()
    return None if row is None else _request(row)


def honour_sqlite(conn: sqlite3.Connection, c: Commit, now: float) -> None:
    """Inside a commit: consume the request it honours, withdraw the run's open approvals;
    a run that parks with a request pending (it came in after the run last looked) is made
    runnable again, so that it is honoured at once."""
    if c.cancelled is not None:
        conn.execute(
            "UPDATE cancel_requests SET consumed_at = ? WHERE request_id = ?", (now, c.cancelled)
        )
        conn.execute(
            "UPDATE approvals SET status = ?, decided_at = ?, note = ?"
            " WHERE run_id = ? AND status = 'pending'",
            (WITHDRAWN, now, _WITHDRAW_NOTE, c.run_id),
        )
    elif c.release and c.status == "waiting":
        conn.execute(
            "UPDATE runs SET ready_at = ? WHERE run_id = ? AND EXISTS (SELECT 1 FROM"
            " cancel_requests WHERE run_id = ? AND consumed_at IS NULL)",
            (now, c.run_id, c.run_id),
        )


class PostgresCancels:
    if TYPE_CHECKING:  # provided by PostgresStore
        url: str
        audit_key: _audit.AuditKey | None

        async def _fetch(self, query: str, args: Any = None, *, now: bool = False) -> list[Any]: ...
        def _cursor(
            self, *, write: bool, run_id: str | None = None
        ) -> AbstractAsyncContextManager[Any]: ...
        async def _now(self, cur: Any) -> float: ...
        async def _announce(self, cur: Any, run_id: str) -> None: ...

    async def request_cancel(
        self, run_id: str, *, request_id: str, reason: str, actor: str
    ) -> CancelRequest:
        async with self._cursor(write=True) as cur:
            # The row lock orders this request with a commit that parks or finishes the run.
            await cur.execute("SELECT status FROM runs WHERE run_id = %s FOR UPDATE", (run_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFoundError(f"no run {run_id!r} in {self.url}")
            await cur.execute(_PENDING.format(p="%s"), (run_id,))
            answer = _answer(run_id, row[0], await cur.fetchone())
            if answer is not None:
                return answer
            now = await self._now(cur)
            await cur.execute(_INSERT.format(p="%s"), (request_id, run_id, reason, actor, now))
            await cur.execute(_WAKE.format(p="%s"), (now, run_id, now))
            if cur.rowcount == 1:
                await self._announce(cur, run_id)
            entry = _audit.cancel_requested(run_id, actor, request_id, reason)
            await _audit.postgres_append(cur, [entry], now, self.audit_key)
            return CancelRequest(request_id, run_id, reason, actor, now)

    async def cancel_request(self, run_id: str) -> CancelRequest | None:
        rows = await self._fetch(_PENDING.format(p="%s") + " AND consumed_at IS NULL", (run_id,))
        return _request(rows[0]) if rows else None


async def pending_postgres(cur: Any, c: Commit) -> CancelRequest | None:
    """:func:`pending_sqlite` for PostgreSQL."""
    if c.cancelled is not None or c.status in FINAL_STATUSES:
        return None
    await cur.execute(_PENDING.format(p="%s") + " AND consumed_at IS NULL", (c.run_id,))
    row = await cur.fetchone()
    return None if row is None else _request(row)


async def honour_postgres(cur: Any, c: Commit, now: float) -> bool:
    """:func:`honour_sqlite` for PostgreSQL; True when it made the parking run runnable now."""
    if c.cancelled is not None:
        await cur.execute(
            "UPDATE cancel_requests SET consumed_at = %s WHERE request_id = %s",
            (now, c.cancelled),
        )
        await cur.execute(
            "UPDATE approvals SET status = %s, decided_at = %s, note = %s"
            " WHERE run_id = %s AND status = 'pending'",
            (WITHDRAWN, now, _WITHDRAW_NOTE, c.run_id),
        )
        return False
    if c.release and c.status == "waiting":
        await cur.execute(
            "UPDATE runs SET ready_at = %s WHERE run_id = %s AND EXISTS (SELECT 1 FROM"
            " cancel_requests WHERE run_id = %s AND consumed_at IS NULL)",
            (now, c.run_id, c.run_id),
        )
        return bool(cur.rowcount == 1)
    return False
