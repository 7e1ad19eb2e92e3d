"""A worker frozen past its lease (as if cut off from the database) must not act on resuming.

The first worker commits a refund's intent and is then stopped (SIGSTOP) before the call. Its
lease runs out; a second worker takes the run over, asks billing (reconcile: nothing
happened), refunds and finishes. When the first worker is continued it must neither refund
(its lease is gone) nor commit anything over the new owner's work. On PostgreSQL this is the
worker cut off from a shared database for longer than its lease.

The second test freezes the first worker a moment later: inside the refund call, before
billing has been asked. Whatever the runtime does about it, billing's ledger must end with one
refund for the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.durability._harness import (
    DEMO_TOOLS,
    agent_file,
    event_trail,
    run_worker,
    start_runs,
    systems,
    worker_args,
    worker_env,
    write_key,
)
from tests.durability._tools import FENCED_OUT_FILE, FREEZE_ENV

from charter import Runtime
from charter.events import Event, ToolCallReconciled, ToolCallStarted

pytestmark = pytest.mark.durability

REFUND_ARGS: dict[str, object] = {"order_id": "1001", "amount": 12.5}
FREEZING_TOOLS = tuple(
    "tests.durability._tools:refund" if t.endswith(":refund") else t for t in DEMO_TOOLS
)


def _stopped(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


@dataclass
class Frozen:
    proc: subprocess.Popen[str]
    stderr: str = ""


@contextlib.contextmanager
def _frozen_worker(
    tmp: Path, db_url: str, *fault: str, env: dict[str, str] | None = None
) -> Iterator[Frozen]:
    """A `--until-idle` worker (lease 1 s), waited for until it has stopped itself (SIGSTOP).

    The body runs while it is frozen; then it is continued (SIGCONT) and waited for, and its
    output kept. Its pipe is closed and it is killed if the test fails on the way.
    """
    frozen = subprocess.Popen(
        worker_args(db_url, "--until-idle", "--concurrency", "1", "--lease-seconds", "1",
                    "--poll-seconds", "0.05", *fault),
        cwd=tmp, env={**worker_env(), **(env or {})}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with frozen:  # closes the pipe and waits, however the test ends
        try:
            deadline = time.monotonic() + 30
            while not _stopped(frozen.pid):
                assert frozen.poll() is None, frozen.communicate()[1]
                assert time.monotonic() < deadline, "the first worker never froze"
                time.sleep(0.05)
            found = Frozen(frozen)
            yield found
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                frozen.kill()
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                frozen.send_signal(signal.SIGCONT)
        try:
            found.stderr = frozen.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:
            frozen.kill()
            raise


def _inspect(db_url: str, run_id: str) -> tuple[str, list[Event], list[object]]:
    async def main() -> tuple[str, list[Event], list[object]]:
        async with Runtime.open(db_url) as rt:
            events = await rt.events(run_id)
            breaks: list[object] = list(await rt.verify())
            return (await rt.get_run(run_id)).status, events, breaks

    return asyncio.run(main())


def test_a_worker_frozen_past_its_lease_does_not_refund_on_waking(
    tmp_path: Path, store_url: str
) -> None:
    billing = systems(tmp_path)
    agent = agent_file(tmp_path, ("refund", REFUND_ARGS))
    (run_id, *_) = start_runs(store_url, agent, 3)
    fault = ("--fault-point", "after_intent_commit", "--fault-action", "stop")
    with _frozen_worker(tmp_path, store_url, *fault) as frozen:
        assert billing.ledger_counts() == {}
        taker = run_worker(tmp_path, store_url)
        assert taker.returncode == 0, taker.stderr

    counts = Counter(billing.ledger_counts())
    assert counts == Counter({k: 1 for k in counts}) and len(counts) == 3  # three runs, one each
    assert frozen.proc.returncode == 1, frozen.stderr  # it reports the lost run and exits
    assert "lease expired before refund could start" in frozen.stderr

    status, events, breaks = _inspect(store_url, run_id)
    types = [e.type for e in events]
    assert status == "succeeded"
    assert breaks == []
    assert types.count("tool_call_started") == 1  # one intent, settled by the new owner
    assert "tool_outcome_unknown" in types


def test_a_worker_frozen_inside_a_refund_past_its_lease_does_not_refund_twice(
    tmp_path: Path, store_url: str
) -> None:
    """Frozen (or cut off) with a non-idempotent call under way, for longer than its lease.

    The refund tool calls ``ctx.ensure_lease()`` right before it asks billing: on waking, the
    frozen worker finds its lease gone and stops, while the new owner waited out the call's
    timeout, asked billing (not applied) and refunded once. (A process frozen after that check,
    inside the external call itself, is beyond any runtime: only the external system's own
    deduplication can help there; docs/architecture.md says so.)
    """
    billing = systems(tmp_path)
    agent = agent_file(tmp_path, ("refund", REFUND_ARGS), tools=FREEZING_TOOLS)
    (run_id,) = start_runs(store_url, agent, 1)
    with _frozen_worker(tmp_path, store_url, env={FREEZE_ENV: "1"}):
        assert billing.ledger_counts() == {}
        taker = run_worker(tmp_path, store_url)
        assert taker.returncode == 0, taker.stderr

    status, events, breaks = _inspect(store_url, run_id)
    assert status == "succeeded"
    assert breaks == []
    refunds = billing.refunds()
    assert billing.ledger_counts() == {write_key(run_id, 0): 1}, (
        f"billing refunded {len(refunds)} times for one call: {refunds}\n{event_trail(events)}"
    )


def test_a_worker_frozen_with_its_refund_on_the_way_is_fenced_out_by_billing(
    tmp_path: Path, store_url: str
) -> None:
    """The reported case: frozen *after* its lease check, with a non-idempotent payment on its
    way. The new owner's reconcile finds no refund and fences the key at its own, higher
    fencing token; it refunds; the frozen worker wakes, its request lands at billing and is
    refused. Before the fence: two refunds, one in the log, and the chain verified."""
    billing = systems(tmp_path)
    agent = agent_file(tmp_path, ("refund", REFUND_ARGS), tools=FREEZING_TOOLS)
    (run_id,) = start_runs(store_url, agent, 1)
    with _frozen_worker(tmp_path, store_url, env={FREEZE_ENV: "after_lease"}):
        assert billing.ledger_counts() == {}
        taker = run_worker(tmp_path, store_url)
        assert taker.returncode == 0, taker.stderr
        assert billing.ledger_counts() == {write_key(run_id, 0): 1}

    assert billing.ledger_counts() == {write_key(run_id, 0): 1}, event_trail(_inspect(
        store_url, run_id)[1])  # fmt: skip
    refused = (tmp_path / FENCED_OUT_FILE).read_text()
    assert "below the key's fence" in refused  # the late request did reach billing
    status, events, breaks = _inspect(store_url, run_id)
    assert status == "succeeded"
    assert breaks == []
    (started,) = [e.body for e in events if isinstance(e.body, ToolCallStarted)]
    (verdict,) = [e.body for e in events if isinstance(e.body, ToolCallReconciled)]
    assert verdict.applied is False and verdict.fenced
    assert verdict.fencing_token > started.fencing_token
