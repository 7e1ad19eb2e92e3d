"""`charter runs cancel`, run as a real process: the request, its audit record, the timeline,
replay, and clear errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter as charter

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


def _clean_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")
    for word in words:
        assert word in done.stderr, done.stderr


def test_cancel_a_waiting_run_from_the_command_line(tmp_path: Path, agent: Path) -> None:
    run_id = charter(tmp_path, "run", "agent.yaml", "--input", "hi").stdout.split()[0]
    asked = charter(
        tmp_path, "runs", "cancel", run_id, "--reason", "duplicate ticket", "--as", "lead@acme"
    )
    assert asked.returncode == 0, asked.stderr
    assert f"cancel of {run_id} requested" in asked.stdout

    again = charter(tmp_path, "runs", "cancel", run_id, "--reason", "again", "--json")
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert answer["already_requested"] is True
    assert (answer["requested_by"], answer["reason"]) == ("lead@acme", "duplicate ticket")

    assert charter(tmp_path, "worker", "--until-idle").returncode == 0
    shown = json.loads(charter(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "cancelled"
    timeline = charter(tmp_path, "runs", "show", run_id).stdout
    assert "run finished: cancelled by lead@acme" in timeline
    assert answer["request_id"] in timeline and "duplicate ticket" in timeline
    listed = json.loads(charter(tmp_path, "runs", "list", "--status", "cancelled", "--json").stdout)
    assert [r["run_id"] for r in listed] == [run_id]

    replayed = charter(tmp_path, "replay", run_id)
    assert replayed.returncode == 0, (replayed.stdout, replayed.stderr)
    audit = charter(tmp_path, "audit", "log", "--kind", "cancel_requested", "--json")
    [record] = json.loads(audit.stdout)
    assert (record["run_id"], record["actor"]) == (run_id, "lead@acme")

    # Cancelled already: asking again answers with the request it honoured.
    late = charter(tmp_path, "runs", "cancel", run_id, "--reason", "late")
    assert late.returncode == 0, late.stderr
    assert "already requested" in late.stdout and "was cancelled at" in late.stdout


def test_cancel_errors_are_clear(tmp_path: Path, agent: Path) -> None:
    _clean_error(charter(tmp_path, "runs", "cancel", "run_nope", "--reason", "x"), 3, "run_nope")
    (tmp_path / "script.json").write_text(json.dumps([{"content": "done"}]))
    run_id = charter(tmp_path, "run", "agent.yaml", "--input", "hi").stdout.split()[0]
    _clean_error(
        charter(tmp_path, "runs", "cancel", run_id, "--reason", "x"), 6, "finished (succeeded)"
    )
    missing = charter(tmp_path, "runs", "cancel", run_id)
    assert missing.returncode == 2 and "--reason" in missing.stderr
    _clean_error(charter(tmp_path, "runs", "cancel", run_id, "--reason", " "), 2, "reason")
