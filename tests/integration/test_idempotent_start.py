"""A client that retries a start whose reply it lost gets the same run, not a second one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter

from charter import Agent, ModelSpec, Runtime
from charter.errors import IdempotencyConflictError
from charter.events import RunStarted
from charter.tools import ask_principal


def _agent(version: str = "1") -> Agent:
    return Agent(
        name="helper",
        version=version,
        instructions="You help.",
        model=ModelSpec(provider="scripted", script=[{"content": "done"}]),
        tools=[ask_principal],
    )


def test_a_retried_start_with_the_same_key_returns_the_same_run(store_url: str) -> None:
    async def main() -> None:
        async with Runtime.open(store_url) as rt:
            first = await rt.start(_agent(), "Refund 1042", tenant="acme", idempotency_key="k-1")
            again = await rt.start(_agent(), "Refund 1042", tenant="acme", idempotency_key="k-1")
            assert again == first
            started = (await rt.events(first))[0].body
            assert isinstance(started, RunStarted) and started.idempotency_key == "k-1"
            other_tenant = await rt.start(
                _agent(), "Refund 1042", tenant="globex", idempotency_key="k-1"
            )
            assert other_tenant != first  # keys are unique per tenant
            with pytest.raises(IdempotencyConflictError, match="k-1") as info:
                await rt.start(_agent(), "Refund 1043", tenant="acme", idempotency_key="k-1")
            assert first in info.value.message
            with pytest.raises(IdempotencyConflictError):
                await rt.start(_agent("2"), "Refund 1042", tenant="acme", idempotency_key="k-1")
            unkeyed = await rt.start(_agent(), "Refund 1042", tenant="acme")
            runs = {r.run_id for r in await rt.list_runs()}
            assert runs == {first, other_tenant, unkeyed}

    asyncio.run(main())


def test_concurrent_starts_with_one_key_make_one_run(store_url: str) -> None:
    async def main() -> None:
        async with Runtime.open(store_url) as rt:
            ids = await asyncio.gather(
                *(rt.start(_agent(), "Refund 1042", idempotency_key="same") for _ in range(5))
            )
            assert len(set(ids)) == 1
            assert [r.run_id for r in await rt.list_runs()] == [ids[0]]

    asyncio.run(main())


def test_the_cli_start_takes_an_idempotency_key(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "prompt.md").write_text("You help.")
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: helper\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: [{content: done}]}\n"
    )
    args = ("start", "agent.yaml", "--idempotency-key", "order-1042", "--json", "--db", db_url)
    first = run_charter(tmp_path, *args, "--input", "Refund 1042")
    assert first.returncode == 0, first.stderr
    again = run_charter(tmp_path, *args, "--input", "Refund 1042")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["run_id"] == json.loads(first.stdout)["run_id"]
    assert json.loads(again.stdout)["status"] == "queued"
    worked = run_charter(tmp_path, "worker", "--until-idle", "--db", db_url)
    assert worked.returncode == 0, worked.stderr
    late = run_charter(tmp_path, *args, "--input", "Refund 1042")
    assert json.loads(late.stdout) == {**json.loads(first.stdout), "status": "succeeded"}
    clash = run_charter(tmp_path, *args, "--input", "Refund 1043")
    assert clash.returncode == 11, clash.stderr
    assert clash.stderr.startswith("error: idempotency key 'order-1042'")
    assert "Traceback" not in clash.stderr and clash.stdout == ""
    listed = run_charter(tmp_path, "runs", "list", "--json", "--db", db_url)
    assert len(json.loads(listed.stdout)) == 1
