#!/usr/bin/env python
"""What the audit log costs: runs per second with it, and with its appends switched off.

Usage::

    python bench/audit_log.py [--runs 200] [--concurrency 8] [--rounds 3] [--pg URL] [--json]

In one process, for SQLite (a fresh file) and, with ``--pg`` (or ``CHARTER_BENCH_PG``), a
fresh PostgreSQL schema:

1. ``--runs`` short runs (one read tool call, then an answer: three commits, one creation
   record and one sealed head each), ``--concurrency`` at a time, with the audit log as
   shipped and an audit key; then the same with no key; then the same with the store's audit
   appends patched out (``store._audit.sqlite_append``/``postgres_append`` do nothing): the
   difference is what the audit log costs per run. The three modes alternate for
   ``--rounds`` rounds; each figure is the median;
2. the CPU cost of sealing one record, with and without a key.

It asserts nothing; it prints the figures and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from _report import emit, print_table
from charter import Agent, ModelSpec, Runtime, tool
from charter.store import AuditEntry, AuditKey, _audit

KEY = AuditKey(b"bench-audit-key-0123456789abcdef")


@tool(effect="read")
async def noop(key: str) -> dict[str, Any]:
    """Look nothing up."""
    return {"key": key}


def _agent() -> Agent:
    script = [{"tool_calls": [{"name": "noop", "arguments": {"key": "k"}}]}, {"content": "ok"}]
    return Agent(
        name="bench", instructions="x", model=ModelSpec(provider="scripted", script=script),
        tools=[noop],
    )  # fmt: skip


async def _runs(url: str, key: AuditKey | None, runs: int, concurrency: int) -> float:
    """Seconds per run, wall, for ``runs`` runs ``concurrency`` at a time."""
    async with Runtime.open(url, audit_key=key) as rt:
        agent = _agent()
        await rt.run(agent, "warm up")
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await rt.run(agent, f"run {i}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(runs)))
        return (time.perf_counter() - started) / runs


def _measure(make_url: Any, runs: int, concurrency: int, rounds: int) -> dict[str, float]:
    """Median ms per run of each mode over ``rounds`` rounds, the modes alternating."""
    found: dict[str, list[float]] = {"with_key_ms": [], "no_key_ms": [], "off_ms": []}
    for _ in range(rounds):
        found["with_key_ms"].append(asyncio.run(_runs(make_url(), KEY, runs, concurrency)))
        found["no_key_ms"].append(asyncio.run(_runs(make_url(), None, runs, concurrency)))
        with _appends_off():
            found["off_ms"].append(asyncio.run(_runs(make_url(), KEY, runs, concurrency)))
    return {mode: statistics.median(values) * 1000 for mode, values in found.items()}


@contextlib.contextmanager
def _appends_off() -> Iterator[None]:
    """The store's audit appends do nothing (what the runtime cost without the audit log)."""
    appends = _audit.sqlite_append, _audit.postgres_append

    async def nothing(*_: Any) -> None:
        return None

    _audit.sqlite_append = lambda *_: None  # type: ignore[assignment]
    _audit.postgres_append = nothing  # type: ignore[assignment]
    try:
        yield
    finally:
        _audit.sqlite_append, _audit.postgres_append = appends


def _seal_us(key: AuditKey | None, n: int = 20_000) -> float:
    entry = AuditEntry(
        "run_head", "run_x", None, {"seq": 12, "hash": "a" * 64, "status": "waiting"}
    )
    started = time.perf_counter()
    prev = "0" * 64
    for i in range(n):
        prev = _audit.seal(entry, seq=i + 1, at=1.0, prev=prev, key=key).hash
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("CHARTER_BENCH_PG"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"runs": args.runs, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        count = iter(range(1_000_000))
        results["sqlite"] = _measure(
            lambda: f"sqlite:///{Path(tmp) / f'b{next(count)}.db'}",
            args.runs,
            args.concurrency,
            args.rounds,
        )
    if args.pg:
        names: list[str] = []

        def fresh() -> str:
            name = f"bench_audit_{os.getpid()}_{len(names)}"
            names.append(name)
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {name}")
            sep = "&" if "?" in args.pg else "?"
            return f"{args.pg}{sep}options=-csearch_path%3D{name}"

        try:
            results["postgres"] = _measure(fresh, args.runs, args.concurrency, args.rounds)
        finally:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                for name in names:
                    conn.execute(f"DROP SCHEMA {name} CASCADE")
    results["seal_us"] = {"with_key": _seal_us(KEY), "no_key": _seal_us(None)}
    table = []
    for backend in ("sqlite", "postgres"):
        if backend in results:
            f = results[backend]
            table += [
                (f"{backend}: ms per run, audit log + key", f"{f['with_key_ms']:.2f}", "", ""),
                (f"{backend}: ms per run, audit log, no key", f"{f['no_key_ms']:.2f}", "", ""),
                (f"{backend}: ms per run, appends off", f"{f['off_ms']:.2f}", "", ""),
                (f"{backend}: with key / off", f"{f['with_key_ms'] / f['off_ms']:.2f}x", "", ""),
            ]
    seal = results["seal_us"]
    table += [
        ("seal one record, key (us)", f"{seal['with_key']:.1f}", "", ""),
        ("seal one record, no key (us)", f"{seal['no_key']:.1f}", "", ""),
    ]

    def report(_: dict[str, Any], rows: list[Any]) -> None:
        print(f"audit log cost: {args.runs} runs, {args.concurrency} at a time ({sys.platform})")
        print_table(rows)

    emit(results, table, as_json=args.json, print_report=report)


if __name__ == "__main__":
    main()
