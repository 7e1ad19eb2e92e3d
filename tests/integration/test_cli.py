"""The `charter` command, run as a real process: outputs, exit codes, and errors on bad input."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from tests.helpers.cli import run_charter

from charter.cli import cli

SCRIPT = [
    {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
    {"content": "Thanks, all done."},
]


charter = run_charter


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    (tmp_path / "prompt.md").write_text("You help.")
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent:\n  name: helper\n  version: '2'\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["charter.tools:ask_principal"]\n'
    )
    return path


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("command", _commands(cli), ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    leaf = cli
    for name in command:
        assert isinstance(leaf, click.Group)
        leaf = leaf.commands[name]
    # decisions are computed from the files alone; evals make databases of their own
    offline = command[0] in ("policy", "eval", "gate")
    if not isinstance(leaf, click.Group) and not offline:
        assert ("--from" in result.output) if command == ("db", "copy") else "--db" in result.output


def test_run_waits_then_send_and_worker_finish_it(tmp_path: Path, agent: Path) -> None:
    ran = charter(tmp_path, "run", "agent.yaml", "--input", "help me", "--tenant", "acme")
    assert ran.returncode == 0, ran.stderr
    run_id, status = ran.stdout.split()[:2]
    assert status == "waiting:"  # "run_… waiting: message"
    sent = charter(tmp_path, "send", run_id, "order 42")
    assert sent.returncode == 0
    worked = charter(tmp_path, "worker", "--until-idle")
    assert worked.returncode == 0, worked.stderr
    shown = json.loads(charter(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded"
    assert shown["tenant"] == "acme"
    assert shown["state"]["output"] == "Thanks, all done."
    events = json.loads(charter(tmp_path, "events", run_id, "--json").stdout)
    types = [e["type"] for e in events]
    assert types[:2] == ["run_started", "message_received"]
    assert "run_waiting" in types and "run_resumed" in types and types[-1] == "run_finished"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    timeline = charter(tmp_path, "events", run_id).stdout
    assert "run_waiting" in timeline and "SEQ" in timeline
    listed = json.loads(charter(tmp_path, "runs", "list", "--status", "succeeded", "--json").stdout)
    assert [r["run_id"] for r in listed] == [run_id]


def test_start_enqueues_and_worker_claims(tmp_path: Path, agent: Path) -> None:
    started = charter(tmp_path, "start", "agent.yaml", "--input", "hi", "--json")
    run_id = json.loads(started.stdout)["run_id"]
    assert json.loads(charter(tmp_path, "runs", "show", run_id, "--json").stdout)["status"] == (
        "queued"
    )
    assert charter(tmp_path, "worker", "--until-idle").returncode == 0
    assert json.loads(charter(tmp_path, "runs", "show", run_id, "--json").stdout)["status"] == (
        "waiting"
    )


def test_db_option_and_environment_variable(tmp_path: Path, agent: Path) -> None:
    other = tmp_path / "other.db"
    ran = charter(tmp_path, "start", "agent.yaml", "--input", "hi", "--db", f"sqlite:///{other}")
    assert ran.returncode == 0 and other.exists()
    assert not (tmp_path / "charter.db").exists()


@pytest.mark.replay_exempt("alters an event of the log")
def test_audit_verify_names_the_first_altered_event(tmp_path: Path, agent: Path) -> None:
    run_id = charter(tmp_path, "run", "agent.yaml", "--input", "hi").stdout.split()[0]
    assert charter(tmp_path, "audit", "verify", "--all").returncode == 0
    with sqlite3.connect(tmp_path / "charter.db") as conn:
        conn.execute(
            "UPDATE event_log SET payload = replace(payload, 'Which order?', 'Which card?')"
            " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) AND seq = 3",
            (run_id,),
        )
    conn.close()
    bad = charter(tmp_path, "audit", "verify", run_id)
    assert bad.returncode == 1
    assert f"BROKEN {run_id} at event 3" in bad.stdout
    report = json.loads(charter(tmp_path, "audit", "verify", "--all", "--json").stdout)
    assert report["ok"] is False and report["breaks"][0]["seq"] == 3


def test_tools_list_shows_the_registry(tmp_path: Path, agent: Path) -> None:
    listed = json.loads(
        charter(tmp_path, "tools", "list", "--agent", "agent.yaml", "--json").stdout
    )
    assert [t["name"] for t in listed] == ["ask_principal"]
    assert {"effect", "risk", "owner", "idempotent", "input_schema"} <= set(listed[0])


def _assert_clean_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")
    for word in words:
        assert word in done.stderr


def test_malformed_agent_files(tmp_path: Path, agent: Path) -> None:
    text = agent.read_text()
    agent.write_text(text.replace("  version: '2'\n", "  version: '2'\n  colour: blue\n"))
    _assert_clean_error(charter(tmp_path, "run", "agent.yaml", "--input", "x"), 2, "colour")
    agent.write_text(text.replace("charter.tools:ask_principal", "nowhere.tools:thing"))
    _assert_clean_error(charter(tmp_path, "run", "agent.yaml", "--input", "x"), 2, "nowhere")
    agent.write_text(text.replace("charter.tools:ask_principal", "charter.tools:missing"))
    _assert_clean_error(charter(tmp_path, "run", "agent.yaml", "--input", "x"), 2, "missing")
    agent.write_text(text.replace("  instructions: prompt.md\n", ""))
    _assert_clean_error(charter(tmp_path, "run", "agent.yaml", "--input", "x"), 2, "instructions")
    _assert_clean_error(charter(tmp_path, "run", "nope.yaml", "--input", "x"), 2, "nope.yaml")
    assert not (tmp_path / "charter.db").exists() or _run_count(tmp_path) == 0


def _run_count(tmp: Path) -> int:
    with sqlite3.connect(tmp / "charter.db") as conn:
        count = int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
    conn.close()
    return count


def test_unknown_run_id(tmp_path: Path, agent: Path) -> None:
    assert charter(tmp_path, "db", "migrate").returncode == 0  # reading never creates it
    for args in (["runs", "show", "run_nope"], ["events", "run_nope"], ["send", "run_nope", "x"]):
        _assert_clean_error(charter(tmp_path, *args), 3, "run_nope")


def test_send_to_a_finished_run(tmp_path: Path, agent: Path) -> None:
    (tmp_path / "script.json").write_text(json.dumps([{"content": "done"}]))
    run_id = charter(tmp_path, "run", "agent.yaml", "--input", "x").stdout.split()[0]
    _assert_clean_error(charter(tmp_path, "send", run_id, "more"), 6, "finished")


@pytest.mark.replay_exempt("gives the database a schema version from the future")
def test_database_from_a_newer_version_is_refused(tmp_path: Path, agent: Path) -> None:
    assert charter(tmp_path, "start", "agent.yaml", "--input", "x").returncode == 0
    before = (tmp_path / "charter.db").read_bytes()
    with sqlite3.connect(tmp_path / "charter.db") as conn:
        conn.execute("INSERT INTO charter_migrations VALUES (99, 0)")
    conn.close()
    _assert_clean_error(charter(tmp_path, "runs", "list"), 4, "schema version 99", "upgrade")
    assert len((tmp_path / "charter.db").read_bytes()) >= len(before)
    assert _run_count(tmp_path) == 1


def test_locked_database(tmp_path: Path, agent: Path) -> None:
    assert charter(tmp_path, "start", "agent.yaml", "--input", "x").returncode == 0
    holder = sqlite3.connect(tmp_path / "charter.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        done = charter(tmp_path, "start", "agent.yaml", "--input", "y")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _assert_clean_error(done, 4, "locked")
    assert _run_count(tmp_path) == 1


def test_read_only_database(tmp_path: Path, agent: Path) -> None:
    assert charter(tmp_path, "start", "agent.yaml", "--input", "x").returncode == 0
    db = tmp_path / "charter.db"
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.fail("running as root needs chattr to make a file read-only")
        subprocess.run(["chattr", "+i", str(db)], check=True)
    else:
        db.chmod(0o444)
    try:
        done = charter(tmp_path, "start", "agent.yaml", "--input", "y")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)], check=True)
        db.chmod(0o644)
    _assert_clean_error(done, 4, "read-only")
    assert _run_count(tmp_path) == 1


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = charter(tmp_path, "runs", "show", "run_nope", "--debug")
    assert done.returncode != 0
    assert "Traceback" in done.stderr


def test_worker_waits_out_a_locked_database_then_works(tmp_path: Path, agent: Path) -> None:
    run_id = json.loads(charter(tmp_path, "start", "agent.yaml", "--input", "x", "--json").stdout)[
        "run_id"
    ]
    holder = sqlite3.connect(tmp_path / "charter.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "charter", "worker", "--until-idle", "--poll-seconds", "0.05"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("retrying in" in line for line in lines):  # it met the lock, and waits
            assert worker.poll() is None, "the worker gave up on a locked database"
            assert time.monotonic() < deadline, "the worker never reported the locked database"
            time.sleep(0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    worker.wait(timeout=60)
    reader.join(timeout=10)
    worker.stderr.close()
    stderr = "".join(lines)
    assert worker.returncode == 0, stderr
    assert "locked" in stderr
    shown = json.loads(charter(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "waiting"
