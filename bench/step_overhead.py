#!/usr/bin/env python
"""Step overhead of a durable Charter run, against the disk's raw commit rate.

Usage::

    python bench/step_overhead.py [--steps 1000] [--runs 100] [--run-steps 100]
                                  [--policy-repeats 3] [--workdir DIR] [--sync-tool]
                                  [--json]

In one process, on fresh SQLite files (WAL, ``synchronous=FULL``, as Charter's store):

1. raw SQLite: ``--steps`` single-row INSERT+COMMIT transactions into an event-shaped table;
2. one ``--steps``-step Charter run (every model response calls a no-op read tool, then a
   final answer), fully durable; wall and CPU time of the work phase only;
3. ``--runs`` concurrent runs of ``--run-steps`` steps, worked by one worker with
   ``concurrency=--runs`` so that group commit shares the flushes;
4. storage growth: a ``--steps``-step run whose tool returns a 200-byte string every step;
5. the governed step's extra CPU: the single run of (2) again, ``--policy-repeats`` times without
   and with a realistic policy set attached to the agent (``examples/policies/support.yaml``
   plus one rule that allows the bench's tool after four others are checked), alternating,
   on fresh files; the medians' difference is what policy adds per step (the decision and
   its ``policy_evaluated`` event), also timed alone (decide + event body, no store).

It is a benchmark, not a test: it asserts nothing, it prints what it measured and whether
each target was met. CPU time is ``time.process_time()``: every thread of the process,
including Charter's SQLite writer thread (and the kernel's work for its fsyncs); part 2 also
prints it split by thread.

The targets are issue 11's, measured as follows:

* "CPU per durable step <= 0.15 ms": process CPU of part 2's work phase / model steps (a
  step: one model answer, its tool call and result, committed; the final answer counts one);
* "wall time <= 1.5x the raw commit loop": part 2's wall per step / part 1's wall per commit
  (printed as raw commits/s / Charter steps/s);
* "100 concurrent 100-step runs >= 5x the single-run step rate": part 3's steps/s / part 2's;
* "<= 0.6 MB for 1,000 steps of 200-byte results": part 4's whole database file after a
  TRUNCATE checkpoint (the empty schema and the agent spec included; the growth over an
  empty store is printed beside it);
* "a governed step <= 10% more CPU than an ungoverned one": part 5's median CPU per step with
  the policy set / without, minus one.
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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from _report import emit
from charter import Agent, Budgets, ModelSpec, Runtime, tool
from charter._engine.governance import Governor, decision_event
from charter.events import RunStarted
from charter.policy import PolicySet
from charter.tools import Tool

RAW_TARGET_RATIO = 1.5  # raw commits/s / Charter steps/s, at most (wall <= 1.5x, issue 11)
CPU_TARGET_MS = 0.15  # CPU per durable step, below
CONCURRENCY_TARGET = 5.0  # concurrent steps/s / single-run steps/s, at least
SIZE_TARGET_BYTES = 600_000  # database after the storage run, at most (0.6 MB, issue 11)
POLICY_SHARE_TARGET = 0.10  # CPU a governed step adds / an ungoverned step's CPU, at most
POLICY_PATH = Path(__file__).resolve().parent.parent / "examples" / "policies" / "support.yaml"
POLICY_ROLES = ("support",)
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


def bench_policy_set() -> PolicySet:
    """The support desk's policy set, with one rule for the bench's tool placed before the
    blanket ``reads`` rule: a call of ``noop`` is checked against the four rules that name no
    tool (kill switch, foreign tenant, sandbox, critical) before this one allows it on a role
    and an argument regex."""
    data = yaml.safe_load(POLICY_PATH.read_text())
    rules = data["policy"]["rules"]
    at = next(i for i, rule in enumerate(rules) if rule["id"] == "reads")
    rules.insert(
        at,
        {
            "id": "bench-lookups",
            "when": {
                "tool": "noop",
                "roles_any": ["support"],
                "args": {"key": {"regex": "k[0-9]+"}},
            },
            "then": "allow",
        },
    )
    return PolicySet.from_dict(data, source=f"{POLICY_PATH} + bench-lookups")


def make_agent(name: str, tool_: Tool, steps: int, *, policy: PolicySet | None = None) -> Agent:
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
        policy=policy,
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


def thread_cpu() -> dict[str, float] | None:
    """CPU seconds so far of each live thread of this process, by thread name (its pool
    suffix dropped), from ``/proc/self/task`` (Linux); None elsewhere. Charter's SQLite
    writer is a thread named ``charter-sqlite-writer``; the event loop runs on MainThread."""
    task = Path("/proc/self/task")
    if not task.is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name.split("_")[0] for t in threading.enumerate()}
    found: dict[str, float] = {}
    for tid, name in names.items():
        try:
            fields = (task / str(tid) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def split_cpu(
    before: dict[str, float] | None, after: dict[str, float] | None, steps: int
) -> dict[str, float] | None:
    """CPU ms per step of each thread between two :func:`thread_cpu` readings."""
    if before is None or after is None or not steps:
        return None
    split = {k: (v - before.get(k, 0.0)) / steps * 1000 for k, v in after.items()}
    return {k: v for k, v in split.items() if v > 0}


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


async def bench_single(
    path: Path, steps: int, tool_: Tool, *, policy: PolicySet | None = None
) -> dict[str, Any]:
    agent = make_agent("bench_single", tool_, steps, policy=policy)
    rt = Runtime.open(db_url(path))
    counter = CommitCounter(rt.store)
    try:
        roles = POLICY_ROLES if policy is not None else ()
        run_id = await rt.start(agent, "benchmark input", roles=roles, principal_tenant="default")
        tx0, w0 = counter.snapshot()
        threads0 = thread_cpu()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await rt.work(run_id=run_id)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        threads1 = thread_cpu()  # before close: the writer thread ends with the store
        tx1, w1 = counter.snapshot()
        record = await rt.get_run(run_id)
    finally:
        await rt.close()
    done = int(record.state.get("step", 0))
    events = db_count(path, "SELECT count(*) FROM events WHERE run_id = ?", run_id)
    ran = db_count(
        path,
        "SELECT count(*) FROM events WHERE run_id = ? AND type = 'tool_call_succeeded'",
        run_id,
    )
    return {
        "status": record.status,
        "tool_calls_run": ran,
        "steps": done,
        "tool_calls": int(record.state.get("tool_calls", 0)),
        "events": events,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps_per_s": done / wall,
        "cpu_ms_per_step": cpu / done * 1000,
        "cpu_ms_per_step_by_thread": split_cpu(threads0, threads1, done),
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
            "SELECT count(*), sum(length(payload)), sum(length(hash)) FROM event_log"
            " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?)",
            (run_id,),
        ).fetchone()
        by_type = dict(
            conn.execute(
                "SELECT type, sum(length(payload)) FROM events WHERE run_id = ? GROUP BY type",
                (run_id,),
            ).fetchall()
        )
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
        "payload_bytes_by_type": by_type,
        "state_bytes": state_bytes,
        "main_bytes": size["main_bytes"],
        "wal_bytes": size["wal_bytes"],
        "total_bytes": total,
        "empty_store_bytes": base,
        "bytes_per_step": total / done,
        "growth_bytes_per_step": (total - base) / done,
        "tables": size["tables"],
    }


# -- 5. the governed step's extra CPU----------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def time_decisions(tool_: Tool, policy: PolicySet, calls: int) -> dict[str, Any]:
    """CPU per decision as the loop makes it (Governor.decide, then the event body), no store."""
    agent = make_agent("bench_policy", tool_, 1, policy=policy)
    started = RunStarted(agent_name=agent.name, agent_version=agent.version,
                         agent_hash=agent.agent_hash, tenant="default", principal="anonymous",
                         input="", roles=POLICY_ROLES,
                         principal_tenant="default")  # fmt: skip
    governor = Governor(agent, started)
    args = [{"key": f"k{i}"} for i in range(calls)]
    outcomes: dict[str, int] = {}
    cpu0 = time.process_time()
    for i, arguments in enumerate(args):
        decision = governor.decide(tool_, arguments)
        assert decision is not None
        decision_event(f"call_{i}_0", tool_.name, decision)
    cpu = time.process_time() - cpu0
    decision = governor.decide(tool_, args[0])
    assert decision is not None and decision.outcome == "allow", decision
    outcomes[decision.outcome] = calls
    return {"calls": calls, "us_per_decision": cpu / calls * 1e6, "outcome": decision.outcome,
            "rule_ids": list(decision.rule_ids)}  # fmt: skip


async def bench_policy(workdir: Path, steps: int, tool_: Tool, repeats: int) -> dict[str, Any]:
    """The single run without and with the policy set, alternating, ``repeats`` times each."""
    policy = bench_policy_set()
    without: list[dict[str, Any]] = []
    with_: list[dict[str, Any]] = []
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        for governed in order:
            name = f"policy_{'on' if governed else 'off'}_{i}.db"
            result = await bench_single(
                workdir / name, steps, tool_, policy=policy if governed else None
            )
            # the same work both ways: every call allowed and run, none denied
            assert result["tool_calls_run"] == steps, result
            (with_ if governed else without).append(result)
    off = _median([r["cpu_ms_per_step"] for r in without])
    on = _median([r["cpu_ms_per_step"] for r in with_])
    alone = time_decisions(tool_, policy, 20_000)
    return {
        "repeats": repeats,
        "policy": f"{policy.name} v{policy.version}, {len(policy.rules)} rules",
        "statuses": sorted({r["status"] for r in [*without, *with_]}),
        "cpu_ms_per_step_without": [r["cpu_ms_per_step"] for r in without],
        "cpu_ms_per_step_with": [r["cpu_ms_per_step"] for r in with_],
        "events_per_step_without": _median([r["events_per_step"] for r in without]),
        "events_per_step_with": _median([r["events_per_step"] for r in with_]),
        "median_cpu_ms_without": off,
        "median_cpu_ms_with": on,
        "added_ms_per_step": on - off,
        "share": (on - off) / off,
        "decision_alone": alone,
        "decision_alone_share": alone["us_per_decision"] / 1000 / off,
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
            f"<= {SIZE_TARGET_BYTES:,} B",
            met(disk["total_bytes"] <= SIZE_TARGET_BYTES),
        ),
        ("DB bytes per step", f"{disk['bytes_per_step']:,.0f} B", "(reference)", "-"),
        *policy_rows(results.get("policy")),
    ]


def policy_rows(pol: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    if pol is None:
        return []
    share, alone = pol["share"], pol["decision_alone_share"]
    return [
        ("CPU per step, no policy (median)", f"{pol['median_cpu_ms_without']:.3f} ms",
         "(reference)", "-"),
        ("CPU per step, with policy (median)", f"{pol['median_cpu_ms_with']:.3f} ms",
         "(reference)", "-"),
        ("governed step's extra CPU", f"{share:+.1%}", f"<= {POLICY_SHARE_TARGET:.0%}",
         "yes" if share <= POLICY_SHARE_TARGET else "no"),
        ("  of which the decision alone", f"{alone:.1%}", "(reference)", "-"),
    ]  # fmt: skip


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
    by_thread = one["cpu_ms_per_step_by_thread"]
    if by_thread:
        parts = ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1])
        )
        print(f"   CPU ms per step by thread (10 ms ticks): {parts}")
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
    pol = results.get("policy")
    if pol is not None:
        alone = pol["decision_alone"]
        print(
            f"5. policy: the run of 2, {pol['repeats']}x without and {pol['repeats']}x with"
            f" {pol['policy']} (statuses {pol['statuses']})"
        )
        fmt = ", ".join
        print(f"   CPU ms/step without: {fmt(f'{v:.3f}' for v in pol['cpu_ms_per_step_without'])}")
        print(f"   CPU ms/step with:    {fmt(f'{v:.3f}' for v in pol['cpu_ms_per_step_with'])}")
        print(
            f"   medians {pol['median_cpu_ms_without']:.3f} -> {pol['median_cpu_ms_with']:.3f} ms:"
            f" {pol['added_ms_per_step'] * 1000:+.1f} us per step ({pol['share']:+.1%});"
            f" events per step {pol['events_per_step_without']:.2f} ->"
            f" {pol['events_per_step_with']:.2f}"
        )
        print(
            f"   the decision alone (Governor.decide + policy_evaluated body, no store):"
            f" {alone['us_per_decision']:.1f} us ({alone['outcome']} by"
            f" {', '.join(alone['rule_ids'])}), {pol['decision_alone_share']:.1%} of a step"
        )
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
        "params": {
            "steps": args.steps,
            "runs": args.runs,
            "run_steps": args.run_steps,
            "policy_repeats": args.policy_repeats,
        },
    }
    results["raw"] = bench_raw(workdir / "raw.db", args.steps)
    results["single"] = await bench_single(workdir / "single.db", args.steps, tool_)
    results["concurrent"] = await bench_concurrent(
        workdir / "concurrent.db", args.runs, args.run_steps, tool_
    )
    results["storage"] = await bench_storage(
        workdir / "storage.db", workdir / "empty.db", args.steps
    )
    if args.policy_repeats > 0:
        results["policy"] = await bench_policy(workdir, args.steps, tool_, args.policy_repeats)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the long runs")
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs")
    parser.add_argument("--run-steps", type=int, default=100, help="steps of each concurrent run")
    parser.add_argument(
        "--policy-repeats",
        type=int,
        default=3,
        help="runs without and with the policy set, each (0: skip the policy figures)",
    )
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
