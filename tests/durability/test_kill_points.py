"""Kill a real worker process with SIGKILL at each named fault point, resume, count effects.

Each test starts refund runs against the simulated billing system (its own SQLite ledger),
starts `charter worker` as a child process that SIGKILLs itself at a fault point, then
starts a second worker. Afterwards every run must have finished, billing's own ledger must
hold exactly one refund per idempotency key, every hash chain must verify, and no step may
have been committed twice. Each test runs on both backends: Charter's database is a SQLite
file or a PostgreSQL schema (``store_url``); the external systems stay in their own file.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from tests.durability._harness import (
    agent_file,
    assert_no_step_twice,
    inspect,
    run_worker,
    start_runs,
    systems,
    write_key,
)

from charter._engine.faults import FAULT_POINTS
from charter.events import ToolOutcomeUnknown

pytestmark = pytest.mark.durability

RUNS = 3


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_refund_happens_exactly_once_after_sigkill(
    tmp_path: Path, store_url: str, point: str
) -> None:
    """refund is not idempotent but has a reconcile hook: never a second refund."""
    # During the call: billing writes the refund 0.3 s in and answers at 0.6 s; the kill comes
    # at 0.45 s. Whichever side of the write it lands on, the ledger must end with one refund.
    billing = systems(tmp_path, latency_s=0.6 if point == "during_tool_call" else 0.0)
    agent = agent_file(tmp_path, ("refund", {"order_id": "1001", "amount": 12.5}))
    run_ids = start_runs(store_url, agent, RUNS)

    killed = run_worker(tmp_path, store_url, "--fault-point", point, "--fault-delay", "0.45")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_worker(tmp_path, store_url)
    assert resumed.returncode == 0, resumed.stderr

    statuses, breaks, events = inspect(store_url, run_ids)
    assert statuses == dict.fromkeys(run_ids, "succeeded")
    assert breaks == []
    assert_no_step_twice(events)
    counts = billing.ledger_counts()
    keys = {write_key(r, 0) for r in run_ids}
    assert {k: counts.get(k, 0) for k in keys} == dict.fromkeys(keys, 1)
    assert sum(counts.values()) == RUNS
    if point in ("after_intent_commit", "during_tool_call", "after_tool_before_commit"):
        first = events[run_ids[0]]
        settled = [e.body for e in first if isinstance(e.body, ToolOutcomeUnknown)]
        assert [s.resolution for s in settled] == ["reconcile"]


@pytest.mark.parametrize("point", ["after_intent_commit", "after_tool_before_commit"])
def test_idempotent_write_is_called_again_with_the_same_key(
    tmp_path: Path, store_url: str, point: str
) -> None:
    tickets = systems(tmp_path)
    agent = agent_file(
        tmp_path, ("update_ticket", {"ticket_id": "T-2001", "status": "pending", "note": "on it"})
    )
    run_ids = start_runs(store_url, agent, RUNS)

    killed = run_worker(tmp_path, store_url, "--fault-point", point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_worker(tmp_path, store_url)
    assert resumed.returncode == 0, resumed.stderr

    statuses, breaks, events = inspect(store_url, run_ids)
    assert statuses == dict.fromkeys(run_ids, "succeeded")
    assert breaks == []
    assert_no_step_twice(events)
    first = events[run_ids[0]]
    settled = [e.body for e in first if isinstance(e.body, ToolOutcomeUnknown)]
    assert [s.resolution for s in settled] == ["recall"]
    per_key = Counter(u["idempotency_key"] for u in tickets.ticket_updates())
    assert per_key == Counter({write_key(r, 0): 1 for r in run_ids})


def test_non_idempotent_write_without_reconcile_escalates(tmp_path: Path, store_url: str) -> None:
    """send_email cannot say whether it sent: the run escalates instead of sending twice."""
    mail = systems(tmp_path)
    agent = agent_file(
        tmp_path, ("send_email", {"to": "ann@example.com", "subject": "Refund", "body": "Sent."})
    )
    run_ids = start_runs(store_url, agent, RUNS)

    killed = run_worker(tmp_path, store_url, "--fault-point", "after_tool_before_commit")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_worker(tmp_path, store_url)
    assert resumed.returncode == 0, resumed.stderr

    statuses, breaks, events = inspect(store_url, run_ids)
    assert statuses[run_ids[0]] == "escalated"
    assert [statuses[r] for r in run_ids[1:]] == ["succeeded"] * (RUNS - 1)
    assert breaks == []
    emails = Counter(e["idempotency_key"] for e in mail.emails())
    assert emails == Counter({write_key(r, 0): 1 for r in run_ids})
    reason = next(e.body.reason for e in events[run_ids[0]] if e.type == "run_finished")
    assert "unknown" in reason and "send_email" in reason
