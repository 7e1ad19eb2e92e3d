"""The suite-wide replay check: every run a test leaves in a store replays identically.

``tests/conftest.py`` calls :func:`problems` at the teardown of every test, for each store the
test used: the PostgreSQL schema ``pg_url`` handed out (before it is dropped) and every
Charter SQLite database under the test's ``tmp_path`` (``db_path``/``db_url``, the
``charter.db`` a CLI subprocess wrote in its working directory, the durability tests'
databases), after the test's fixtures have stopped their workers. A store is opened to read
only; a database that is not Charter's (no schema) is not a store and is passed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg

from charter.errors import CharterError, StoreError
from charter.replay import replay_run
from charter.store import open_store

SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_files(root: Path) -> Iterator[Path]:
    """The SQLite databases under ``root`` (by their header, whatever their name)."""
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = Path(folder) / name
            if name.endswith(("-wal", "-shm", "-journal")) or path.is_symlink():
                continue
            try:
                with path.open("rb") as f:
                    head = f.read(len(SQLITE_MAGIC))
            except OSError:
                continue
            if head == SQLITE_MAGIC:
                yield path


def is_store(url: str) -> bool:
    """Whether ``url`` holds Charter's schema (a test may leave an empty schema or file, or
    another application's database)."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(f"file:{url[10:]}?mode=ro", uri=True)) as conn:
            query = "SELECT 1 FROM sqlite_master WHERE name = 'charter_migrations'"
            return conn.execute(query).fetchone() is not None
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('charter_migrations') IS NOT NULL").fetchone()
        return bool(row and row[0])


async def _problems(url: str) -> list[str]:
    try:
        store = open_store(url, mode="read", audit_key=None)
    except StoreError as exc:
        return [f"{url}: cannot open it to replay its runs: {exc.message}"]
    found = []
    try:
        for run_id in await store.run_ids():
            try:
                report = await replay_run(store, run_id)
            except CharterError as exc:
                found.append(f"{url} run {run_id}: cannot replay: {exc.message}")
                continue
            if not report.identical:
                found.append(f"{url} run {run_id}: diverges: {report.to_dict()['divergence']}")
    finally:
        await store.close()
    return found


def problems(url: str) -> list[str]:
    """What is wrong with replaying the runs at ``url`` (empty: every run is identical, or
    ``url`` is not a Charter store)."""
    return asyncio.run(_problems(url)) if is_store(url) else []
