"""The `charter` command against the real PostgreSQL server: runs, copy, workers, bad URLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter

SCRIPT = [
    {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
    {"content": "Thanks, all done."},
]


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    (tmp_path / "prompt.md").write_text("You help.")
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent:\n  name: helper\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["charter.tools:ask_principal"]\n'
    )
    return path


def test_a_run_waits_and_resumes_on_postgres(tmp_path: Path, agent: Path, pg_url: str) -> None:
    ran = run_charter(tmp_path, "run", "agent.yaml", "--input", "hi", "--db", pg_url)
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split()[0]
    assert run_charter(tmp_path, "send", run_id, "order 7", "--db", pg_url).returncode == 0
    assert run_charter(tmp_path, "worker", "--until-idle", "--db", pg_url).returncode == 0
    shown = json.loads(
        run_charter(tmp_path, "runs", "show", run_id, "--db", pg_url, "--json").stdout
    )
    assert shown["status"] == "succeeded"
    assert run_charter(tmp_path, "audit", "verify", "--all", "--db", pg_url).returncode == 0


def test_db_copy_from_sqlite_to_postgres_loses_no_event(
    tmp_path: Path, agent: Path, pg_url: str
) -> None:
    sqlite_url = f"sqlite:///{tmp_path}/charter.db"
    for text in ("one", "two", "three"):
        assert run_charter(tmp_path, "run", "agent.yaml", "--input", text).returncode == 0
    first = json.loads(run_charter(tmp_path, "runs", "list", "--json").stdout)[0]["run_id"]
    assert run_charter(tmp_path, "send", first, "a reply").returncode == 0
    assert run_charter(tmp_path, "worker", "--until-idle").returncode == 0

    copied = run_charter(tmp_path, "db", "copy", "--from", sqlite_url, "--to", pg_url, "--json")
    assert copied.returncode == 0, copied.stderr
    assert json.loads(copied.stdout)["runs"] == 3

    source = json.loads(run_charter(tmp_path, "events", first, "--json").stdout)
    target = json.loads(run_charter(tmp_path, "events", first, "--db", pg_url, "--json").stdout)
    assert target == source
    assert run_charter(tmp_path, "audit", "verify", "--all", "--db", pg_url).returncode == 0
    status = json.loads(run_charter(tmp_path, "db", "status", "--db", pg_url, "--json").stdout)
    assert status["runs"] == {"succeeded": 1, "waiting": 2}

    again = run_charter(tmp_path, "db", "copy", "--from", sqlite_url, "--to", pg_url, "--json")
    report = json.loads(again.stdout)
    assert (report["runs"], report["skipped"], report["events"]) == (0, 3, 0)
    assert set(report["tables"].values()) == {0}  # every row already there


def test_workers_list_shows_a_live_worker(tmp_path: Path, pg_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "charter", "worker", "--db", pg_url, "--lease-seconds", "3"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            listed = run_charter(tmp_path, "workers", "list", "--db", pg_url, "--json")
            workers = json.loads(listed.stdout) if listed.returncode == 0 else []
            if workers or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [w["pid"] for w in workers] == [worker.pid]
        assert workers[0]["leases"] == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0
    after = json.loads(run_charter(tmp_path, "workers", "list", "--db", pg_url, "--json").stdout)
    assert after == []  # a worker that stops cleanly removes itself


def test_unreachable_server_is_one_clear_line_without_the_password(tmp_path: Path) -> None:
    done = run_charter(
        tmp_path, "runs", "list", "--db", "postgresql://ann:s3cret@127.0.0.1:1/charter"
    )
    assert done.returncode == 4
    assert done.stderr.startswith("error: ") and "cannot connect" in done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
