#!/usr/bin/env python
"""What the notifications outbox costs the step path, and how fast the delivery loop drains it.

Usage::

    python bench/notify_outbox.py [--runs 300] [--repeats 3] [--db sqlite|URL] [--json]

1. Commit cost, worst case: ``--runs`` one-step runs (the scripted model answers at once), so
   every commit is a ``run_finished`` that writes one ``notifications`` row in its
   transaction. Worked one at a time (no group commit hides the cost), with the outbox write
   on and patched out, alternating ``--repeats`` times on fresh databases; the medians'
   difference is what the outbox adds per commit that writes a row (commits of other events
   write nothing).
2. Delivery rate: the ``charter serve`` delivery loop (``server/_notify.py``) fans those
   notifications out to one endpoint and POSTs them through an in-process transport that
   answers 200 at once, so what is timed is the loop's own store work and signing.

``--db`` is ``sqlite`` (fresh files in a temporary directory, the default) or a PostgreSQL
URL of an empty database you own (its tables are dropped between repeats). It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from _report import emit, print_table
from charter import Agent, ModelSpec, Runtime
from charter.server._notify import Endpoint, NotificationsConfig, Notifier
from charter.store import _notifications, _postgres, _sqlite


def _agent() -> Agent:
    return Agent(
        name="bench_notify",
        instructions="Answer.",
        model=ModelSpec(provider="scripted", script=[{"content": "done"}]),
        tools=[],
    )


def _fresh(db: str, workdir: Path, n: int) -> str:
    if db == "sqlite":
        return f"sqlite:///{workdir / f'bench_{n}.db'}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return db


def _outbox(on: bool) -> None:
    rows = _notifications.outbox_rows if on else (lambda events, now: [])
    _sqlite.outbox_rows = _postgres.outbox_rows = rows  # type: ignore[assignment]


async def _commit_cost(url: str, runs: int) -> float:
    """Seconds per run (start, claim, one commit), worked one at a time."""
    rt = Runtime.open(url)
    try:
        for i in range(runs):
            await rt.start(_agent(), f"input {i}")
        t0 = time.perf_counter()
        await rt.work(until_idle=True, concurrency=1)
        return (time.perf_counter() - t0) / runs
    finally:
        await rt.close()


async def _drain(url: str, runs: int) -> dict[str, Any]:
    os.environ["BENCH_NOTIFY_SECRET"] = "bench-secret"
    config = NotificationsConfig(
        endpoints=(
            Endpoint(name="ops", url="http://bench.invalid/", secret_env="BENCH_NOTIFY_SECRET"),
        )
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    rt = Runtime.open(url)
    try:
        notifier = Notifier(rt.operations.notifications, config, transport=transport)
        t0 = time.perf_counter()
        while await notifier.once(limit=100):
            pass
        wall = time.perf_counter() - t0
        delivered = await rt.operations.notifications.deliveries(status="delivered", limit=runs * 2)
    finally:
        await rt.close()
    return {"delivered": len(delivered), "wall_s": wall, "per_s": len(delivered) / wall}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="notify_outbox_"))
    on: list[float] = []
    off: list[float] = []
    n, last = 0, ""
    for _ in range(args.repeats):
        for enabled, into in ((False, off), (True, on)):
            _outbox(enabled)
            n += 1
            last = _fresh(args.db, workdir, n)
            into.append(await _commit_cost(last, args.runs))
    _outbox(True)
    drain = await _drain(last, args.runs)  # the notifications of the last run with the outbox
    med_on, med_off = statistics.median(on), statistics.median(off)
    return {
        "db": "sqlite" if args.db == "sqlite" else "postgresql",
        "runs": args.runs,
        "per_run_ms_outbox_off": [x * 1000 for x in off],
        "per_run_ms_outbox_on": [x * 1000 for x in on],
        "outbox_cost_ms": (med_on - med_off) * 1000,
        "outbox_cost_pct": (med_on - med_off) / med_off * 100,
        "drain": drain,
    }


def report(results: dict[str, Any], table: list[Any]) -> None:
    print(f"notifications outbox on {results['db']}, {results['runs']} one-step runs per repeat")
    print_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    off = statistics.median(results["per_run_ms_outbox_off"])
    on = statistics.median(results["per_run_ms_outbox_on"])
    table = [
        ("run (start+claim+commit), outbox off", f"{off:.3f} ms", "", ""),
        ("run (start+claim+commit), outbox on", f"{on:.3f} ms", "", ""),
        ("outbox cost per finishing commit", f"{results['outbox_cost_pct']:+.1f} %", "< 5 %",
         "yes" if results["outbox_cost_pct"] < 5 else "no"),
        ("deliveries per second (one loop)", f"{results['drain']['per_s']:.0f}", "", ""),
    ]  # fmt: skip
    emit(results, table, as_json=args.json, print_report=report)


if __name__ == "__main__":
    main()
