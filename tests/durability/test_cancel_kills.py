"""Cancel across SIGKILL: the request and its consumption commit with the run's events, so a
run ends cancelled exactly once, and a write in flight is settled first, never repeated.

Real `charter worker` processes kill themselves at named fault points; the external systems
keep their own ledger. Both backends (``store_url``).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from tests.durability._harness import (
    REFUND,
    agent_file,
    event_trail,
    inspect,
    run_worker,
    start_runs,
    systems,
    write_key,
)

from charter import Runtime
from charter.events import RunFinished, ToolCallSucceeded, ToolOutcomeUnknown

pytestmark = pytest.mark.durability


def _cancel(db_url: str, run_ids: list[str]) -> None:
    async def main() -> None:
        async with Runtime.open(db_url) as rt:
            for run_id in run_ids:
                await rt.cancel(run_id, reason="customer withdrew", actor="lead@acme")

    asyncio.run(main())


def _pending_requests(db_url: str, run_ids: list[str]) -> list[str]:
    async def main() -> list[str]:
        async with Runtime.open(db_url) as rt:
            return [r for r in run_ids if await rt.store.cancel_request(r) is not None]

    return asyncio.run(main())


def test_a_write_in_flight_is_settled_once_then_the_run_is_cancelled(
    tmp_path: Path, store_url: str
) -> None:
    """Killed with a refund's intent committed; cancelled while dead. The next worker settles
    the unknown outcome (reconcile, then the fenced call) before it honours the cancel."""
    billing = systems(tmp_path)
    run_ids = start_runs(store_url, agent_file(tmp_path, REFUND), 1)
    killed = run_worker(tmp_path, store_url, "--fault-point", "after_intent_commit")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    _cancel(store_url, run_ids)
    resumed = run_worker(tmp_path, store_url)
    assert resumed.returncode == 0, resumed.stderr

    statuses, breaks, events = inspect(store_url, run_ids)
    assert statuses == dict.fromkeys(run_ids, "cancelled")
    assert breaks == []
    for evs in events.values():
        bodies = [e.body for e in evs]
        finished = [b for b in bodies if isinstance(b, RunFinished)]
        assert len(finished) == 1 and finished[0].cancel is not None, event_trail(evs)
        assert finished[0].cancel.requested_by == "lead@acme"
        unknown = [i for i, b in enumerate(bodies) if isinstance(b, ToolOutcomeUnknown)]
        settled = [i for i, b in enumerate(bodies) if isinstance(b, ToolCallSucceeded)]
        assert unknown and settled and max(settled) < bodies.index(finished[0]), event_trail(evs)
    counts = billing.ledger_counts()
    assert counts == {write_key(r, 0): 1 for r in run_ids}
    assert _pending_requests(store_url, run_ids) == []


def test_a_kill_right_after_the_cancel_commit_leaves_one_cancel(
    tmp_path: Path, store_url: str
) -> None:
    """Cancelled before any worker; the first commit is the cancel, and the worker dies right
    after it. The next worker finds nothing to do: one run_finished, nothing paid."""
    billing = systems(tmp_path)
    run_ids = start_runs(store_url, agent_file(tmp_path, REFUND), 1)
    _cancel(store_url, run_ids)
    killed = run_worker(tmp_path, store_url, "--fault-point", "after_commit")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = run_worker(tmp_path, store_url)
    assert again.returncode == 0, again.stderr

    statuses, breaks, events = inspect(store_url, run_ids)
    assert statuses == dict.fromkeys(run_ids, "cancelled")
    assert breaks == []
    [evs] = events.values()
    assert [e.type for e in evs] == ["run_started", "message_received", "run_finished"]
    assert billing.ledger_counts() == {}
    assert _pending_requests(store_url, run_ids) == []
