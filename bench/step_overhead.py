#!/usr/bin/env python
"""Step overhead of a durable Charter run, against the disk's raw commit rate.

Usage::

    python bench/step_overhead.py [--steps 1000] [--runs 100] [--run-steps 100]
                                  [--workdir DIR] [--sync-tool] [--json]

In one process, on fresh SQLite files (WAL, ``synchronous=FULL``, as Charter's store):

1. raw SQLite: ``--steps`` single-row INSERT+COMMIT transactions into an event-shaped table;
2. one ``--steps``-step Charter run (every model response calls a no-op read tool, then a
   final answer), fully durable; wall and CPU time of the work phase only;
3. ``--runs`` concurrent runs of ``--run-steps`` steps, worked by one worker with
   ``concurrency=--runs`` so that group commit shares the flushes;
4. storage growth: a ``--steps``-step run whose tool returns a 200-byte string every step.

It is a benchmark, not a test: it asserts nothing, it prints what it measured and whether
each target was met. CPU time is ``time.process_time()``: every thread of the process,
including Charter's SQLite writer thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import emit
from charter import Agent, Budgets, ModelSpec, Runtime, tool
from charter.tools import Tool

RAW_TARGET_RATIO = 2.0  # raw commits/s / Charter steps/s, at most
CPU_TARGET_MS = 0.15  # CPU per durable step, below
CONCURRENCY_TARGET = 5.0  # concurrent steps/s / single-run steps/s, at least
SIZE_TARGET_BYTES = 1_000_000  # database after the storage run, below (1 MB)
MESSAGE_BYTES = 200


# -- tools --------------------------------------------------------------------------------------


@tool(effect="read")
async def noop(key: str) -> dict[str, Any]:
    """Look nothing up (async: runs on the event loop)."""
    return {"key": key, "ok": True}


@tool(effect="read", name="noop")
def noop_sync(key: str) -> dict[str, Any]:
    """Look nothing up (sync: Charter runs it in a thread)."""
    return {"key": key, "ok": True}


_MESSAGE = "x" * MESSAGE_BYTES


@tool(effect="read")
async def message(key: str) -> str:
    """Return a 200-byte message."""
    return _MESSAGE


def make_agent(name: str, tool_: Tool, steps: int) -> Agent:
    """An agent whose first ``steps`` responses each call ``tool_`` once, then answers."""
    script: list[dict[str, Any]] = [
        {"tool_calls": [{"name": tool_.name, "arguments": {"key": f"k{i}"}}]} for i in range(steps)
    ]
    script.append({"content": "done"})
    return Agent(
        name=name,
        instructions="You are a benchmark. Call the tool, then answer.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[tool_],
        budgets=Budgets(max_steps=steps + 10, max_tool_calls=steps + 10),
    )


# -- helpers ------------------------------------------------------------------------------------


class CommitCounter:
    """Counts the store writer's transactions (one per group commit) and the writes in them.

    Wraps ``SQLiteStore._run_batch`` on the instance: a benchmark may peek at a private hook;
    nothing in Charter changes. ``None`` when the store has no such hook.
    """

    def __init__(self, store: Any) -> None:
        self.transactions = 0
        self.writes = 0
        self.available = hasattr(store, "_run_batch")
        if not self.available:
            return
        original: Callable[[Any, list[Any]], None] = store._run_batch

        def counted(conn: Any, batch: list[Any]) -> None:
            self.transactions += 1
            self.writes += len(batch)
            original(conn, batch)

        store._run_batch = counted

    def snapshot(self) -> tuple[int, int]:
        return self.transactions, self.writes


def db_url(path: Path) -> str:
    return f"sqlite:///{path}"  # absolute path: sqlite:////tmp/...


def db_count(path: Path, sql: str, *args: Any) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql, args).fetchone()[0] or 0)
    finally:
        conn.close()


def fs_type(path: Path) -> str:
    """The file system holding ``path`` (Linux: from /proc/mounts), to say whether fsync is real."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3:
            mount = parts[1]
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, parts[2]
    return kind


# -- 1. raw SQLite --------------------------------------------------------------------------------


def bench_raw(path: Path, n: int) -> dict[str, Any]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,"
        " schema_version INTEGER NOT NULL, at REAL NOT NULL, payload TEXT NOT NULL,"
        " hash TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
    )
    payload = json.dumps({"type": "tool_call_succeeded", "call_id": "call_1_0", "output": {}})
    digest = "ab" * 32
    now = time.time()
    rows = [("run_bench", i + 1, "tool_call_succeeded", 1, now, payload, digest) for i in range(n)]
    sql = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)"
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for row in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, row)
        conn.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    conn.close()
    return {
        "commits": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "commits_per_s": n / wall,
        "cpu_ms_per_commit": cpu / n * 1000,
    }


# -- 2. one long run ------------------------------------------------------------------------------


async def bench_single(path: Path, steps: int, tool_: Tool) -> dict[str, Any]:
    agent = make_agent("bench_single", tool_, steps)
    rt = Runtime.open(db_url(path))
    counter = CommitCounter(rt.store)
    try:
        run_id = await rt.start(agent, "benchmark input")
        tx0, w0 = counter.snapshot()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await rt.work(run_id=run_id)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        tx1, w1 = counter.snapshot()
        record = await rt.get_run(run_id)
    finally:
        await rt.close()
    done = int(record.state.get("step", 0))
    events = db_count(path, "SELECT count(*) FROM events WHERE run_id = ?", run_id)
    return {
        "status": record.status,
        "steps": done,
        "tool_calls": int(record.state.get("tool_calls", 0)),
        "events": events,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps_per_s": done / wall,
        "cpu_ms_per_step": cpu / done * 1000,
        "transactions": tx1 - tx0 if counter.available else None,
        "writes": w1 - w0 if counter.available else None,
        "transactions_per_step": (tx1 - tx0) / done if counter.available else None,
        "events_per_step": events / done,
    }


# -- 3. many concurrent runs ----------------------------------------------------------------------


async def bench_concurrent(path: Path, runs: int, steps: int, tool_: Tool) -> dict[str, Any]:
    agent = make_agent("bench_concurrent", tool_, steps)
    rt = Runtime.open(db_url(path))
    counter = CommitCounter(rt.store)
    try:
        ids = [await rt.start(agent, f"benchmark input {i}") for i in range(runs)]
        tx0, w0 = counter.snapshot()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await rt.work(until_idle=True, concurrency=runs)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        tx1, w1 = counter.snapshot()
        records = [await rt.get_run(run_id) for run_id in ids]
    finally:
        await rt.close()
    done = sum(int(r.state.get("step", 0)) for r in records)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    tx, writes = tx1 - tx0, w1 - w0
    return {
        "runs": runs,
        "statuses": statuses,
        "steps": done,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps_per_s": done / wall,
        "cpu_ms_per_step": cpu / done * 1000,
        "transactions": tx if counter.available else None,
        "writes": writes if counter.available else None,
        "writes_per_transaction": writes / tx if counter.available and tx else None,
    }


# -- 4. storage growth ----------------------------------------------------------------------------


def db_size(path: Path) -> dict[str, Any]:
    """Main file + WAL after a TRUNCATE checkpoint on a fresh connection; per-table if possible."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(f"{path}-wal")
        main_bytes = path.stat().st_size
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        tables: dict[str, int] | None
        try:
            rows = conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
            tables = {str(name): int(size) for name, size in rows}
        except sqlite3.Error:  # dbstat not compiled in
            tables = None
    finally:
        conn.close()
    return {"main_bytes": main_bytes, "wal_bytes": wal_bytes, "tables": tables}


async def bench_storage(path: Path, empty_path: Path, steps: int) -> dict[str, Any]:
    rt = Runtime.open(db_url(empty_path))  # an empty store: the schema's own size
    await rt.close()
    empty = db_size(empty_path)
    agent = make_agent("bench_storage", message, steps)
    rt = Runtime.open(db_url(path))
    try:
        run_id = await rt.start(agent, "benchmark input")
        await rt.work(run_id=run_id)
        record = await rt.get_run(run_id)
    finally:
        await rt.close()
    done = int(record.state.get("step", 0))
    conn = sqlite3.connect(path)
    try:
        events, payload, hashes = conn.execute(
            "SELECT count(*), sum(length(payload)), sum(length(hash)) FROM events WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        state_bytes = conn.execute(
            "SELECT length(state) FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
    finally:
        conn.close()
    size = db_size(path)
    total = size["main_bytes"] + size["wal_bytes"]
    base = empty["main_bytes"] + empty["wal_bytes"]
    return {
        "status": record.status,
        "steps": done,
        "message_bytes": MESSAGE_BYTES,
        "events": events,
        "payload_bytes": payload,
        "hash_bytes": hashes,
        "state_bytes": state_bytes,
        "main_bytes": size["main_bytes"],
        "wal_bytes": size["wal_bytes"],
        "total_bytes": total,
        "empty_store_bytes": base,
        "bytes_per_step": total / done,
        "growth_bytes_per_step": (total - base) / done,
        "tables": size["tables"],
    }


# -- report -------------------------------------------------------------------------------------


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def summary(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    raw, one, many, disk = (results[k] for k in ("raw", "single", "concurrent", "storage"))
    ratio = raw["commits_per_s"] / one["steps_per_s"]
    speedup = many["steps_per_s"] / one["steps_per_s"]
    results["ratio_raw_to_single"] = ratio
    results["concurrent_speedup"] = speedup

    def met(ok: bool) -> str:
        return "yes" if ok else "no"

    return [
        ("raw SQLite commits/s", f"{raw['commits_per_s']:,.0f}", "(reference)", "-"),
        ("single run: steps/s", f"{one['steps_per_s']:,.0f}", "(reference)", "-"),
        (
            "raw commits/s / Charter steps/s",
            f"{ratio:.2f}x",
            f"<= {RAW_TARGET_RATIO:g}x",
            met(ratio <= RAW_TARGET_RATIO),
        ),
        (
            "CPU per durable step",
            f"{one['cpu_ms_per_step']:.3f} ms",
            f"< {CPU_TARGET_MS:g} ms",
            met(one["cpu_ms_per_step"] < CPU_TARGET_MS),
        ),
        (
            "commits (transactions) per step",
            _num(one["transactions_per_step"], ".3f"),
            "(reference)",
            "-",
        ),
        (
            f"{many['runs']} concurrent runs: steps/s",
            f"{many['steps_per_s']:,.0f}",
            "(reference)",
            "-",
        ),
        (
            "concurrent / single steps/s",
            f"{speedup:.2f}x",
            f">= {CONCURRENCY_TARGET:g}x",
            met(speedup >= CONCURRENCY_TARGET),
        ),
        (
            f"DB size, {disk['steps']} steps x {MESSAGE_BYTES} B",
            f"{disk['total_bytes']:,} B",
            f"< {SIZE_TARGET_BYTES:,} B",
            met(disk["total_bytes"] < SIZE_TARGET_BYTES),
        ),
        ("DB bytes per step", f"{disk['bytes_per_step']:,.0f} B", "(reference)", "-"),
    ]


def print_report(results: dict[str, Any], table: list[tuple[str, str, str, str]]) -> None:
    env, raw, one = results["env"], results["raw"], results["single"]
    many, disk = results["concurrent"], results["storage"]
    print(
        f"Python {env['python']}, SQLite {env['sqlite']}, {env['cpus']} CPUs,"
        f" {env['filesystem']} at {env['workdir']}; tool: {env['tool']}"
    )
    print()
    print(f"1. raw SQLite: {raw['commits']} INSERT+COMMIT (WAL, synchronous=FULL)")
    print(
        f"   {raw['wall_s']:.3f} s wall, {raw['commits_per_s']:,.0f} commits/s,"
        f" {raw['cpu_ms_per_commit']:.3f} ms CPU per commit"
    )
    print(
        f"2. one run of {one['steps']} model steps ({one['tool_calls']} tool calls + the final"
        f" answer; {one['status']}), work phase only"
    )
    print(
        f"   {one['wall_s']:.3f} s wall, {one['cpu_s']:.3f} s CPU:"
        f" {one['steps_per_s']:,.0f} steps/s, {one['cpu_ms_per_step']:.3f} ms CPU per step"
    )
    print(
        f"   {one['transactions']} transactions ({one['writes']} writes),"
        f" {one['events']} events: {_num(one['transactions_per_step'], '.3f')} commits and"
        f" {one['events_per_step']:.2f} events per step"
    )
    print(
        f"3. {many['runs']} concurrent runs, {many['steps']} steps in all, statuses"
        f" {many['statuses']}"
    )
    wpt = many["writes_per_transaction"]
    print(
        f"   {many['wall_s']:.3f} s wall, {many['cpu_s']:.3f} s CPU:"
        f" {many['steps_per_s']:,.0f} steps/s, {many['cpu_ms_per_step']:.3f} ms CPU per step;"
        f" {many['transactions']} transactions, {_num(wpt, '.1f')} writes each"
    )
    print(
        f"4. storage: one run of {disk['steps']} model steps ({disk['status']}), each tool step"
        f" adding a {MESSAGE_BYTES}-byte tool result"
    )
    print(
        f"   {disk['main_bytes']:,} B main + {disk['wal_bytes']:,} B WAL ="
        f" {disk['total_bytes']:,} B ({disk['bytes_per_step']:,.0f} B/step;"
        f" {disk['growth_bytes_per_step']:,.0f} B/step over an empty store of"
        f" {disk['empty_store_bytes']:,} B)"
    )
    print(
        f"   {disk['events']} events: payload {disk['payload_bytes']:,} B,"
        f" hashes {disk['hash_bytes']:,} B; run state row {disk['state_bytes']:,} B"
    )
    if disk["tables"]:
        big = {k: v for k, v in disk["tables"].items() if v > 4096}
        rest = [v for k, v in disk["tables"].items() if k not in big]
        parts = [f"{k} {v:,}" for k, v in big.items()]
        if rest:
            parts.append(f"{len(rest)} others {sum(rest):,}")
        print(f"   pages by table/index (B): {', '.join(parts)}")
        print("   (the agents row holds the agent spec, which inlines the whole model script)")
    print()
    widths = [
        max(len(row[i]) for row in [*table, ("figure", "value", "target", "met")]) for i in range(4)
    ]
    header = ("figure", "value", "target", "met")
    for row in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# -- main ---------------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tool_ = noop_sync if args.sync_tool else noop
    results: dict[str, Any] = {
        "env": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "filesystem": fs_type(workdir),
            "workdir": str(workdir),
            "tool": "sync (thread)" if args.sync_tool else "async",
        },
        "params": {"steps": args.steps, "runs": args.runs, "run_steps": args.run_steps},
    }
    results["raw"] = bench_raw(workdir / "raw.db", args.steps)
    results["single"] = await bench_single(workdir / "single.db", args.steps, tool_)
    results["concurrent"] = await bench_concurrent(
        workdir / "concurrent.db", args.runs, args.run_steps, tool_
    )
    results["storage"] = await bench_storage(
        workdir / "storage.db", workdir / "empty.db", args.steps
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the long runs")
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs")
    parser.add_argument("--run-steps", type=int, default=100, help="steps of each concurrent run")
    parser.add_argument("--workdir", type=Path, help="where to put the databases (kept)")
    parser.add_argument(
        "--sync-tool", action="store_true", help="use a sync no-op tool (run in a thread)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON dump instead")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="step_overhead_", dir=args.workdir))
        keep = True
    else:
        workdir = Path(tempfile.mkdtemp(prefix="charter_step_overhead_"))
        keep = False
    try:
        results = asyncio.run(run_all(args, workdir))
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    emit(results, summary(results), as_json=args.json, print_report=print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
