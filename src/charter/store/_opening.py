"""Opening a database to read or to write: what each mode may do to it.

Commands that write (``run``, ``start``, ``worker``, ``db migrate``...) open a store in
``write`` mode: a missing SQLite file is created and the schema migrated. Commands that only
read (``runs list|show``, ``events``, ``audit verify``, ``stats``...) open it in ``read``
mode, which never creates, migrates, locks or writes anything:

* a missing file, or a database without Charter's schema, is an error with a hint;
* SQLite is opened with ``mode=ro``, ``PRAGMA query_only``, and no ``BEGIN IMMEDIATE``, so a
  writer holding the lock in another process does not stop a read (WAL); a WAL database in a
  directory nobody may write (an archive) is opened ``immutable`` when its shared-memory file
  cannot be created;
* PostgreSQL connections run with ``default_transaction_read_only`` and the schema is only
  checked, never created.

Writing mode refuses a file that holds another application's tables: Charter never adds its
tables to a database that is not its own.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from charter.errors import SchemaTooNewError, StoreError

Mode = Literal["read", "write"]
MIGRATE_HINT = "create or upgrade it on purpose with: charter db migrate --db URL"


def missing(path: str) -> StoreError:
    return StoreError(
        f"database {path} does not exist",
        hint=f"check --db (or CHARTER_DB) for a typo; {MIGRATE_HINT}",
    )


def not_charter(where: str) -> StoreError:
    return StoreError(
        f"{where} is not a Charter database (it has no charter_migrations table)",
        hint="point --db at a Charter database; Charter will not add its tables to another"
        " application's",
    )


def check_version(where: str, current: int, latest: int) -> None:
    """A database to read must be at this Charter's schema version exactly."""
    if current > latest:
        raise SchemaTooNewError(
            f"database {where} has schema version {current}; this Charter knows up to {latest}",
            hint="upgrade Charter; it will not open a database newer than itself",
        )
    if current < latest:
        raise StoreError(
            f"database {where} has schema version {current}; this Charter reads {latest}",
            hint=f"reading never migrates; {MIGRATE_HINT}",
        )


def check_sqlite_write(path: str, *, timeout_s: float) -> None:
    """Writing mode, before anything touches the file: refuse a read-only file and another
    application's database (even switching it to WAL would change it)."""
    target = Path(path)
    if target.is_file() and target.stat().st_size > 0:
        conn = connect_sqlite_read(path, timeout_s=timeout_s)
        try:
            foreign = sqlite_schema(conn) is None
        finally:
            conn.close()
        if foreign:
            raise not_charter(path)
    _refuse_read_only_file(target, path)


def _refuse_read_only_file(target: Path, path: str) -> None:
    folder = target.parent if str(target.parent) else Path(".")
    if (target.exists() and not os.access(target, os.W_OK)) or not os.access(folder, os.W_OK):
        raise StoreError(
            f"database {path} is read-only",
            hint="commands that write need write access to the file and its directory;"
            " read-only commands (runs list|show, events, audit verify) work on it as it is",
        )


def connect_sqlite_read(path: str, *, timeout_s: float) -> sqlite3.Connection:
    """A read-only connection that takes no write lock (``mode=ro``, ``query_only``)."""
    if not Path(path).is_file():
        raise missing(path)
    base = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    try:
        return _reading(base, timeout_s)
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc):
            raise
    # A WAL database whose -shm cannot be created (a read-only directory): nobody can be
    # writing it, so it is read as immutable.
    return _reading(base + "&immutable=1", timeout_s)


def _reading(uri: str, timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        uri, uri=True, timeout=timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def sqlite_schema(conn: sqlite3.Connection) -> int | None:
    """The schema version, 0 for an empty file, None for another application's database."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "charter_migrations" not in tables:
        return 0 if not tables else None
    return int(conn.execute("SELECT max(version) FROM charter_migrations").fetchone()[0] or 0)


def check_sqlite_read(conn: sqlite3.Connection, path: str, latest: int) -> None:
    version = sqlite_schema(conn)
    if version is None or version == 0:
        raise not_charter(path)
    check_version(path, version, latest)


def read_only_options(options: str | None) -> str:
    """libpq ``options`` that make every transaction of the connection read-only."""
    return f"{options or ''} -c default_transaction_read_only=on".strip()


async def check_postgres_read(cur: Any, where: str, latest: int) -> None:
    """Reading mode on PostgreSQL: the schema must be there, at this Charter's version."""
    await cur.execute("SELECT to_regclass('charter_migrations') IS NOT NULL")
    (exists,) = await cur.fetchone()
    if not exists:
        raise StoreError(f"PostgreSQL at {where} has no Charter schema", hint=MIGRATE_HINT)
    await cur.execute("SELECT max(version) FROM charter_migrations")
    (version,) = await cur.fetchone()
    check_version(where, int(version or 0), latest)
