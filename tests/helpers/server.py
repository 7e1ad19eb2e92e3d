"""A real `charter serve` (and `charter worker`) in child processes, for the API tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

HELPER_SCRIPT = [
    {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
    {"content": "Thanks, all done."},
]
"""The scripted answers of the `helper` agent: ask the principal, then finish."""


def write_helper_agent(directory: Path) -> Path:
    """``agent.yaml`` (agent ``helper``, scripted) in ``directory``: it asks its principal
    which order, then finishes; ten runs' worth of answers."""
    (directory / "prompt.md").write_text("You help.")
    (directory / "script.json").write_text(json.dumps(HELPER_SCRIPT * 10))
    path = directory / "agent.yaml"
    path.write_text(
        "agent:\n  name: helper\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["charter.tools:ask_principal"]\n'
    )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for name in ("CHARTER_DB", "CHARTER_AUDIT_KEY", "CHARTER_AUDIT_KEY_FILE"):
        env.pop(name, None)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


@contextmanager
def serving(
    cwd: Path,
    db_url: str,
    *agent_files: str,
    options: Sequence[str] = (),
    config: str | None = None,
) -> Iterator[str]:
    """`charter serve` on a free port (with more ``options``, and ``--config``); yields its
    base URL once /v1/health answers."""
    port = _free_port()
    agents = [arg for path in agent_files for arg in ("--agent", path)]
    args = ["serve", "--db", db_url, "--port", str(port), *agents, *options]
    args += [] if config is None else ["--config", config]
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", *args], cwd=cwd, env=_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"charter serve exited: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "charter serve did not answer /v1/health"
            time.sleep(0.1)
        yield base
    finally:
        _stop(proc)


@contextmanager
def working(cwd: Path, db_url: str) -> Iterator[None]:
    """A `charter worker` working runs until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", "worker", "--db", db_url], cwd=cwd, env=_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        _stop(proc)


def wait_for(client: httpx.Client, path: str, *, status: str, timeout_s: float = 60) -> dict:  # type: ignore[type-arg]
    """Poll a run until it has ``status`` (or fail, showing where it stands)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.get(path).json()
        if run.get("status") == status:
            return run  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"run never reached {status}: {run}"
        time.sleep(0.1)
