"""A worker frozen past its lease (as if cut off from the database) must not act on resuming.

The first worker commits a refund's intent and is then stopped (SIGSTOP) before the call. Its
lease runs out; a second worker takes the run over, asks billing (reconcile: nothing
happened), refunds and finishes. When the first worker is continued it must neither refund
(its lease is gone) nor commit anything over the new owner's work.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.durability.test_kill_points import _agent_file, _start_runs, _systems, _worker

from charter import Runtime

pytestmark = pytest.mark.durability


def _stopped(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


def test_a_worker_frozen_past_its_lease_does_not_refund_on_waking(tmp_path: Path) -> None:
    systems = _systems(tmp_path)
    agent_file = _agent_file(tmp_path, "refund", {"order_id": "1001", "amount": 12.5})
    (run_id, *_) = _start_runs(tmp_path, agent_file)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    frozen = subprocess.Popen(
        [sys.executable, "-m", "charter", "worker", "--db", f"sqlite:///{tmp_path}/charter.db",
         "--until-idle", "--concurrency", "1", "--lease-seconds", "1", "--poll-seconds", "0.05",
         "--fault-point", "after_intent_commit", "--fault-action", "stop"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _stopped(frozen.pid):
            assert frozen.poll() is None, frozen.communicate()[1]
            assert time.monotonic() < deadline, "the first worker never reached its fault point"
            time.sleep(0.05)
        assert systems.ledger_counts() == {}

        taker = _worker(tmp_path)
        assert taker.returncode == 0, taker.stderr
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    _, stderr = frozen.communicate(timeout=60)

    counts = Counter(systems.ledger_counts())
    assert counts == Counter({k: 1 for k in counts}) and len(counts) == 3  # three runs, one each
    assert frozen.returncode == 1, stderr  # it reports the lost run and exits
    assert "lease expired before refund could start" in stderr

    async def inspect() -> tuple[str, list[str], list[object]]:
        async with Runtime.open(f"sqlite:///{tmp_path}/charter.db") as rt:
            events = await rt.events(run_id)
            return (await rt.get_run(run_id)).status, [e.type for e in events], await rt.verify()

    status, types, breaks = asyncio.run(inspect())
    assert status == "succeeded"
    assert breaks == []
    assert types.count("tool_call_started") == 1  # one intent, settled by the new owner
    assert "tool_outcome_unknown" in types
