"""SQLite statements for approval requests and role grants (used by :class:`SQLiteStore`).

Every function runs inside the store's single writer (or on its read connection), so each
decision is serialized with the commits that park runs; the ``status = 'pending'`` condition is
the compare-and-set.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from charter.errors import NotFoundError
from charter.store._base import APPROVAL_COLUMNS, ApprovalRecord, RoleGrant

_SELECT = f"SELECT {APPROVAL_COLUMNS} FROM approvals"
_PLACEHOLDERS = ", ".join("?" * len(ApprovalRecord.__slots__))


def insert(conn: sqlite3.Connection, records: Iterable[ApprovalRecord]) -> None:
    conn.executemany(
        f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({_PLACEHOLDERS})",
        [r.row() for r in records],
    )


def wake_if_decided(
    conn: sqlite3.Connection, run_id: str, awaiting: tuple[str, ...], now: float
) -> None:
    """A run parking for approvals that were decided meanwhile is runnable at once."""
    marks = ", ".join("?" * len(awaiting))
    conn.execute(
        "UPDATE runs SET ready_at = ? WHERE run_id = ? AND EXISTS (SELECT 1 FROM approvals"
        f" WHERE approval_id IN ({marks}) AND status <> 'pending')",
        (now, run_id, *awaiting),
    )


def select(
    conn: sqlite3.Connection,
    *,
    tenant: str | None,
    status: str | None,
    run_id: str | None,
    limit: int,
) -> list[ApprovalRecord]:
    rows = conn.execute(
        f"{_SELECT} WHERE (? IS NULL OR tenant = ?) AND (? IS NULL OR status = ?)"
        " AND (? IS NULL OR run_id = ?) ORDER BY requested_at, approval_id LIMIT ?",
        (tenant, tenant, status, status, run_id, run_id, limit),
    ).fetchall()
    return [ApprovalRecord.from_row(row) for row in rows]


def get(conn: sqlite3.Connection, approval_id: str, url: str) -> ApprovalRecord:
    row = conn.execute(f"{_SELECT} WHERE approval_id = ?", (approval_id,)).fetchone()
    if row is None:
        raise NotFoundError(
            f"no approval request {approval_id!r} in {url}",
            hint="list them with: charter approvals list",
        )
    return ApprovalRecord.from_row(row)


def decide(
    conn: sqlite3.Connection,
    approval_id: str,
    *,
    decision: str,
    by: str | None,
    note: str | None,
    now: float,
    url: str,
) -> tuple[ApprovalRecord, bool]:
    record = get(conn, approval_id, url)
    if record.status != "pending":
        return record, False
    expired = record.expires_at <= now
    if decision == "expired" and not expired:
        return record, False
    won = decision == "expired" or not expired
    status, by, note = (decision, by, note) if won else ("expired", None, None)
    conn.execute(
        "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, note = ?"
        " WHERE approval_id = ? AND status = 'pending'",
        (status, by, now, note, approval_id),
    )
    conn.execute(
        "UPDATE runs SET ready_at = ? WHERE run_id = ? AND status = 'waiting'"
        " AND waiting_for = 'approval'",
        (now, record.run_id),
    )
    return get(conn, approval_id, url), won


def set_role(
    conn: sqlite3.Connection, *, principal: str, role: str, tenant: str, on: bool, now: float
) -> bool:
    """Grant or remove; True when a row changed."""
    if on:
        cur = conn.execute(
            "INSERT INTO role_grants VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (principal, role, tenant, now),
        )
    else:
        cur = conn.execute(
            "DELETE FROM role_grants WHERE principal = ? AND role = ? AND tenant = ?",
            (principal, role, tenant),
        )
    return cur.rowcount > 0


def role_grants(conn: sqlite3.Connection, principal: str | None) -> list[RoleGrant]:
    rows = conn.execute(
        "SELECT principal, role, tenant, granted_at FROM role_grants"
        " WHERE ? IS NULL OR principal = ? ORDER BY principal, role, tenant",
        (principal, principal),
    ).fetchall()
    return [RoleGrant(*row) for row in rows]
