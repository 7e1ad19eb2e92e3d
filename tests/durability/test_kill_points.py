"""Kill a real worker process with SIGKILL at each named fault point, resume, count effects.

Each test starts refund runs against the simulated billing system (its own SQLite ledger),
starts `charter worker` as a child process that SIGKILLs itself at a fault point, then
starts a second worker. Afterwards every run must have finished, billing's own ledger must
hold exactly one refund per idempotency key, every hash chain must verify, and no step may
have been committed twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter

from charter import Runtime, load_agent
from charter._engine.faults import FAULT_POINTS
from charter.events import ModelResponded, ToolOutcomeUnknown
from charter.testing.systems import Systems

pytestmark = pytest.mark.durability

RUNS = 3
LEASE_S = "0.5"


def _agent_file(tmp: Path, tool: str, args: dict[str, object]) -> Path:
    """An agent whose script looks an order up, makes one write call, then answers."""
    script = [
        {"tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "1001"}}]},
        {"tool_calls": [{"name": tool, "arguments": args}]},
        {"content": "done"},
    ]
    (tmp / "script.json").write_text(json.dumps(script))
    (tmp / "prompt.md").write_text("You resolve support tickets.")
    (tmp / "agent.yaml").write_text(
        "agent:\n"
        "  name: durability\n"
        "  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["charter.demo.tools:lookup_order", "charter.demo.tools:refund",\n'
        '          "charter.demo.tools:update_ticket", "charter.demo.tools:send_email"]\n'
        "  budgets: {max_steps: 6, timeout_seconds: 60}\n"
    )
    return tmp / "agent.yaml"


def _worker(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    db = f"sqlite:///{tmp}/charter.db"
    return run_charter(
        tmp,
        *("worker", "--db", db, "--until-idle", "--concurrency", "1"),
        *("--lease-seconds", LEASE_S, "--poll-seconds", "0.05", *extra),
        timeout=90,
    )


def _start_runs(tmp: Path, agent_file: Path) -> list[str]:
    agent = load_agent(agent_file)

    async def main() -> list[str]:
        async with Runtime.open(f"sqlite:///{tmp}/charter.db") as rt:
            return [
                await rt.start(agent, f"ticket {i}: refund please", tenant="acme")
                for i in range(RUNS)
            ]

    return asyncio.run(main())


def _inspect(tmp: Path, run_ids: list[str]) -> tuple[dict[str, str], list[object], dict[str, list]]:
    async def main() -> tuple[dict[str, str], list[object], dict[str, list]]:
        async with Runtime.open(f"sqlite:///{tmp}/charter.db") as rt:
            statuses = {r: (await rt.get_run(r)).status for r in run_ids}
            breaks = list(await rt.verify())
            events = {r: await rt.events(r) for r in run_ids}
            return statuses, breaks, events

    return asyncio.run(main())


def _systems(tmp: Path, latency_s: float = 0.0) -> Systems:
    systems = Systems(tmp / "charter-demo-systems.db")
    systems.seed()
    if latency_s:
        systems.set_latency(latency_s)
    return systems


def _assert_no_step_twice(events: dict[str, list]) -> None:
    for run_id, evs in events.items():
        steps = Counter(e.body.step for e in evs if isinstance(e.body, ModelResponded))
        assert all(n == 1 for n in steps.values()), f"{run_id} committed a step twice: {steps}"


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_refund_happens_exactly_once_after_sigkill(tmp_path: Path, point: str) -> None:
    """refund is not idempotent but has a reconcile hook: never a second refund."""
    # During the call: billing writes the refund 0.3 s in and answers at 0.6 s; the kill comes
    # at 0.45 s. Whichever side of the write it lands on, the ledger must end with one refund.
    systems = _systems(tmp_path, latency_s=0.6 if point == "during_tool_call" else 0.0)
    agent_file = _agent_file(tmp_path, "refund", {"order_id": "1001", "amount": 12.5})
    run_ids = _start_runs(tmp_path, agent_file)

    killed = _worker(tmp_path, "--fault-point", point, "--fault-delay", "0.45")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _worker(tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    statuses, breaks, events = _inspect(tmp_path, run_ids)
    assert statuses == dict.fromkeys(run_ids, "succeeded")
    assert breaks == []
    _assert_no_step_twice(events)
    counts = systems.ledger_counts()
    keys = {f"{r}:2:call_1_0" for r in run_ids}
    assert {k: counts.get(k, 0) for k in keys} == dict.fromkeys(keys, 1)
    assert sum(counts.values()) == RUNS
    if point in ("after_intent_commit", "during_tool_call", "after_tool_before_commit"):
        first = events[run_ids[0]]
        settled = [e.body for e in first if isinstance(e.body, ToolOutcomeUnknown)]
        assert [s.resolution for s in settled] == ["reconcile"]
    systems.close()


@pytest.mark.parametrize("point", ["after_intent_commit", "after_tool_before_commit"])
def test_idempotent_write_is_called_again_with_the_same_key(tmp_path: Path, point: str) -> None:
    systems = _systems(tmp_path)
    agent_file = _agent_file(
        tmp_path, "update_ticket", {"ticket_id": "T-2001", "status": "pending", "note": "on it"}
    )
    run_ids = _start_runs(tmp_path, agent_file)

    assert _worker(tmp_path, "--fault-point", point).returncode == -signal.SIGKILL
    assert _worker(tmp_path).returncode == 0

    statuses, breaks, events = _inspect(tmp_path, run_ids)
    assert statuses == dict.fromkeys(run_ids, "succeeded")
    assert breaks == []
    first = events[run_ids[0]]
    settled = [e.body for e in first if isinstance(e.body, ToolOutcomeUnknown)]
    assert [s.resolution for s in settled] == ["recall"]
    per_key = Counter(u["idempotency_key"] for u in systems.ticket_updates())
    assert per_key == Counter({f"{r}:2:call_1_0": 1 for r in run_ids})
    systems.close()


def test_non_idempotent_write_without_reconcile_escalates(tmp_path: Path) -> None:
    """send_email cannot say whether it sent: the run escalates instead of sending twice."""
    systems = _systems(tmp_path)
    agent_file = _agent_file(
        tmp_path, "send_email", {"to": "ann@example.com", "subject": "Refund", "body": "Sent."}
    )
    run_ids = _start_runs(tmp_path, agent_file)

    assert _worker(tmp_path, "--fault-point", "after_tool_before_commit").returncode == (
        -signal.SIGKILL
    )
    assert _worker(tmp_path).returncode == 0

    statuses, breaks, events = _inspect(tmp_path, run_ids)
    assert statuses[run_ids[0]] == "escalated"
    assert [statuses[r] for r in run_ids[1:]] == ["succeeded"] * (RUNS - 1)
    assert breaks == []
    emails = Counter(e["idempotency_key"] for e in systems.emails())
    assert emails == Counter({f"{r}:2:call_1_0": 1 for r in run_ids})
    reason = next(e.body.reason for e in events[run_ids[0]] if e.type == "run_finished")
    assert "unknown" in reason and "send_email" in reason
    systems.close()
