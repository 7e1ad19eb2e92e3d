"""Several worker processes on one PostgreSQL database, under chaos.

Refund runs (look an order up; refund it: not idempotent, reconciled by asking billing; update
the ticket: idempotent; answer) are worked by several long-running `charter worker`
processes while the test SIGKILLs workers at random, or restarts the PostgreSQL server under
them. Billing answers slowly, so calls are in flight when the blow lands. Afterwards, however
the timing fell: every run has succeeded, billing's own ledger holds exactly one refund per
run (and nothing else), the ticketing system one update per run, every hash chain verifies
and no step was committed twice. (A worker cut off from the database for longer than its
lease is test_fencing.py's PostgreSQL variant.)
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psycopg
import pytest
from tests.durability._harness import (
    REFUND,
    UPDATE_TICKET,
    Workers,
    agent_file,
    assert_each_write_once,
    assert_no_step_twice,
    event_trail,
    inspect,
    start_runs,
    systems,
    wait_until_final,
    workers,
)

from charter.testing.systems import Systems

if TYPE_CHECKING:
    from tests.conftest import PostgresDatabases

pytestmark = pytest.mark.durability

RUNS = 30
LATENCY_S = 0.5  # billing writes the refund 0.25 s into the call and answers at 0.5 s
WORKER_FLAGS = ("--lease-seconds", "1", "--poll-seconds", "0.05")
FINISH_S = 90  # how long the runs may take to finish once the chaos is over


def _wait_for_refunds(
    billing: Systems, pool: Workers, live: list[subprocess.Popen[bytes]], at_least: int
) -> None:
    """Until billing has made ``at_least`` refunds: the load is under way."""
    deadline = time.monotonic() + 60
    while len(billing.refunds()) < at_least:
        assert all(p.poll() is None for p in live), pool.outputs()
        assert time.monotonic() < deadline, "the workers made no refunds\n" + pool.outputs()
        time.sleep(0.05)


def _finish_and_check(
    db_url: str,
    pool: Workers,
    long_running: list[subprocess.Popen[bytes]],
    billing: Systems,
    run_ids: list[str],
) -> None:
    """A last `--until-idle` worker joins; once every run is final the long-running workers
    are stopped (SIGTERM); then the invariants."""
    last = pool.spawn("--until-idle", "--concurrency", "4", *WORKER_FLAGS)
    final = wait_until_final(db_url, run_ids, timeout_s=FINISH_S)
    for proc in long_running:
        pool.stop(proc)
    last.wait(timeout=60)
    for proc in pool.all:  # killed by the test, or exited by themselves: none crashed
        assert proc.returncode in (0, 1, -signal.SIGKILL), pool.outputs()

    statuses, breaks, events = inspect(db_url, run_ids)
    unfinished = {r: s for r, s in statuses.items() if s != "succeeded"}
    assert not unfinished, (
        f"runs not succeeded: {unfinished} (last polled {len(final)} runs)\n"
        + "\n".join(f"{r}:\n{event_trail(events[r])}" for r in list(unfinished)[:3])
        + "\n"
        + pool.outputs()
    )
    assert breaks == []
    assert_no_step_twice(events)
    try:
        assert_each_write_once(billing, run_ids)
    except AssertionError as exc:
        trails = "\n".join(f"{r}:\n{event_trail(events[r])}" for r in run_ids if r in str(exc))
        raise AssertionError(f"{exc}\n{trails}\n{pool.outputs()}") from None


def test_random_sigkills(tmp_path: Path, pg_url: str) -> None:
    billing = systems(tmp_path, latency_s=LATENCY_S)
    run_ids = start_runs(pg_url, agent_file(tmp_path, REFUND, UPDATE_TICKET), RUNS)
    rng = random.Random(2)  # victims 0, 1, 2, 1, 0
    with workers(tmp_path, pg_url) as pool:
        live = [pool.spawn("--concurrency", "1", *WORKER_FLAGS) for _ in range(3)]
        for proc in live:
            pool.wait_started(proc)
        _wait_for_refunds(billing, pool, live, at_least=1)
        for _ in range(5):
            time.sleep(rng.uniform(0.5, 1.0))
            victim = rng.randrange(len(live))
            pool.kill(live[victim])
            live[victim] = pool.spawn("--concurrency", "1", *WORKER_FLAGS)
            pool.wait_started(live[victim])  # each blow lands on a worker that works
        _finish_and_check(pg_url, pool, live, billing, run_ids)


# -- restarting the server ----------------------------------------------------------------------


def _cluster() -> tuple[str, str]:
    """(version, cluster name) of the local server, as pg_ctlcluster names it."""
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".")])
    return versions[-1], "main"


def _ready(admin_url: str, timeout_s: float) -> bool:
    """Whether the server accepts connections (waiting up to ``timeout_s`` for it)."""
    parts = urlsplit(admin_url)
    where = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run(["pg_isready", "-q", *where], check=False, timeout=30)
        if done.returncode == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _pg_ctlcluster(action: str) -> subprocess.CompletedProcess[str]:
    version, name = _cluster()
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _server_up_again(pg_databases: PostgresDatabases) -> None:
    """Whatever happened: the server running, and the suite's own connections usable again.

    The restart cut every client off, the fixtures' connections too; psycopg learns that only
    when it next uses one, so they are probed and replaced here, before the fixtures' teardown
    (which drops this test's schema) and the rest of the suite need them.
    """
    if not _ready(pg_databases.admin_url, 5):
        _pg_ctlcluster("start")
        assert _ready(pg_databases.admin_url, 60), "the PostgreSQL server did not come back"
    with contextlib.suppress(psycopg.Error):
        pg_databases._conn.execute("SELECT 1")
    if pg_databases._conn.closed:
        pg_databases._conn = psycopg.connect(
            pg_databases.admin_url, autocommit=True, connect_timeout=5
        )
    session = pg_databases._session
    if session is not None:
        with contextlib.suppress(psycopg.Error):
            session.execute("SELECT 1")
        if session.closed:
            session.close()
            pg_databases._session = None


@pytest.mark.serial
@pytest.mark.skipif(
    shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"),
    reason="restarts the PostgreSQL server on this machine: needs pg_ctlcluster",
)
def test_postgres_restart_under_load(
    tmp_path: Path, pg_url: str, pg_databases: PostgresDatabases
) -> None:
    if urlsplit(pg_databases.admin_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("the test server is not this machine's: it cannot be restarted from here")
    billing = systems(tmp_path, latency_s=LATENCY_S)
    run_ids = start_runs(pg_url, agent_file(tmp_path, REFUND, UPDATE_TICKET), RUNS)
    try:
        with workers(tmp_path, pg_url) as pool:
            live = [pool.spawn("--concurrency", "2", *WORKER_FLAGS) for _ in range(2)]
            for proc in live:
                pool.wait_started(proc)
            _wait_for_refunds(billing, pool, live, at_least=3)
            restarted = _pg_ctlcluster("restart")
            assert restarted.returncode == 0, restarted.stdout + restarted.stderr
            assert _ready(pg_databases.admin_url, 60), "the server did not come back"
            # The workers outlive the outage: they retry with backoff instead of exiting.
            assert [p.poll() for p in live] == [None, None], pool.outputs()
            _finish_and_check(pg_url, pool, live, billing, run_ids)
    finally:
        _server_up_again(pg_databases)
