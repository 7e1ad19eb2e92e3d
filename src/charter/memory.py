"""Memory: distilled knowledge reused across runs, with provenance, TTL and tenant scoping.

The third of the four state layers, kept apart from the working context (derived each turn),
the durable run state and the event log. This first implementation is a key-value memory in
the run store; search and access rules come later behind the same interface.
"""

from __future__ import annotations

from typing import Any, Protocol

from charter.clock import Clock, wall_clock
from charter.store import MemoryItem, Store


class Memory(Protocol):
    async def remember(
        self,
        tenant: str,
        key: str,
        value: Any,
        *,
        provenance: dict[str, Any],
        ttl_s: float | None = None,
    ) -> None: ...

    async def recall(self, tenant: str, key: str) -> MemoryItem | None: ...


class StoreMemory:
    """Memory kept in the run store; entries are visible only to their own tenant."""

    def __init__(self, store: Store, *, clock: Clock = wall_clock) -> None:
        self._store = store
        self._clock = clock

    async def remember(
        self,
        tenant: str,
        key: str,
        value: Any,
        *,
        provenance: dict[str, Any],
        ttl_s: float | None = None,
    ) -> None:
        now = self._clock()
        expires = None if ttl_s is None else now + ttl_s
        await self._store.remember(MemoryItem(tenant, key, value, provenance, now, expires))

    async def recall(self, tenant: str, key: str) -> MemoryItem | None:
        return await self._store.recall(tenant, key)
