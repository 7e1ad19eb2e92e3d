"""PostgreSQL: the small tables beside the runs (workers, memory, counters, caches, API
tokens), as a part of :class:`PostgresStore`.

Kept apart so that the store's own module stays about runs, events and leases. The methods use
the store's ``_fetch`` (one statement; ``now=True`` binds the database's time as ``%(now)s``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from charter.errors import NotFoundError
from charter.store import _audit, _cache, _counters, _tokens
from charter.store._base import MemoryItem, WorkerInfo
from charter.store._tokens import ApiToken

Row = tuple[Any, ...]
Args = Sequence[Any] | dict[str, Any] | None
_SELECT_TOKENS = f"SELECT {_tokens.COLUMNS} FROM api_tokens"


class PostgresSideTables:
    if TYPE_CHECKING:  # provided by PostgresStore

        async def _fetch(
            self, query: str, args: Args = None, *, now: bool = False
        ) -> list[Row]: ...
        def _cursor(
            self, *, write: bool, run_id: str | None = None
        ) -> AbstractAsyncContextManager[Any]: ...
        async def _now(self, cur: Any) -> float: ...

        url: str
        audit_key: _audit.AuditKey | None

    # -- workers ------------------------------------------------------------------------------

    async def heartbeat_worker(self, info: WorkerInfo) -> None:
        await self._fetch(
            "INSERT INTO workers VALUES (%(worker_id)s, %(host)s, %(pid)s, %(concurrency)s,"
            " %(started_at)s, %(now)s)"
            " ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            info.to_dict(),
            now=True,
        )

    async def remove_worker(self, worker_id: str) -> None:
        await self._fetch("DELETE FROM workers WHERE worker_id = %s", (worker_id,))

    async def list_workers(self) -> list[WorkerInfo]:
        rows = await self._fetch(
            "SELECT w.worker_id, w.host, w.pid, w.concurrency, w.started_at, w.heartbeat_at,"
            " (SELECT count(*) FROM runs r WHERE r.lease_owner = w.worker_id"
            "  AND r.lease_expires_at >= %(now)s)"
            " FROM workers w ORDER BY w.started_at",
            now=True,
        )
        return [WorkerInfo(*row) for row in rows]

    # -- API tokens (store/_tokens.py) ---------------------------------------------------------

    async def insert_token(self, token: ApiToken, *, actor: str | None) -> None:
        async with self._cursor(write=True) as cur:
            await cur.execute(_tokens.INSERT.format(p="%s"), token.row())
            entry = _tokens.created(token, actor)
            await _audit.postgres_append(cur, [entry], await self._now(cur), self.audit_key)

    async def find_token(self, token_hash: str) -> ApiToken | None:
        rows = await self._fetch(f"{_SELECT_TOKENS} WHERE token_hash = %s", (token_hash,))
        return ApiToken.from_row(rows[0]) if rows else None

    async def api_tokens(self) -> list[ApiToken]:
        rows = await self._fetch(f"{_SELECT_TOKENS} ORDER BY created_at, token_id")
        return [ApiToken.from_row(r) for r in rows]

    async def revoke_token(self, token_id: str, *, at: float, actor: str | None) -> ApiToken:
        async with self._cursor(write=True) as cur:
            await cur.execute(
                "UPDATE api_tokens SET revoked_at = %s WHERE token_id = %s AND revoked_at IS NULL",
                (at, token_id),
            )
            changed = cur.rowcount
            await cur.execute(f"{_SELECT_TOKENS} WHERE token_id = %s", (token_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFoundError(
                    f"no API token {token_id!r} in {self.url}",
                    hint="list them with: charter tokens list",
                )
            token = ApiToken.from_row(row)
            if changed:
                entry = _tokens.revoked(token, actor)
                await _audit.postgres_append(cur, [entry], await self._now(cur), self.audit_key)
            return token

    # -- memory -------------------------------------------------------------------------------

    async def remember(self, item: MemoryItem) -> None:
        value, provenance = json.dumps(item.value), json.dumps(item.provenance)
        await self._fetch(
            "INSERT INTO memory VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, key)"
            " DO UPDATE SET value = excluded.value, provenance = excluded.provenance,"
            " created_at = excluded.created_at, expires_at = excluded.expires_at",
            (item.tenant, item.key, value, provenance, item.created_at, item.expires_at),
        )

    async def recall(self, tenant: str, key: str) -> MemoryItem | None:
        rows = await self._fetch(
            "SELECT value, provenance, created_at, expires_at FROM memory WHERE tenant ="
            " %(tenant)s AND key = %(key)s AND (expires_at IS NULL OR expires_at > %(now)s)",
            {"tenant": tenant, "key": key},
            now=True,
        )
        for v, p, created_at, expires_at in rows:
            return MemoryItem(tenant, key, json.loads(v), json.loads(p), created_at, expires_at)
        return None

    async def memory_items(self) -> list[MemoryItem]:
        rows = await self._fetch(
            "SELECT tenant, key, value, provenance, created_at, expires_at FROM memory"
            " ORDER BY tenant, key"
        )
        return [MemoryItem(t, k, json.loads(v), json.loads(p), c, e) for t, k, v, p, c, e in rows]

    # -- counters (rate limits, spending; see _counters.py) -----------------------------------

    async def take(
        self, key: str, *, window_s: float, limit: float, amount: float = 1.0
    ) -> float | None:
        if amount > limit + _counters.SLACK:
            return None
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            start = _counters.window_start(now, window_s)
            await cur.execute(_counters.pg(_counters.DROP_OLD), (key, start))
            args = (key, start, amount, now, limit + _counters.SLACK)
            await cur.execute(_counters.pg(_counters.TAKE), args)
            row = await cur.fetchone()
            return None if row is None else float(row[0])

    async def add(self, key: str, *, window_s: float, amount: float) -> float:
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            start = _counters.window_start(now, window_s)
            await cur.execute(_counters.pg(_counters.DROP_OLD), (key, start))
            await cur.execute(_counters.pg(_counters.ADD), (key, start, amount, now))
            row = await cur.fetchone()
            return float(row[0])

    async def counter(self, key: str, *, window_s: float) -> float:
        async with self._cursor(write=False) as cur:
            start = _counters.window_start(await self._now(cur), window_s)
            await cur.execute(_counters.pg(_counters.READ), (key, start))
            row = await cur.fetchone()
            return 0.0 if row is None else float(row[0])

    # -- caches and model usage (see _cache.py) -----------------------------------------------

    async def cache_get(self, key: str, *, now: float) -> str | None:
        rows = await self._fetch(_counters.pg(_cache.GET), (key, now))
        return str(rows[0][0]) if rows else None

    async def cache_put(self, key: str, value: str, *, kind: str, now: float, ttl_s: float) -> None:
        async with self._cursor(write=True) as cur:
            await cur.execute(_counters.pg(_cache.DROP_EXPIRED), (now,))
            await cur.execute(_counters.pg(_cache.PUT), (key, kind, value, now, now + ttl_s))
