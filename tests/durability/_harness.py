"""What the durability tests share: agents, runs, worker processes, and the invariants.

Every test runs real `charter worker` processes against a Charter database (a SQLite file in
tmp_path, or a fresh PostgreSQL schema), while the simulated external systems keep their own
ledger in `charter-demo-systems.db` in the workers' working directory (tmp_path). The
invariants are checked in that ledger and in the event log, never by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tests.helpers.cli import run_charter

from charter import Runtime, load_agent
from charter.errors import StoreError
from charter.events import FINAL_STATUSES, Event, ModelResponded
from charter.testing.systems import Systems

LEASE_S = "0.5"
Write = tuple[str, dict[str, object]]
REFUND: Write = ("refund", {"order_id": "1001", "amount": 1.0})  # 249 of them fit order 1001
UPDATE_TICKET: Write = (
    "update_ticket",
    {"ticket_id": "T-2001", "status": "pending", "note": "on it"},
)


DEMO_TOOLS = tuple(
    f"charter.demo.tools:{name}"
    for name in ("lookup_order", "refund", "update_ticket", "send_email")
)


def agent_file(tmp: Path, *writes: Write, tools: tuple[str, ...] = DEMO_TOOLS) -> Path:
    """An agent whose script looks an order up, makes the write calls (one per step), answers.

    The scripted model names its calls ``call_<step index>_0``, so the idempotency key of the
    n-th write (n from 0) is ``<run id>:<n + 2>:call_<n + 1>_0``.
    """
    script: list[object] = [
        {"tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "1001"}}]},
        *({"tool_calls": [{"name": tool, "arguments": args}]} for tool, args in writes),
        {"content": "done"},
    ]
    (tmp / "script.json").write_text(json.dumps(script))
    (tmp / "prompt.md").write_text("You resolve support tickets.")
    (tmp / "agent.yaml").write_text(
        "agent:\n"
        "  name: durability\n"
        "  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        f"  tools: {json.dumps(list(tools))}\n"
        "  budgets: {max_steps: 6, timeout_s: 60}\n"
    )
    return tmp / "agent.yaml"


def write_key(run_id: str, n: int) -> str:
    """The idempotency key of a run's n-th write call (see :func:`agent_file`)."""
    return f"{run_id}:{n + 2}:call_{n + 1}_0"


def systems(tmp: Path, latency_s: float = 0.0) -> Systems:
    """The external systems, seeded, in the workers' working directory."""
    found = Systems(tmp / "charter-demo-systems.db")
    found.seed()
    if latency_s:
        found.set_latency(latency_s)
    return found


def worker_env() -> dict[str, str]:
    """As :func:`run_charter` does: this interpreter's import path, no leaking settings."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("CHARTER_DB", None)
    env.pop("OPENAI_API_KEY", None)
    return env


def worker_args(db_url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "charter", "worker", "--db", db_url, *extra]


def run_worker(tmp: Path, db_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One `charter worker --until-idle` to the end (or to its fault point)."""
    return run_charter(
        tmp,
        *("worker", "--db", db_url, "--until-idle", "--concurrency", "1"),
        *("--lease-seconds", LEASE_S, "--poll-seconds", "0.05", *extra),
        timeout=90,
    )


def start_runs(db_url: str, agent_path: Path, count: int) -> list[str]:
    agent = load_agent(agent_path)

    async def main() -> list[str]:
        async with Runtime.open(db_url) as rt:
            return [
                await rt.start(agent, f"ticket {i}: refund please", tenant="acme")
                for i in range(count)
            ]

    return asyncio.run(main())


def inspect(
    db_url: str, run_ids: list[str]
) -> tuple[dict[str, str], list[object], dict[str, list[Event]]]:
    """Each run's status, every hash-chain break, each run's events."""

    async def main() -> tuple[dict[str, str], list[object], dict[str, list[Event]]]:
        async with Runtime.open(db_url) as rt:
            statuses = {r: (await rt.get_run(r)).status for r in run_ids}
            breaks: list[object] = list(await rt.verify())
            events = {r: await rt.events(r) for r in run_ids}
            return statuses, breaks, events

    return asyncio.run(main())


def statuses_now(db_url: str) -> dict[str, str] | None:
    """Every run's status, or None while the database is unusable (e.g. restarting)."""

    async def main() -> dict[str, str]:
        async with Runtime.open(db_url) as rt:
            return {r.run_id: r.status for r in await rt.list_runs(limit=10_000)}

    try:
        return asyncio.run(main())
    except StoreError:
        return None


def wait_until_final(db_url: str, run_ids: list[str], *, timeout_s: float) -> dict[str, str]:
    """Poll until every run has a final status; return the statuses last seen."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = statuses_now(db_url) or seen
        if seen and all(seen.get(r) in FINAL_STATUSES for r in run_ids):
            break
        time.sleep(0.25)
    return seen


def assert_no_step_twice(events: dict[str, list[Event]]) -> None:
    for run_id, evs in events.items():
        steps = Counter(e.body.step for e in evs if isinstance(e.body, ModelResponded))
        assert all(n == 1 for n in steps.values()), f"{run_id} committed a step twice: {steps}"


def assert_each_write_once(found: Systems, run_ids: list[str]) -> None:
    """Billing's own ledger: one refund per run's key, nothing else; one ticket update each."""
    refunds = found.ledger_counts()
    expected = {write_key(r, 0): 1 for r in run_ids}
    assert refunds == expected, _ledger_diff("refund", refunds, expected, found.refunds())
    updates = Counter(u["idempotency_key"] for u in found.ticket_updates())
    expected = {write_key(r, 1): 1 for r in run_ids}
    assert dict(updates) == expected, _ledger_diff(
        "ticket update", dict(updates), expected, found.ticket_updates()
    )


def _ledger_diff(
    what: str, counts: dict[str, int], expected: dict[str, int], rows: list[dict[str, object]]
) -> str:
    twice = {k: n for k, n in counts.items() if n > 1}
    missing = sorted(expected.keys() - counts.keys())
    other = sorted(counts.keys() - expected.keys())
    bad = set(twice) | set(other)
    detail = [r for r in rows if r.get("idempotency_key") in bad]
    return f"{what}: repeated {twice}, missing {missing}, unexpected {other}; rows {detail}"


def event_trail(events: list[Event]) -> str:
    """A run's events, one short line each, for a failure message."""
    return "\n".join(f"  {e.seq:3d} {e.type} {e.payload[:160]}" for e in events)


class Workers:
    """Long-running `charter worker` processes; their output goes to log files in tmp_path.

    Log files, not pipes: a busy worker logs a line per run and would block on a full pipe.
    ``close()`` kills whatever still runs and closes every file.
    """

    def __init__(self, tmp: Path, db_url: str) -> None:
        self.tmp = tmp
        self.db_url = db_url
        self.all: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, tuple[Path, IO[bytes]]] = {}

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        path = self.tmp / f"worker-{len(self.all)}.log"
        log = path.open("wb")
        try:
            proc = subprocess.Popen(
                worker_args(self.db_url, *extra),
                cwd=self.tmp,
                env=worker_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except BaseException:
            log.close()
            raise
        self.all.append(proc)
        self._logs[proc.pid] = (path, log)
        return proc

    def wait_started(self, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
        """Until the worker has opened its database and says so (or has died)."""
        deadline = time.monotonic() + timeout_s
        while " INFO worker " not in self.output(proc):
            assert proc.poll() is None, f"worker exited {proc.returncode}:\n{self.output(proc)}"
            assert time.monotonic() < deadline, f"worker never started:\n{self.output(proc)}"
            time.sleep(0.05)

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        path, log = self._logs[proc.pid]
        log.flush()
        return path.read_text(errors="replace")

    def outputs(self) -> str:
        return "\n".join(
            f"--- worker pid {p.pid} (exit {p.returncode}):\n{self.output(p)[-3000:]}"
            for p in self.all
        )

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
        """SIGTERM (a worker finishes its current work and exits), then wait."""
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout_s)

    def close(self) -> None:
        for proc in self.all:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        for _, log in self._logs.values():
            log.close()


@contextlib.contextmanager
def workers(tmp: Path, db_url: str) -> Iterator[Workers]:
    pool = Workers(tmp, db_url)
    try:
        yield pool
    finally:
        pool.close()
