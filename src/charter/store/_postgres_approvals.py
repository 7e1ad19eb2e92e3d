"""PostgreSQL statements for approval requests and role grants (used by :class:`PostgresStore`).

A decision locks the run's row first, like ``send`` does, so it is ordered with a commit that
parks the run at the same moment: either the commit sees the decision and leaves the run
runnable, or the decision sees the parked run and wakes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import AsyncCursor

from charter.errors import NotFoundError
from charter.store._base import APPROVAL_COLUMNS, ApprovalRecord, RoleGrant

Cursor = AsyncCursor[tuple[Any, ...]]
_SELECT = f"SELECT {APPROVAL_COLUMNS} FROM approvals"
_PLACEHOLDERS = ", ".join(["%s"] * len(ApprovalRecord.__slots__))


async def insert(cur: Cursor, records: Iterable[ApprovalRecord]) -> None:
    rows = [r.row() for r in records]
    if rows:
        await cur.executemany(
            f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({_PLACEHOLDERS})", rows
        )


async def wake_if_decided(cur: Cursor, run_id: str, awaiting: tuple[str, ...], now: float) -> bool:
    """A run parking for approvals that were decided meanwhile is runnable at once."""
    await cur.execute(
        "UPDATE runs SET ready_at = %s WHERE run_id = %s AND EXISTS (SELECT 1 FROM approvals"
        " WHERE approval_id = ANY(%s) AND status <> 'pending')",
        (now, run_id, list(awaiting)),
    )
    return cur.rowcount == 1


async def select(
    cur: Cursor,
    *,
    tenant: str | None,
    status: str | None,
    run_id: str | None,
    limit: int,
) -> list[ApprovalRecord]:
    await cur.execute(
        f"{_SELECT} WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s)"
        " ORDER BY requested_at, approval_id LIMIT %(limit)s",
        {"tenant": tenant, "status": status, "run_id": run_id, "limit": limit},
    )
    return [ApprovalRecord.from_row(row) for row in await cur.fetchall()]


async def get(cur: Cursor, approval_id: str, url: str) -> ApprovalRecord:
    await cur.execute(f"{_SELECT} WHERE approval_id = %s", (approval_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError(
            f"no approval request {approval_id!r} in {url}",
            hint="list them with: charter approvals list",
        )
    return ApprovalRecord.from_row(row)


async def decide(
    cur: Cursor,
    approval_id: str,
    *,
    decision: str,
    by: str | None,
    note: str | None,
    now: float,
    url: str,
) -> tuple[ApprovalRecord, bool, bool, bool]:
    """(the record after the attempt, whether this call decided it, whether the run woke,
    whether the record changed: a late grant still turns a lapsed request to ``expired``)."""
    record = await get(cur, approval_id, url)
    await cur.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (record.run_id,))
    record = await get(cur, approval_id, url)  # as it stands now that the run is locked
    if record.status != "pending":
        return record, False, False, False
    expired = record.expires_at <= now
    if decision == "expired" and not expired:
        return record, False, False, False
    won = decision == "expired" or not expired
    status, by, note = (decision, by, note) if won else ("expired", None, None)
    await cur.execute(
        "UPDATE approvals SET status = %s, decided_by = %s, decided_at = %s, note = %s"
        " WHERE approval_id = %s AND status = 'pending'",
        (status, by, now, note, approval_id),
    )
    await cur.execute(
        "UPDATE runs SET ready_at = %s WHERE run_id = %s AND status = 'waiting'"
        " AND waiting_for = 'approval'",
        (now, record.run_id),
    )
    woke = cur.rowcount == 1
    return await get(cur, approval_id, url), won, woke, True


async def set_role(
    cur: Cursor, *, principal: str, role: str, tenant: str, on: bool, now: float
) -> bool:
    """Grant or remove; True when a row changed."""
    if on:
        await cur.execute(
            "INSERT INTO role_grants VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (principal, role, tenant, now),
        )
    else:
        await cur.execute(
            "DELETE FROM role_grants WHERE principal = %s AND role = %s AND tenant = %s",
            (principal, role, tenant),
        )
    return cur.rowcount > 0


async def role_grants(cur: Cursor, principal: str | None) -> list[RoleGrant]:
    await cur.execute(
        "SELECT principal, role, tenant, granted_at FROM role_grants"
        " WHERE %(p)s::text IS NULL OR principal = %(p)s ORDER BY principal, role, tenant",
        {"p": principal},
    )
    return [RoleGrant(*row) for row in await cur.fetchall()]
