"""A database written before the compact event log (schema 11) still opens, verifies, replays,
exports and runs on after the migration, with the same hash values.

``data/schema10_sqlite.sql`` is the ``.dump`` of a SQLite database written by the Charter of
2026-12-05 (schema 10, before this change) with the CLI: ``charter run`` of the agent below
twice, then ``charter send`` and ``charter worker --until-idle`` for the first run. So it
holds one finished run and one run waiting for a message.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.helpers.cli import run_charter

from charter.store import _event_log

DUMP = Path(__file__).parent / "data" / "schema10_sqlite.sql"
FINISHED, WAITING = "run_01a24610510c13f27424", "run_01a24610599d59ac87f2"
SCRIPT = [
    {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
    {"content": "Thanks, all done."},
]


def _old_database(path: Path) -> list[tuple[str, int, str, str]]:
    """Load the dump; return its events as (run_id, seq, type, hash) from the old table."""
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(DUMP.read_text())
        return conn.execute("SELECT run_id, seq, type, hash FROM events ORDER BY 1, 2").fetchall()


def _agent(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("You help.\n")
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: helper\n  version: '2'\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["charter.tools:ask_principal"]\n'
    )


def _ok(done: Any) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return str(done.stdout)


def _events(url: str) -> list[tuple[Any, ...]]:
    """(run_id, seq, type, hash) through the ``events`` view."""
    query = "SELECT run_id, seq, type, hash FROM events ORDER BY 1, 2"
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return conn.execute(query).fetchall()
    with psycopg.connect(url) as pg:
        return [tuple(r) for r in pg.execute(query).fetchall()]


def test_a_schema_10_sqlite_database_migrates_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = _old_database(path)
    url = f"sqlite:///{path}"
    assert len(old) == 16

    _ok(run_charter(tmp_path, "db", "migrate", "--db", url))
    with closing(sqlite3.connect(path)) as conn:
        stored = conn.execute(
            "SELECT r.run_id, e.seq, e.type_code, e.hash FROM event_log e"
            " JOIN runs r ON r.run_no = e.run_no ORDER BY 1, 2"
        ).fetchall()
        assert "events" in {
            n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")
        }
    # The same events, hashes now 32 raw bytes with the same values, types as codes.
    assert [(r, s, _event_log.type_name(c), h.hex()) for r, s, c, h in stored] == old
    assert all(isinstance(h, bytes) and len(h) == 32 for *_, h in stored)
    assert _events(url) == old  # the view shows the log as before

    assert "ok: 2 run(s)" in _ok(run_charter(tmp_path, "audit", "verify", "--all", "--db", url))
    _ok(run_charter(tmp_path, "replay", FINISHED, "--db", url))

    # The waiting run goes on: new events chain onto the old ones.
    _ok(run_charter(tmp_path, "send", WAITING, "order 7", "--db", url))
    _ok(run_charter(tmp_path, "worker", "--until-idle", "--db", url))
    assert "ok: 2 run(s)" in _ok(run_charter(tmp_path, "audit", "verify", "--all", "--db", url))
    _ok(run_charter(tmp_path, "replay", WAITING, "--db", url))
    after = _events(url)
    assert after[: len(old)] == old and len(after) == len(old) + 4

    # Export: a copy holds the same events and hashes, and verifies.
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    _ok(run_charter(tmp_path, "db", "copy", "--from", url, "--to", copy))
    assert _events(copy) == after
    _ok(run_charter(tmp_path, "audit", "verify", "--all", "--db", copy))


def test_a_copy_into_postgresql_keeps_every_hash(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "old.db"
    old = _old_database(path)
    url = f"sqlite:///{path}"
    _ok(run_charter(tmp_path, "db", "migrate", "--db", url))
    _ok(run_charter(tmp_path, "db", "copy", "--from", url, "--to", pg_url))
    assert _events(pg_url) == old
    with psycopg.connect(pg_url) as pg:
        lengths = {n for (n,) in pg.execute("SELECT octet_length(hash) FROM event_log")}
    assert lengths == {32}
    _ok(run_charter(tmp_path, "audit", "verify", "--all", "--db", pg_url))
    _ok(run_charter(tmp_path, "replay", FINISHED, "--db", pg_url))


def _postgres_at_schema_10(pg_url: str, sqlite_path: Path) -> None:
    """The dump's rows in a PostgreSQL database at schema 10, as the previous Charter left
    it: its migrations 1-10 applied, the same rows in the same tables."""
    folder = resources.files("charter.store") / "migrations" / "postgres"
    files = sorted((int(f.name.split("_")[0]), f.read_text()) for f in folder.iterdir()
                   if f.name.endswith(".sql"))  # fmt: skip
    with closing(sqlite3.connect(sqlite_path)) as lite, psycopg.connect(pg_url) as pg:
        pg.execute(
            "CREATE TABLE charter_migrations"
            " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        for version, sql in files:
            if version <= 10:
                pg.execute(sql)
        for table in ("charter_migrations", "agents", "runs", "events", "inbox", "audit_log"):
            rows = lite.execute(f"SELECT * FROM {table}").fetchall()
            if rows:
                marks = ", ".join(["%s"] * len(rows[0]))
                with pg.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        pg.execute("SELECT setval(pg_get_serial_sequence('inbox', 'inbox_id'), max(inbox_id))"
                   " FROM inbox")  # fmt: skip


@pytest.mark.replay_exempt(
    "keeps a schema-10 SQLite file as the source, which this Charter opens only to migrate;"
    " the test replays its runs itself, after the migration"
)
def test_a_schema_10_postgresql_database_migrates_and_keeps_working(
    tmp_path: Path, pg_url: str
) -> None:
    path = tmp_path / "old.db"
    old = _old_database(path)
    _postgres_at_schema_10(pg_url, path)
    assert _events(pg_url) == old  # still the old table

    _ok(run_charter(tmp_path, "db", "migrate", "--db", pg_url))
    assert _events(pg_url) == old  # now the view over event_log
    with psycopg.connect(pg_url) as pg:
        assert pg.execute("SELECT max(version) FROM charter_migrations").fetchone() == (15,)
        lengths = {n for (n,) in pg.execute("SELECT octet_length(hash) FROM event_log")}
    assert lengths == {32}
    assert "ok: 2 run(s)" in _ok(run_charter(tmp_path, "audit", "verify", "--all", "--db", pg_url))
    _ok(run_charter(tmp_path, "replay", FINISHED, "--db", pg_url))
    _ok(run_charter(tmp_path, "send", WAITING, "order 7", "--db", pg_url))
    _ok(run_charter(tmp_path, "worker", "--until-idle", "--db", pg_url))
    _ok(run_charter(tmp_path, "audit", "verify", "--all", "--db", pg_url))
    assert len(_events(pg_url)) == len(old) + 4


@pytest.fixture(autouse=True)
def _agent_files(tmp_path: Path) -> None:
    _agent(tmp_path)
