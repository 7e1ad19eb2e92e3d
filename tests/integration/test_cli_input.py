"""Inputs a script can rely on: --input-file and stdin, a size limit, and text that is not
UTF-8 refused with one line (exit 2) before anything is stored."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter

from charter import Agent, ModelSpec, Runtime
from charter.errors import InputError
from charter.events import MessageReceived
from charter.tools import ask_principal

SCRIPT = [
    {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
    {"content": "Thanks, all done."},
]
BAD = os.fsdecode(b"caf\xe9 \xff")  # Latin-1 bytes as they reach argv: not UTF-8


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


def _charter_stdin(cwd: Path, stdin: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("CHARTER_DB", None)
    env.pop("CHARTER_MAX_INPUT_BYTES", None)
    done = subprocess.run(
        [sys.executable, "-m", "charter", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def _inputs(url: str) -> list[str]:
    """Each stored run's input, oldest first (read through the library)."""

    async def main() -> list[str]:
        async with Runtime.open(url) as rt:
            runs = await rt.list_runs()
            return [str(getattr((await rt.events(r.run_id))[0].body, "input", "")) for r in runs]

    return asyncio.run(main())[::-1]


def _messages(url: str, run_id: str) -> list[str]:
    async def main() -> list[str]:
        async with Runtime.open(url) as rt:
            events = await rt.events(run_id)
            inbox = await rt.store.pending_messages(run_id)
        texts = [e.body.text for e in events if isinstance(e.body, MessageReceived)]
        return texts + [m.text for m in inbox]

    return asyncio.run(main())


def _one_error_line(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), done.stderr
    assert all(line.startswith(("error: ", "  hint: ")) for line in lines), done.stderr
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_input_that_is_not_utf8_is_refused_and_nothing_is_stored(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    for command in ("run", "start"):
        done = run_charter(tmp_path, command, str(agent), "--input", BAD, "--db", store_url)
        _one_error_line(done, "--input", "UTF-8")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    done = run_charter(tmp_path, "run", str(agent), "--input-file", "latin1.txt",
                       "--db", store_url)  # fmt: skip
    _one_error_line(done, "latin1.txt", "UTF-8")
    piped = _charter_stdin(tmp_path, b"caf\xe9", "start", str(agent), "--input-file", "-",
                           "--db", store_url)  # fmt: skip
    _one_error_line(piped, "stdin", "UTF-8")
    assert _inputs(store_url) == []


def test_a_message_that_is_not_utf8_is_refused_and_not_delivered(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    started = run_charter(tmp_path, "run", str(agent), "--input", "hi", "--json",
                          "--db", store_url)  # fmt: skip
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    done = run_charter(tmp_path, "send", run_id, BAD, "--db", store_url)
    _one_error_line(done, "UTF-8")
    assert _messages(store_url, run_id) == ["hi"]  # nothing delivered
    sent = _charter_stdin(tmp_path, "Order 7, s'il vous plaît".encode(), "send", run_id,
                          "--input-file", "-", "--db", store_url)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert _messages(store_url, run_id) == ["hi", "Order 7, s'il vous plaît"]


def test_agent_and_instruction_files_that_are_not_utf8_are_one_error(
    tmp_path: Path, agent: Path, db_url: str
) -> None:
    raw = agent.read_bytes()
    agent.write_bytes(raw.replace(b"name: helper", b"name: h\xe9lper"))
    done = run_charter(tmp_path, "run", str(agent), "--input", "hi", "--db", db_url)
    _one_error_line(done, "agent.yaml", "UTF-8")
    agent.write_bytes(raw)
    (tmp_path / "prompt.md").write_bytes(b"Vous aidez les clients \xe0 Paris.")
    done = run_charter(tmp_path, "start", str(agent), "--input", "hi", "--db", db_url)
    _one_error_line(done, "prompt.md", "UTF-8")
    assert _inputs(db_url) == []


def test_input_from_a_file_or_stdin_and_the_size_limit(
    tmp_path: Path, agent: Path, db_url: str
) -> None:
    task = "Where is my order 1042?\nIt was due on Monday. Ünïcödé is fine.\n"
    (tmp_path / "task.txt").write_text(task, encoding="utf-8")
    done = run_charter(tmp_path, "start", str(agent), "--input-file", "task.txt", "--json",
                       "--db", db_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    piped = _charter_stdin(tmp_path, task.encode(), "run", str(agent), "--input-file", "-",
                           "--json", "--db", db_url)  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert _inputs(db_url) == [task, task]

    both = run_charter(tmp_path, "start", str(agent), "--input", "x", "--input-file", "task.txt",
                       "--db", db_url)  # fmt: skip
    _one_error_line(both, "--input", "--input-file")
    neither = run_charter(tmp_path, "start", str(agent), "--db", db_url)
    _one_error_line(neither, "--input", "--input-file")

    big = "x" * 2000
    over = run_charter(tmp_path, "start", str(agent), "--input", big, "--max-input-bytes",
                       "1000", "--db", db_url)  # fmt: skip
    _one_error_line(over, "2000 bytes", "1000", "--max-input-bytes")
    env_limit = _charter_stdin(tmp_path, big.encode(), "start", str(agent), "--input-file",
                               "-", "--db", db_url)  # fmt: skip
    assert env_limit.returncode == 0, env_limit.stderr  # under the default (1 MiB)
    (tmp_path / "huge.txt").write_text("y" * (1024 * 1024 + 1))
    huge = run_charter(tmp_path, "start", str(agent), "--input-file", "huge.txt",
                       "--db", db_url)  # fmt: skip
    _one_error_line(huge, "1048577 bytes", "1048576")
    assert _inputs(db_url) == [task, task, big]


def test_the_library_refuses_the_same_inputs(db_url: str) -> None:
    agent = Agent(
        name="helper",
        instructions="You help.",
        model=ModelSpec(provider="scripted", script=SCRIPT),
        tools=[ask_principal],
    )

    async def main() -> None:
        async with Runtime.open(db_url, max_input_bytes=10) as rt:
            with pytest.raises(InputError, match="not UTF-8"):
                await rt.start(agent, "caf\udce9")
            with pytest.raises(InputError, match="the input is 11 bytes; the limit is 10"):
                await rt.start(agent, "x" * 11)
            run_id = await rt.start(agent, "hello")
            with pytest.raises(InputError, match="the message is not UTF-8"):
                await rt.send(run_id, "\udcff")
            assert len(await rt.list_runs()) == 1

    asyncio.run(main())
