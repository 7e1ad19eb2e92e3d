"""The openai provider against a real OpenAI-compatible server that Charter did not write.

The server is cyllama's (``python -m cyllama.llama.server``, llama.cpp underneath, from the
``local`` extra that ``dev`` installs), started as a child process on a free 127.0.0.1 port and
serving the cached local model (``scripts/get-local-model``, run by ``make test``). It behaves
like many small servers: it ignores ``response_format`` and ``tools``, always says
``finish_reason: "stop"``, and counts tokens itself. The model is weak, so the checks are
about structure, never wording: the run ends in a final status without crashing, every answer
is either used or refused with a code, and every attempt's tokens reach the run's counters.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from charter import Agent, Budgets, ModelSpec, Runtime, tool
from charter._engine.state import RunState
from charter.events import Event, ModelCallFailed, ModelResponded, RunFinished
from charter.models._local_engine import model_dir

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
REFUSALS = {"model_bad_response", "model_empty_answer", "model_truncated"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the server answers ``GET /v1/models`` (loading the model takes seconds)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited ({server.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise AssertionError(f"the server did not come up:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = model_dir() / MODEL_FILE
    assert model.is_file(), f"{model} is missing: run scripts/get-local-model"
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "cyllama.llama.server",
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--server-type",
        "python",
        "--ctx-size",
        "4096",
    ]
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _ready(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look up an order by its id."""
    return {"order_id": order_id, "status": "shipped"}


def _run(url: str, agent: Agent) -> tuple[RunState, list[Event], list[object]]:
    async def main() -> tuple[RunState, list[Event], list[object]]:
        async with Runtime.open(url) as rt:
            record = await rt.run(agent, "Where is order A1?")
            state = RunState.model_validate((await rt.get_run(record.run_id)).state)
            return state, await rt.events(record.run_id), list(await rt.verify())

    return asyncio.run(main())


def _agent(base_url: str, tool_calling: str) -> Agent:
    spec = ModelSpec.model_validate(
        {
            "provider": "openai",
            "name": "qwen2.5-coder-0.5b",
            "base_url": base_url,
            "api_key_env": "CHARTER_TEST_UNSET_KEY",
            "tool_calling": tool_calling,
            "max_output_tokens": 64,
            "max_attempts": 2,
            "input_usd_per_mtok": 1.0,
            "output_usd_per_mtok": 2.0,
        }
    )
    return Agent(
        name="orders",
        instructions="You help customers with their orders.",
        model=spec,
        tools=[lookup],
        budgets=Budgets(max_steps=3, max_tool_calls=3),
    )


@pytest.mark.parametrize("tool_calling", ["json", "native"])
def test_a_run_against_a_real_server_ends_cleanly_and_counts_every_attempt(
    server_url: str, db_url: str, tool_calling: str
) -> None:
    state, events, problems = _run(db_url, _agent(server_url, tool_calling))
    assert problems == []  # the chain verifies
    bodies = [e.body for e in events]
    failures = [b.error.code for b in bodies if isinstance(b, ModelCallFailed)]
    # Ends cleanly: answered, or escalated after refused answers; "failed" only for an answer
    # that is not JSON at temperature 0 (asking again would get the same text).
    assert state.status in ("succeeded", "escalated") or (
        state.status == "failed" and failures[-1:] == ["model_bad_response"]
    )
    model_events = [b for b in bodies if isinstance(b, ModelResponded | ModelCallFailed)]
    assert model_events
    for b in model_events:
        assert b.endpoint == server_url
        assert all(r.code in REFUSALS and r.usage.input_tokens > 0 for r in b.rejected)
        if isinstance(b, ModelResponded):
            assert b.finish_reason == "stop" and b.usage.input_tokens > 0
            assert b.attempts == len(b.rejected) + 1
            assert b.content is None or b.content.strip() or b.tool_calls
        else:
            assert b.error.code in REFUSALS  # the server answered: it was refused, not down
            assert b.usage.total == sum(r.usage.total for r in b.rejected) > 0
    assert state.tokens == sum(b.usage.total for b in model_events)
    assert state.cost_usd == pytest.approx(sum(b.cost_usd for b in model_events))
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    if finished.status == "succeeded":
        assert finished.output and finished.output.strip()
    json.dumps([e.body.model_dump(mode="json") for e in events])  # plain values in the log
