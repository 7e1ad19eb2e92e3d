"""The PostgreSQL test fixture outlives a server that dropped its connections: another
process terminating them (or a test restarting the server) must not fail the next test's
setup or teardown."""

from __future__ import annotations

import psycopg
from tests.conftest import PostgresDatabases


def _terminate_connections_to(databases: PostgresDatabases) -> int:
    """Terminate this test session's connections to its own database (only this process's
    tests use it, one at a time), as a server restart would."""
    with psycopg.connect(databases.admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (databases.session_db,),
        ).fetchall()
    return len(rows)


def test_schemas_are_created_and_dropped_after_the_server_dropped_the_connections(
    pg_databases: PostgresDatabases,
) -> None:
    schema = pg_databases.create_schema()
    assert _terminate_connections_to(pg_databases) >= 1

    pg_databases.drop_schema(schema)  # the session connection was terminated: reconnects
    again = pg_databases.create_schema()
    pg_databases.drop_schema(again)

    with psycopg.connect(pg_databases.url(pg_databases.session_db)) as conn:
        names = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}
    assert schema not in names and again not in names
