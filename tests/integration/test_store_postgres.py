"""PostgreSQL-only store behaviour: bad URLs and servers, broken connections, schemes."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from tests.conftest import PostgresDatabases

from charter import ConflictError, StoreError
from charter.errors import ConfigError
from charter.store import (
    PostgresStore,
    Store,
    open_store,
)
from charter.testing.store_conformance import new_run, park

pytestmark = pytest.mark.replay_exempt(
    "writes logs by hand through the store API (made-up agent specs and events), not"
    " runs the engine made"
)

# -- PostgreSQL: bad input and broken connections ---------------------------------------------


def _with_url(url: str, *, port: int | None = None, user: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user or parts.username}@{host}:{port or parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def _first_use_error(url: str) -> tuple[StoreError, str]:
    async def main() -> tuple[StoreError, str]:
        store = PostgresStore(url, timeout_s=5)
        try:
            with pytest.raises(StoreError) as info:
                await store.get_run("run_1")
            started = time.monotonic()
            await store.wait_for_work(0.3)  # never raises: it waits its time out
            assert time.monotonic() - started >= 0.25
            return info.value, store.url
        finally:
            await store.close()

    return asyncio.run(main())


def test_postgres_only_a_wrong_port_cannot_connect(pg_url: str) -> None:
    error, _ = _first_use_error(_with_url(pg_url, port=1))
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in error.message
    assert error.hint is not None
    assert "server running" in error.hint


def test_postgres_only_a_database_that_does_not_exist_is_named(
    pg_databases: PostgresDatabases,
) -> None:
    error, _ = _first_use_error(pg_databases.url("charter_no_such_database"))
    assert "'charter_no_such_database' does not exist" in error.message
    assert error.hint is not None
    assert "createdb charter_no_such_database" in error.hint


def test_postgres_only_an_unknown_user_is_refused_and_no_password_is_shown(pg_url: str) -> None:
    url = _with_url(pg_url, user="charter_no_such_role:s3cret-pw")
    error, shown_url = _first_use_error(url)
    assert "charter_no_such_role" in error.message
    assert error.hint is not None
    assert "user and password" in error.hint
    for text in (str(error), repr(error), shown_url, str(error.__cause__)):
        assert "s3cret-pw" not in text
    assert shown_url.startswith("postgresql://charter_no_such_role:***@")


def test_postgres_only_a_malformed_url_is_a_config_error_without_its_password() -> None:
    with pytest.raises(ConfigError, match='invalid URI query parameter: "bogus"'):
        open_store("postgresql://ann@db.example/charter?bogus=1")
    with pytest.raises(ConfigError) as info:
        open_store("postgresql://ann:s3cret%zz@db.example/charter")
    assert "s3cret" not in str(info.value)


def test_postgres_only_both_url_schemes_open_a_postgres_store(pg_url: str) -> None:
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        assert asyncio.run(_schema_and_close(store)) == store.latest_schema_version()


async def _schema_and_close(store: Store) -> int:
    try:
        return await store.schema_version()
    finally:
        await store.close()


def test_postgres_only_a_connection_lost_mid_operation_is_a_store_error_then_recovers(
    pg_url: str,
) -> None:
    async def scenario() -> None:
        store = PostgresStore(pg_url)
        admin = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            await park(store, new_run("run_1", 1_000.0), status="waiting", waiting_for="message")
            async with admin.transaction():
                # Hold the run's row, so that the store's send waits on it, then cut it off.
                await admin.execute("SELECT 1 FROM runs WHERE run_id = 'run_1' FOR UPDATE")
                send = asyncio.create_task(store.send("run_1", "hello"))
                blocked: list[tuple[Any, ...]] = []
                for _ in range(100):
                    cur = await admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                    blocked = await cur.fetchall()
                    if blocked:
                        break
                    await asyncio.sleep(0.02)
                assert blocked, "the store's send never waited on the row lock"
                await admin.execute("SELECT pg_terminate_backend(%s)", blocked[0])
                with pytest.raises(StoreError) as info:
                    await send
            assert not isinstance(info.value, ConflictError)
            assert "lost the connection to PostgreSQL" in info.value.message
            assert await store.pending_messages("run_1") == []  # nothing was half-written
            # The pool replaces the broken connection: the next operation works.
            await store.send("run_1", "hello again")
            assert [m.text for m in await store.pending_messages("run_1")] == ["hello again"]
        finally:
            await admin.close()
            await store.close()

    asyncio.run(scenario())


def test_postgres_only_after_every_connection_is_cut_operations_and_wake_ups_resume(
    pg_url: str,
) -> None:
    async def scenario() -> None:
        waiter, other = PostgresStore(pg_url), PostgresStore(pg_url)
        admin = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            await other.create_run(new_run("run_1", 1_000.0))
            await waiter.wait_for_work(0.5)  # listening, and the pools hold connections
            assert await waiter.run_ids() == ["run_1"]
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'charter'"
            )
            # The pools replace their dead connections (psycopg's pool waits ~1 s before it
            # checks the next one): no operation fails.
            assert await waiter.run_ids() == ["run_1"]
            await other.create_run(new_run("run_2", 1_000.0))
            # The listener reconnects meanwhile, and wakes its waiter: it may have missed news.
            await asyncio.sleep(0.6)
            # A wait far longer than the deadline: only a wake-up ends it in time.
            await asyncio.wait_for(waiter.wait_for_work(600.0), timeout=60)
            # Then it hears the next wake-up again.
            task = asyncio.create_task(waiter.wait_for_work(600.0))
            await asyncio.sleep(0.2)
            assert not task.done()
            await other.create_run(new_run("run_3", 1_000.0))
            await asyncio.wait_for(task, timeout=60)
        finally:
            await admin.close()
            await waiter.close()
            await other.close()

    asyncio.run(scenario())
