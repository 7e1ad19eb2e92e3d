"""The cache table (model responses, cacheable read results), conformance over both backends.

Each test runs against a real SQLite file and a fresh schema on the real PostgreSQL server
(``store_url`` in conftest). Expiry is by the caller's clock (``now``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from charter.store import Store, open_store

T = TypeVar("T")


def _with_store(url: str, fn: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = open_store(url)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_an_entry_is_served_until_its_ttl_passes(store_url: str) -> None:
    async def scenario(store: Store) -> list[str | None]:
        await store.cache_put("k1", '{"a":1}', kind="model", now=1000.0, ttl_s=60)
        return [
            await store.cache_get("k1", now=1000.0),
            await store.cache_get("k1", now=1059.9),
            await store.cache_get("k1", now=1060.0),
            await store.cache_get("k2", now=1000.0),
        ]

    assert _with_store(store_url, scenario) == ['{"a":1}', '{"a":1}', None, None]


def test_putting_a_key_again_replaces_its_value_and_expiry(store_url: str) -> None:
    async def scenario(store: Store) -> list[str | None]:
        await store.cache_put("k", "old", kind="tool", now=0.0, ttl_s=10)
        await store.cache_put("k", "new", kind="tool", now=5.0, ttl_s=10)
        return [await store.cache_get("k", now=12.0), await store.cache_get("k", now=15.0)]

    assert _with_store(store_url, scenario) == ["new", None]


def test_a_write_drops_expired_entries(store_url: str) -> None:
    async def scenario(store: Store) -> list[str | None]:
        await store.cache_put("old", "x", kind="tool", now=0.0, ttl_s=1)
        await store.cache_put("fresh", "y", kind="tool", now=100.0, ttl_s=1)
        # Asked as of a time when "old" was alive, it is gone: the second put dropped it.
        return [await store.cache_get("old", now=0.5), await store.cache_get("fresh", now=100.5)]

    assert _with_store(store_url, scenario) == [None, "y"]


def test_entries_are_shared_by_stores_on_one_database(store_url: str) -> None:
    async def scenario(store: Store) -> str | None:
        await store.cache_put("shared", "v", kind="model", now=0.0, ttl_s=60)
        other = open_store(store_url)
        try:
            return await other.cache_get("shared", now=1.0)
        finally:
            await other.close()

    assert _with_store(store_url, scenario) == "v"
