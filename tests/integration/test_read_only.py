"""Reading never writes: commands that only read open the database read-only. They never
create, migrate or lock it; a missing or foreign file is an error with a hint; a read-only
archive can be listed, shown and verified. Through the real `charter` command, on real
SQLite files and on the real PostgreSQL server."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.helpers.cli import run_charter

READS = (
    ("runs", "list"),
    ("stats",),
    ("approvals", "list"),
    ("roles", "list"),
    ("workers", "list"),
    ("killswitch", "status"),
    ("db", "status"),
    ("audit", "verify", "--all"),
)


def _of_run(run_id: str) -> tuple[tuple[str, ...], ...]:
    """The reading commands about one run."""
    return (("runs", "show", run_id), ("events", run_id), ("replay", run_id),
            ("diff", run_id, run_id))  # fmt: skip


def _agent_files(tmp: Path) -> None:
    (tmp / "prompt.md").write_text("Answer.")
    (tmp / "agent.yaml").write_text(
        "agent:\n  name: a\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: [{content: done}]}\n"
    )


def _one_run(tmp: Path, db: str) -> str:
    _agent_files(tmp)
    ran = run_charter(tmp, "run", "agent.yaml", "--input", "hi", "--db", db)
    assert ran.returncode == 0, ran.stderr
    return _run_ids(db)[0]


def _run_ids(db: str) -> list[str]:
    if db.startswith("sqlite:///"):  # the last writable connection to close removes the WAL
        with contextlib.closing(sqlite3.connect(db.removeprefix("sqlite:///"))) as conn:
            return [r[0] for r in conn.execute("SELECT run_id FROM runs")]
    with psycopg.connect(db) as pg:
        return [str(r[0]) for r in pg.execute("SELECT run_id FROM runs").fetchall()]


@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_reading_a_missing_file_is_an_error_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "typo.db"
    done = run_charter(tmp_path, *command, "--db", f"sqlite:///{missing}")
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith(f"error: database {missing} does not exist")
    assert "charter db migrate" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_reading_another_applications_file_is_refused_and_leaves_it_alone(
    tmp_path: Path,
) -> None:
    other = tmp_path / "shop.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.commit()
    _agent_files(tmp_path)
    before = other.read_bytes()
    for command in (*READS, ("start", "agent.yaml", "--input", "x")):
        done = run_charter(tmp_path, *command, "--db", f"sqlite:///{other}")
        assert done.returncode == 4, (command, done.stderr)
        assert done.stderr.startswith(f"error: {other} is not a Charter database"), done.stderr
    assert other.read_bytes() == before
    with contextlib.closing(sqlite3.connect(other)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert names == ["customers"]


def test_only_writing_commands_create_a_database(tmp_path: Path) -> None:
    fresh = tmp_path / "new.db"
    migrated = run_charter(tmp_path, "db", "migrate", "--db", f"sqlite:///{fresh}")
    assert migrated.returncode == 0, migrated.stderr
    listed = run_charter(tmp_path, "runs", "list", "--db", f"sqlite:///{fresh}")
    assert (listed.returncode, listed.stdout.strip()) == (0, "no runs")


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` and its files truly read-only: a read-only bind mount when running as
    root (root ignores permission bits), else permission bits."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    files = list(folder.iterdir())
    for path in files:
        path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        yield
    finally:
        folder.chmod(stat.S_IRWXU)
        for path in files:
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_a_read_only_archive_can_be_listed_shown_and_verified(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    db = f"sqlite:///{archive / 'charter.db'}"
    run_id = _one_run(tmp_path, db)
    assert sorted(p.name for p in archive.iterdir()) == ["charter.db"]
    with _read_only(archive):
        with pytest.raises(OSError):
            (archive / "probe").write_text("x")  # it really is read-only
        for command in (*READS, *_of_run(run_id)):
            done = run_charter(tmp_path, *command, "--db", db)
            assert done.returncode == 0, (command, done.stderr)
        verified = run_charter(tmp_path, "audit", "verify", run_id, "--db", db)
        assert verified.stdout.startswith("ok: 1 run(s)")
        listed = json.loads(run_charter(tmp_path, "runs", "list", "--json", "--db", db).stdout)
        assert [r["run_id"] for r in listed] == [run_id]
        written = run_charter(tmp_path, "start", "agent.yaml", "--input", "x", "--db", db)
        assert written.returncode == 4 and "read-only" in written.stderr
        assert "Traceback" not in written.stderr


def test_reads_do_not_wait_for_a_writer_holding_the_lock(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'charter.db'}"
    run_id = _one_run(tmp_path, db)
    writer = sqlite3.connect(tmp_path / "charter.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        writer.execute("UPDATE runs SET updated_at = updated_at")
        for command in (*READS, *_of_run(run_id)):
            done = run_charter(tmp_path, *command, "--db", db)
            assert done.returncode == 0, (command, done.stderr)
        listed = json.loads(run_charter(tmp_path, "runs", "list", "--json", "--db", db).stdout)
        assert [r["run_id"] for r in listed] == [run_id]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_reading_an_empty_postgres_schema_is_an_error_and_creates_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    for command in READS:
        done = run_charter(tmp_path, *command, "--db", pg_url)
        assert done.returncode == 4, (command, done.stderr)
        assert "no Charter schema" in done.stderr and "charter db migrate" in done.stderr
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    assert tables == []
    run_id = _one_run(tmp_path, pg_url)
    for command in (*READS, *_of_run(run_id)):
        done = run_charter(tmp_path, *command, "--db", pg_url)
        assert done.returncode == 0, (command, done.stderr)
