"""PostgreSQL: payload retention (``charter retention apply``), as a part of
:class:`PostgresStore`. Finished runs only, compare-and-set on the old payload."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from charter.events import FINAL_STATUSES
from charter.store import _event_log
from charter.store._base import PayloadRow

Row = tuple[Any, ...]
Args = Sequence[Any] | dict[str, Any] | None


class PostgresRetention:
    if TYPE_CHECKING:  # provided by PostgresStore

        async def _fetch(
            self, query: str, args: Args = None, *, now: bool = False
        ) -> list[Row]: ...

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
        rows = await self._fetch(
            "SELECT e.run_id, e.seq, e.type, e.at, e.payload, r.tenant, e.schema_version"
            " FROM events e"
            " JOIN runs r ON r.run_id = e.run_id WHERE r.status = ANY(%(final)s)"
            " AND e.type = ANY(%(types)s) AND e.at < %(before)s"
            " AND (%(tenant)s::text IS NULL OR r.tenant = %(tenant)s)"
            " AND NOT (r.tenant = ANY(%(skip)s))"
            " ORDER BY e.run_id, e.seq LIMIT %(limit)s",
            {
                "final": sorted(FINAL_STATUSES),
                "types": list(types),
                "before": before,
                "tenant": tenant,
                "skip": list(skip_tenants),
                "limit": limit,
            },
        )
        return [PayloadRow(*row) for row in rows]

    async def replace_payloads(self, changes: Sequence[tuple[str, int, str, str]]) -> int:
        """Set ``(run_id, seq, old, new)`` payloads where the old one is still there."""
        done = 0
        for run_id, seq, old, new in changes:
            rows = await self._fetch(
                _event_log.replace_payload_sql("%s") + " RETURNING seq",
                (new, run_id, seq, old),
            )
            done += len(rows)
        return done
