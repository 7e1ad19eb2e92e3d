"""PostgreSQL: whole tables as rows, for ``charter db copy`` (a part of
:class:`PostgresStore`).

Tables and columns are read from ``information_schema`` in the connection's schema, so a
table added by a later migration is copied without a change here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from psycopg import sql

from charter.store import _audit
from charter.store._audit import AuditRecord

Row = tuple[Any, ...]


class PostgresTables:
    if TYPE_CHECKING:  # provided by PostgresStore

        def _cursor(
            self, *, write: bool, run_id: str | None = None
        ) -> contextlib.AbstractAsyncContextManager[Any]: ...

    async def table_names(self) -> list[str]:
        async with self._cursor(write=False) as cur:
            await cur.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
                " ORDER BY table_name"
            )
            return [str(r[0]) for r in await cur.fetchall()]

    async def table_rows(self, table: str) -> tuple[list[str], list[Row]]:
        """The table's column names and every row, in column order."""
        async with self._cursor(write=False) as cur:
            await cur.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s"
                " ORDER BY ordinal_position",
                (table,),
            )
            columns = [str(r[0]) for r in await cur.fetchall()]
            await cur.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
                )
            )
            return columns, [tuple(r) for r in await cur.fetchall()]

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> int:
        """Insert the rows that are not there yet (by key); return how many were new."""
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        added = 0
        async with self._cursor(write=True) as cur:
            for row in rows:
                await cur.execute(statement, row)
                added += max(cur.rowcount, 0)
        return added

    async def adopt_audit_log(self, records: Sequence[AuditRecord]) -> int:
        """Take a copied database's audit log (``db copy``): this one's must be its own
        genesis alone (replaced) or a prefix of ``records`` (the rest is appended)."""
        async with self._cursor(write=True) as cur:
            await cur.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
            await cur.execute(_audit.SELECT.format(p="%s"), (0,))
            ours = [_audit.from_row(r) for r in await cur.fetchall()]
            rows = _audit.adoption(ours, records)
            if len(rows) == len(records):
                await cur.execute("DELETE FROM audit_log")
            await cur.executemany(_audit.INSERT.format(p="%s"), rows)
            return len(rows)
