"""SQLite: whole tables as rows, for ``charter db copy`` (a part of :class:`SQLiteStore`).

Tables and columns are read from the schema itself (``sqlite_master``, ``PRAGMA
table_info``), so a table added by a later migration is copied without a change here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from charter.store import _audit
from charter.store._audit import AuditRecord

T = TypeVar("T")
Row = tuple[Any, ...]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SQLiteTables:
    if TYPE_CHECKING:  # provided by SQLiteStore

        async def _write(self, op: Callable[[sqlite3.Connection, float], T]) -> T: ...
        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    async def table_names(self) -> list[str]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    async def table_rows(self, table: str) -> tuple[list[str], list[Row]]:
        """The table's column names and every row, in column order."""

        def read(conn: sqlite3.Connection) -> tuple[list[str], list[Row]]:
            columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({_quoted(table)})")]
            listed = ", ".join(_quoted(c) for c in columns)
            return columns, conn.execute(f"SELECT {listed} FROM {_quoted(table)}").fetchall()

        return await self._read(read)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> int:
        """Insert the rows that are not there yet (by key); return how many were new."""
        listed = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {_quoted(table)} ({listed}) VALUES ({marks}) ON CONFLICT DO NOTHING"

        def write(conn: sqlite3.Connection, _: float) -> int:
            before = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - before

        return await self._write(write)

    async def adopt_audit_log(self, records: Sequence[AuditRecord]) -> int:
        """Take a copied database's audit log (``db copy``): this one's must be its own
        genesis alone (replaced) or a prefix of ``records`` (the rest is appended)."""

        def write(conn: sqlite3.Connection, _: float) -> int:
            found = conn.execute(_audit.SELECT.format(p="?"), (0,)).fetchall()
            rows = _audit.adoption([_audit.from_row(r) for r in found], records)
            if len(rows) == len(records):
                conn.execute("DELETE FROM audit_log")
            conn.executemany(_audit.INSERT.format(p="?"), rows)
            return len(rows)

        return await self._write(write)
