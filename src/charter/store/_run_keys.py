"""Client idempotency keys of runs (table ``run_keys``, schema 9), for both dialects.

A key row is written in the same transaction as the run it names, so a run and its key
exist together or not at all; a second run for a (tenant, key) fails on the primary key.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from charter.store._base import NewRun

INSERT = (
    "INSERT INTO run_keys (tenant, idempotency_key, run_id, request_digest, created_at)"
    " VALUES ({p}, {p}, {p}, {p}, {p})"
)
SELECT = "SELECT run_id, request_digest FROM run_keys WHERE tenant = {p} AND idempotency_key = {p}"


def key_values(run: NewRun) -> tuple[Any, ...] | None:
    """The row for ``run``'s key, or None when it was started without one."""
    if run.idempotency_key is None:
        return None
    digest = run.request_digest or ""
    return (run.tenant, run.idempotency_key, run.run_id, digest, run.created_at)


def sqlite_insert(conn: sqlite3.Connection, run: NewRun) -> None:
    values = key_values(run)
    if values is not None:
        conn.execute(INSERT.format(p="?"), values)


def sqlite_select(conn: sqlite3.Connection, tenant: str, key: str) -> tuple[str, str] | None:
    row = conn.execute(SELECT.format(p="?"), (tenant, key)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))
