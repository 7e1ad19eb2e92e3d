"""Durable counters (rate limits, daily spending), conformance over both backends.

Each test runs against a real SQLite file and a fresh schema on the real PostgreSQL server
(``store_url`` in conftest).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from charter.store import PostgresStore, SQLiteStore, Store, open_store

T = TypeVar("T")
HOUR = 3600.0


class FakeClock:
    def __init__(self, now: float = 10 * HOUR) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _open(url: str, clock: FakeClock | None = None) -> Store:
    if clock is None:
        return open_store(url)
    if url.startswith("sqlite:"):
        return SQLiteStore(url.removeprefix("sqlite:///"), clock=clock)
    return PostgresStore(url, clock=clock)


def _with_store(url: str, fn: Callable[[Store], Awaitable[T]], clock: FakeClock | None = None) -> T:
    async def main() -> T:
        store = _open(url, clock)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_take_counts_up_to_the_limit_then_refuses_without_change(store_url: str) -> None:
    async def scenario(store: Store) -> None:
        taken = [await store.take("k", window_s=HOUR, limit=3) for _ in range(5)]
        assert taken == [1.0, 2.0, 3.0, None, None]
        assert await store.counter("k", window_s=HOUR) == 3.0
        assert await store.take("other", window_s=HOUR, limit=3) == 1.0  # keys are separate

    _with_store(store_url, scenario)


def test_take_with_amounts_refuses_the_one_that_would_pass_the_limit(store_url: str) -> None:
    async def scenario(store: Store) -> None:
        assert await store.take("usd", window_s=HOUR, limit=1.0, amount=0.7) == pytest.approx(0.7)
        assert await store.take("usd", window_s=HOUR, limit=1.0, amount=0.4) is None
        assert await store.take("usd", window_s=HOUR, limit=1.0, amount=0.3) == pytest.approx(1.0)
        assert await store.take("big", window_s=HOUR, limit=1.0, amount=2.0) is None
        assert await store.counter("big", window_s=HOUR) == 0.0  # refused: nothing written

    _with_store(store_url, scenario)


def test_add_is_unconditional_and_may_give_back(store_url: str) -> None:
    async def scenario(store: Store) -> None:
        assert await store.add("spend", window_s=HOUR, amount=0.25) == pytest.approx(0.25)
        assert await store.add("spend", window_s=HOUR, amount=5.0) == pytest.approx(5.25)
        assert await store.add("spend", window_s=HOUR, amount=-0.25) == pytest.approx(5.0)
        assert await store.counter("spend", window_s=HOUR) == pytest.approx(5.0)

    _with_store(store_url, scenario)


def test_a_new_window_starts_from_zero_and_old_windows_are_dropped(store_url: str) -> None:
    clock = FakeClock()

    async def scenario(store: Store) -> None:
        assert await store.take("k", window_s=HOUR, limit=2) == 1.0
        clock.now += HOUR - 1  # the same fixed window (it started at 10h)
        assert await store.take("k", window_s=HOUR, limit=2) == 2.0
        assert await store.take("k", window_s=HOUR, limit=2) is None
        clock.now += 1  # 11h: the next window
        assert await store.counter("k", window_s=HOUR) == 0.0
        assert await store.take("k", window_s=HOUR, limit=2) == 1.0
        assert await store.add("k", window_s=HOUR, amount=0) == 1.0

    _with_store(store_url, scenario, clock)
    rows = _with_store(store_url, _count_rows)
    assert rows == 1  # the 10h window was dropped when the 11h one was written


async def _count_rows(store: Store) -> int:
    if isinstance(store, SQLiteStore):
        return int(
            await store._read(lambda c: c.execute("SELECT count(*) FROM counters").fetchone()[0])
        )
    assert isinstance(store, PostgresStore)
    [(n,)] = await store._fetch("SELECT count(*) FROM counters")
    return int(n)


def test_counters_survive_a_new_store_instance(store_url: str) -> None:
    async def fill(store: Store) -> None:
        for _ in range(2):
            await store.take("k", window_s=HOUR, limit=2)

    async def after(store: Store) -> tuple[float, float | None]:
        return await store.counter("k", window_s=HOUR), await store.take(
            "k", window_s=HOUR, limit=2
        )

    _with_store(store_url, fill)
    assert _with_store(store_url, after) == (2.0, None)


def test_many_concurrent_takers_on_two_stores_never_pass_the_limit(store_url: str) -> None:
    """Two store instances (separate connections, as two workers have) and 80 takers at once
    for 25 slots: exactly 25 succeed and each total is handed out once."""

    async def main() -> tuple[list[float | None], float]:
        stores = [open_store(store_url), open_store(store_url)]
        try:
            takes = [stores[i % 2].take("slots", window_s=HOUR, limit=25) for i in range(80)]
            results = list(await asyncio.gather(*takes))
            return results, await stores[0].counter("slots", window_s=HOUR)
        finally:
            for store in stores:
                await store.close()

    results, total = asyncio.run(main())
    granted = sorted(r for r in results if r is not None)
    assert granted == [float(n) for n in range(1, 26)]
    assert total == 25.0
