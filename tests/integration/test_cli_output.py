"""Output a person or a script can rely on: NO_COLOR, tables that fit the terminal, the --db
in effect in the help, and instructions written inline in an agent file."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import run_charter

ROOT = Path(__file__).resolve().parents[2]
AGENT = (
    "agent:\n  name: helper\n  instructions: prompt.md\n"
    "  model: {provider: scripted, script: [{content: done}]}\n"
)


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for name in ("CHARTER_DB", "NO_COLOR", "COLUMNS", "FORCE_COLOR"):
        env.pop(name, None)
    return {**env, **extra}


def _in_terminal(cwd: Path, env: dict[str, str], *args: str) -> str:
    """What ``charter ARGS`` writes to a terminal (a pseudo-terminal as its stdout)."""
    main, child = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "charter", *args],
            cwd=cwd,
            env=env,
            stdout=child,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
        os.close(child)
        child = -1
        assert done.returncode == 0, done.stderr
        chunks = []
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # the terminal's other end is closed: all was read
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode()
    finally:
        os.close(main)
        if child >= 0:
            os.close(child)


def test_no_color_turns_colour_off_in_a_terminal(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "prompt.md").write_text("You help.")
    (tmp_path / "agent.yaml").write_text(AGENT)
    done = run_charter(tmp_path, "run", "agent.yaml", "--input", "hi", "--json", "--db", db_url)
    run_id = json.loads(done.stdout)["run_id"]
    coloured = _in_terminal(tmp_path, _env(), "events", run_id, "--db", db_url)
    assert "\x1b[" in coloured  # a terminal gets colour by default
    plain = _in_terminal(tmp_path, _env(NO_COLOR="1"), "events", run_id, "--db", db_url)
    assert "\x1b[" not in plain
    assert "run_finished" in plain


def test_who_can_wraps_its_table_to_the_terminal_width(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("evals", "redteam"))  # fmt: skip
    args = ("policy", "who-can", "refund", "--agents-dir", "examples")
    piped = subprocess.run(
        [sys.executable, "-m", "charter", *args],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert max(len(line) for line in piped.stdout.splitlines()) > 100  # one row per line
    narrow = subprocess.run(
        [sys.executable, "-m", "charter", *args],
        cwd=tmp_path,
        env=_env(COLUMNS="100"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines), "\n".join(lines)
    assert lines[0].split()[:4] == ["AGENT", "TOOL", "OUTCOME", "RULE"]
    assert len(lines) > len(piped.stdout.splitlines())  # rows wrapped onto more lines
    assert sorted(narrow.stdout.split()) == sorted(piped.stdout.split())  # every word kept
    terminal = _in_terminal(tmp_path, _env(COLUMNS="90"), *args)
    assert all(len(line) <= 90 for line in terminal.splitlines())


def test_db_help_shows_the_database_in_effect(tmp_path: Path) -> None:
    def help_text(**env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "charter", "runs", "list", "--help"],
            cwd=tmp_path,
            env=_env(COLUMNS="200", **env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())

    assert "[default: sqlite:///charter.db]" in help_text()
    shown = help_text(CHARTER_DB="postgresql://ann:s3cret@db.internal:5432/charter")
    assert "postgresql://ann:***@db.internal:5432/charter (from CHARTER_DB)" in shown
    assert "s3cret" not in shown


def test_instructions_may_be_written_inline(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: helper\n  instructions: |\n    You help customers.\n"
        "    Answer in one sentence.\n"
        "  model: {provider: scripted, script: [{content: done}]}\n"
    )
    done = run_charter(tmp_path, "run", "agent.yaml", "--input", "hi", "--json", "--db", db_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    (tmp_path / "typo.yaml").write_text(
        "agent:\n  name: helper\n  instructions: promt.md\n"
        "  model: {provider: scripted, script: [{content: done}]}\n"
    )
    missing = run_charter(tmp_path, "run", "typo.yaml", "--input", "hi", "--db", db_url)
    assert missing.returncode == 2
    assert "instructions file 'promt.md' cannot be read" in missing.stderr
    assert "instructions: |" in missing.stderr  # the hint shows the inline form
