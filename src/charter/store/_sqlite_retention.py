"""SQLite: payload retention (``charter retention apply``), as a part of :class:`SQLiteStore`.

Only payloads of finished runs are touched, and only by compare-and-set on the old payload:
a retention job never races the engine, which never writes a finished run's events again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from charter.events import FINAL_STATUSES
from charter.store import _event_log
from charter.store._base import PayloadRow

T = TypeVar("T")
_FINAL = ", ".join(f"'{s}'" for s in sorted(FINAL_STATUSES))


class SQLiteRetention:
    if TYPE_CHECKING:  # provided by SQLiteStore

        async def _write(self, op: Callable[[sqlite3.Connection, float], T]) -> T: ...
        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    async def expired_payloads(
        self,
        *,
        types: Sequence[str],
        before: float,
        tenant: str | None = None,
        skip_tenants: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[PayloadRow]:
        if not types:
            return []
        kinds = ", ".join("?" * len(types))
        marks = ", ".join("?" * len(skip_tenants))
        skip = f" AND r.tenant NOT IN ({marks})" if skip_tenants else ""
        query = (
            "SELECT e.run_id, e.seq, e.type, e.at, e.payload, r.tenant, e.schema_version"
            " FROM events e"
            f" JOIN runs r ON r.run_id = e.run_id WHERE r.status IN ({_FINAL})"
            f" AND e.type IN ({kinds}) AND e.at < ? AND (? IS NULL OR r.tenant = ?)"
            f"{skip}"
            " ORDER BY e.run_id, e.seq LIMIT ?"
        )
        args = (*types, before, tenant, tenant, *skip_tenants, limit)
        rows = await self._read(lambda conn: conn.execute(query, args).fetchall())
        return [PayloadRow(*row) for row in rows]

    async def replace_payloads(self, changes: Sequence[tuple[str, int, str, str]]) -> int:
        """Set ``(run_id, seq, old, new)`` payloads where the old one is still there."""

        def op(conn: sqlite3.Connection, now: float) -> int:
            done = 0
            for run_id, seq, old, new in changes:
                cur = conn.execute(
                    _event_log.replace_payload_sql("?"),
                    (new, run_id, seq, old),
                )
                done += cur.rowcount
            return done

        return await self._write(op)
