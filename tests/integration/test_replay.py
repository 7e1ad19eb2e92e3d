"""Replay, rerun and diff over real runs on real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.cli import run_charter

from charter import Agent, ModelSpec, Runtime, ToolContext, tool
from charter.events import (
    RunStarted,
    ToolCallSucceeded,
)
from charter.policy import PolicySet
from charter.replay import replay_run
from charter.rerun import RerunChanges, Simulators, rerun
from charter.tools import ask_principal

EXECUTED: list[dict[str, Any]] = []


@tool(effect="read")
def find_order(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "total": 80.0}


@tool(effect="write", owner="billing")
def credit(ctx: ToolContext, order_id: str, amount: float) -> dict[str, Any]:
    """Credit a customer."""
    EXECUTED.append({"order_id": order_id, "amount": amount})
    return {"credited": amount, "key": ctx.idempotency_key}


SCRIPT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
    {
        "tool_calls": [
            {"name": "find_order", "arguments": {"order_id": "7"}},
            {"name": "credit", "arguments": "{not json"},
        ]
    },
    {"tool_calls": [{"name": "credit", "arguments": {"order_id": "7", "amount": 20}}]},
    {"content": "Credited 20.00 on order 7."},
]
POLICY = {
    "policy": {
        "name": "credits",
        "rules": [
            {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
            {"id": "small", "when": {"tool": "credit", "args": {"amount": {"lte": 50}}},
             "then": "allow"},
        ],
    }
}  # fmt: skip


def _agent(script: list[dict[str, Any]] = SCRIPT, tools: list[Any] | None = None) -> Agent:
    return Agent(
        name="crediter",
        instructions="Credit customers when asked.",
        model=ModelSpec(provider="scripted", name="script-a", script=script),
        tools=tools if tools is not None else [find_order, credit, ask_principal],
        policy=PolicySet.from_dict(POLICY),
    )


async def _recorded_run(rt: Runtime) -> str:
    """A run that asks, waits, gets a reply, is rejected once, reads and writes, succeeds."""
    run_id = await rt.start(_agent(), "Please credit my order.", tenant="acme", principal="ann")
    await rt.work(run_id=run_id)
    await rt.send(run_id, "Order 7, please.")
    await rt.work(run_id=run_id)
    return run_id


def test_replay_of_a_real_run_is_identical_on_both_stores(store_url: str) -> None:
    EXECUTED.clear()

    async def main() -> None:
        async with Runtime.open(store_url) as rt:
            run_id = await _recorded_run(rt)
            assert (await rt.get_run(run_id)).status == "succeeded"
            report = await replay_run(rt.store, run_id)
            assert report.identical, report.divergence
            assert report.events == report.replayed == len(await rt.events(run_id))
            assert report.drives == 2  # the first claim, then the one the reply woke
        assert len(EXECUTED) == 1  # the replay called no tool

    asyncio.run(main())


def _tamper(db_path: Path, run_id: str, kind: str, edit: Any) -> int:
    with sqlite3.connect(db_path) as conn:
        seq, payload = conn.execute(
            "SELECT seq, payload FROM events WHERE run_id = ? AND type = ? ORDER BY seq LIMIT 1",
            (run_id, kind),
        ).fetchone()
        body = json.loads(payload)
        edit(body)
        conn.execute(
            "UPDATE event_log SET payload = ?"
            " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) AND seq = ?",
            (json.dumps(body), run_id, seq),
        )
    return int(seq)


@pytest.mark.replay_exempt("tampers with an event of the log")
def test_a_tampered_log_diverges_at_the_tampered_event(
    db_url: str, db_path: Path, tmp_path: Path
) -> None:
    async def record() -> str:
        async with Runtime.open(db_url) as rt:
            return await _recorded_run(rt)

    run_id = asyncio.run(record())
    seq = _tamper(
        db_path, run_id, "policy_evaluated", lambda b: b.update(reason="edited afterwards")
    )

    async def check() -> None:
        async with Runtime.open(db_url) as rt:
            report = await replay_run(rt.store, run_id)
            assert report.divergence is not None and report.divergence.seq == seq
            assert report.divergence.original is not None
            assert report.divergence.replayed is not None
            assert report.divergence.original["reason"] == "edited afterwards"
            assert report.divergence.replayed["reason"] != "edited afterwards"

    asyncio.run(check())
    result = run_charter(tmp_path, "replay", run_id, "--db", db_url)
    assert result.returncode == 1, result.stderr
    assert f"DIVERGED at seq {seq}" in result.stdout
    assert "edited afterwards" in result.stdout


OTHER_SCRIPT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order, again?"}}]},
    {"tool_calls": [{"name": "find_order", "arguments": {"order_id": "7"}}]},
    {"tool_calls": [{"name": "credit", "arguments": {"order_id": "7", "amount": 20}},
                    {"name": "credit", "arguments": {"order_id": "7", "amount": 5}}]},
    {"content": "Credited 25.00 on order 7."},
]  # fmt: skip


def test_a_rerun_with_another_model_never_executes_writes_and_is_marked(
    db_url: str, tmp_path: Path
) -> None:
    EXECUTED.clear()
    sims = Simulators()
    sims.register("credit")(lambda args: {"credited": args["amount"], "simulated": True})

    async def main() -> tuple[str, str]:
        async with Runtime.open(db_url) as rt:
            original = await _recorded_run(rt)
            assert len(EXECUTED) == 1
            changes = RerunChanges(agent=_agent(OTHER_SCRIPT))
            stopped = await rerun(rt, original, changes=changes)
            assert stopped.status == "failed"
            assert stopped.reason is not None and "unrecorded call: credit" in stopped.reason
            done = await rerun(rt, original, changes=changes, simulators=sims)
            assert done.status == "succeeded"
            events = await rt.events(done.run_id)
            started = events[0].body
            assert isinstance(started, RunStarted) and started.rerun_of == original
            served = [
                (e.body.tool, e.body.simulated)
                for e in events
                if isinstance(e.body, ToolCallSucceeded) and e.body.tool != "ask_principal"
            ]
            assert served == [
                ("find_order", "recording"),
                ("credit", "recording"),
                ("credit", "simulator"),
            ]
            return original, done.run_id

    original, again = asyncio.run(main())
    assert len(EXECUTED) == 1  # neither rerun ran the write for real

    result = run_charter(tmp_path, "diff", original, again, "--db", db_url)
    assert result.returncode == 0, result.stderr
    assert "! rerun_of   -" in result.stdout
    assert "credit ok [simulated: simulator]" in result.stdout
    assert "script-a" in result.stdout


def test_rerun_bad_input_gives_one_message_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    async def record() -> str:
        async with Runtime.open(db_url) as rt:
            return await _recorded_run(rt)

    run_id = asyncio.run(record())
    (tmp_path / "prompt.md").write_text("Be brief.")
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: crediter\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: [{content: hi}]}\n"
        '  tools: ["tests.integration.test_replay:find_order"]\n'
    )
    missing = run_charter(tmp_path, "rerun", run_id, "--agent", "agent.yaml", "--db", db_url)
    assert missing.returncode == 2, missing.stderr
    assert "has no tool ask_principal, credit" in missing.stderr
    unknown = run_charter(tmp_path, "replay", "run_nope", "--db", db_url)
    assert unknown.returncode == 3
    assert "run_nope" in unknown.stderr
    unknown = run_charter(tmp_path, "rerun", "run_nope", "--model", "x", "--db", db_url)
    assert unknown.returncode == 3
    listed = run_charter(tmp_path, "runs", "list", "--json", "--db", db_url)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
