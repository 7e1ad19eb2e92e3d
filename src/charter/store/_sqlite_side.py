"""SQLite: the small tables beside the runs (workers, memory, counters, caches, API tokens),
as a part of :class:`SQLiteStore`.

Kept apart so that the store's own module stays about runs, events and leases. The methods use
the store's writer and reader (``_write``, ``_read``) and clock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from charter.errors import NotFoundError
from charter.store import _audit, _cache, _counters, _tokens
from charter.store._base import MemoryItem, WorkerInfo
from charter.store._tokens import ApiToken

T = TypeVar("T")


class SQLiteSideTables:
    if TYPE_CHECKING:  # provided by SQLiteStore
        _clock: Callable[[], float]
        url: str
        audit_key: _audit.AuditKey | None

        async def _write(self, op: Callable[[sqlite3.Connection, float], T]) -> T: ...
        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    # -- workers ------------------------------------------------------------------------------

    async def heartbeat_worker(self, info: WorkerInfo) -> None:
        await self._write(
            lambda conn, now: conn.execute(
                "INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (worker_id)"
                " DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (info.worker_id, info.host, info.pid, info.concurrency, info.started_at, now),
            )
        )

    async def remove_worker(self, worker_id: str) -> None:
        await self._write(
            lambda conn, now: conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
        )

    async def list_workers(self) -> list[WorkerInfo]:
        now = self._clock()
        rows = await self._read(
            lambda c: c.execute(
                "SELECT w.worker_id, w.host, w.pid, w.concurrency, w.started_at, w.heartbeat_at,"
                " (SELECT count(*) FROM runs r WHERE r.lease_owner = w.worker_id"
                "  AND r.lease_expires_at >= ?)"
                " FROM workers w ORDER BY w.started_at",
                (now,),
            ).fetchall()
        )
        return [WorkerInfo(*row) for row in rows]

    # -- API tokens (store/_tokens.py) ---------------------------------------------------------

    async def insert_token(self, token: ApiToken, *, actor: str | None) -> None:
        def op(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(_tokens.INSERT.format(p="?"), token.row())
            _audit.sqlite_append(conn, [_tokens.created(token, actor)], now, self.audit_key)

        await self._write(op)

    async def find_token(self, token_hash: str) -> ApiToken | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_tokens.COLUMNS} FROM api_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        )
        return None if row is None else ApiToken.from_row(row)

    async def api_tokens(self) -> list[ApiToken]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_tokens.COLUMNS} FROM api_tokens ORDER BY created_at, token_id"
            ).fetchall()
        )
        return [ApiToken.from_row(r) for r in rows]

    async def revoke_token(self, token_id: str, *, at: float, actor: str | None) -> ApiToken:
        def op(conn: sqlite3.Connection, now: float) -> ApiToken:
            changed = conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (at, token_id),
            ).rowcount
            row = conn.execute(
                f"SELECT {_tokens.COLUMNS} FROM api_tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"no API token {token_id!r} in {self.url}",
                    hint="list them with: charter tokens list",
                )
            token = ApiToken.from_row(row)
            if changed:
                _audit.sqlite_append(conn, [_tokens.revoked(token, actor)], now, self.audit_key)
            return token

        return await self._write(op)

    # -- memory -------------------------------------------------------------------------------

    async def remember(self, item: MemoryItem) -> None:
        await self._write(
            lambda conn, now: conn.execute(
                "INSERT INTO memory VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, key)"
                " DO UPDATE SET value = excluded.value, provenance = excluded.provenance,"
                " created_at = excluded.created_at, expires_at = excluded.expires_at",
                (
                    item.tenant,
                    item.key,
                    json.dumps(item.value),
                    json.dumps(item.provenance),
                    item.created_at,
                    item.expires_at,
                ),
            )
        )

    async def recall(self, tenant: str, key: str) -> MemoryItem | None:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> MemoryItem | None:
            row = conn.execute(
                "SELECT value, provenance, created_at, expires_at FROM memory"
                " WHERE tenant = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (tenant, key, now),
            ).fetchone()
            if row is None:
                return None
            return MemoryItem(tenant, key, json.loads(row[0]), json.loads(row[1]), row[2], row[3])

        return await self._read(op)

    async def memory_items(self) -> list[MemoryItem]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT tenant, key, value, provenance, created_at, expires_at FROM memory"
                " ORDER BY tenant, key"
            ).fetchall()
        )
        return [MemoryItem(t, k, json.loads(v), json.loads(p), c, e) for t, k, v, p, c, e in rows]

    # -- counters (rate limits, spending; see _counters.py) -----------------------------------

    async def take(
        self, key: str, *, window_s: float, limit: float, amount: float = 1.0
    ) -> float | None:
        def op(conn: sqlite3.Connection, now: float) -> float | None:
            if amount > limit + _counters.SLACK:
                return None
            start = _counters.window_start(now, window_s)
            conn.execute(_counters.DROP_OLD, (key, start))
            args = (key, start, amount, now, limit + _counters.SLACK)
            row = conn.execute(_counters.TAKE, args).fetchone()
            return None if row is None else float(row[0])

        return await self._write(op)

    async def add(self, key: str, *, window_s: float, amount: float) -> float:
        def op(conn: sqlite3.Connection, now: float) -> float:
            start = _counters.window_start(now, window_s)
            conn.execute(_counters.DROP_OLD, (key, start))
            return float(conn.execute(_counters.ADD, (key, start, amount, now)).fetchone()[0])

        return await self._write(op)

    async def counter(self, key: str, *, window_s: float) -> float:
        start = _counters.window_start(self._clock(), window_s)
        row = await self._read(lambda c: c.execute(_counters.READ, (key, start)).fetchone())
        return 0.0 if row is None else float(row[0])

    # -- caches and model usage (see _cache.py) -----------------------------------------------

    async def cache_get(self, key: str, *, now: float) -> str | None:
        row = await self._read(lambda c: c.execute(_cache.GET, (key, now)).fetchone())
        return None if row is None else str(row[0])

    async def cache_put(self, key: str, value: str, *, kind: str, now: float, ttl_s: float) -> None:
        def op(conn: sqlite3.Connection, _: float) -> None:
            conn.execute(_cache.DROP_EXPIRED, (now,))
            conn.execute(_cache.PUT, (key, kind, value, now, now + ttl_s))

        await self._write(op)
