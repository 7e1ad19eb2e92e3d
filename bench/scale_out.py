#!/usr/bin/env python
"""Scale-out on PostgreSQL: throughput with 1, 2, 4 worker processes, wake-up latency, takeover.

Usage::

    python bench/scale_out.py [--runs 1000] [--steps 20] [--tool-ms 20] [--workers 1,2,4]
                              [--concurrency 100] [--pg-admin URL] [--quick]
                              [--keep-logs DIR] [--timeout 600] [--json]

Each part on a fresh PostgreSQL database (created on ``--pg-admin``, dropped at the end):

1. throughput: for each worker count N, ``--runs`` runs of ``--steps`` steps (each step calls
   ``scale_tools:io_wait``, which sleeps ``--tool-ms``: I/O-bound, like a real tool call, then a
   final answer) are started first (not timed); then N ``python -m charter worker --until-idle``
   processes start at once; runs/s = runs / wall time until the last worker exited;
2. wake-up latency: 200 runs park on ``ask_principal``; two workers (no ``--until-idle``) wait;
   one message every 20 ms; latency = the ``run_resumed`` event's ``at`` - the inbox row's
   ``sent_at`` (the database's clock and the worker's: both this machine's);
3. takeover: 100 runs of 20 steps; worker A (``--lease-seconds 2``) is SIGKILLed 0.5 s after its
   first claim; worker B starts at once; delay = B's ``run_resumed`` (reason ``recovery``) ``at``
   - the kill time, for every run A held.

It is a benchmark, not a test: it asserts nothing, it prints what it measured and whether each
target was met. CPU figures are Linux's: the workers' from ``getrusage(RUSAGE_CHILDREN)``, the
PostgreSQL server's from ``/proc`` (the postmaster and all its backends, every database), the
machine's from ``/proc/stat``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import resource
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from charter import Agent, Budgets, ModelSpec, Runtime, ask_principal
from charter.events import RunResumed

BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = BENCH_DIR.parent / "src"
if str(BENCH_DIR) not in sys.path:  # the tool's reference must be "scale_tools:io_wait"
    sys.path.insert(0, str(BENCH_DIR))

from _report import emit  # noqa: E402
from scale_tools import io_wait  # noqa: E402

T = TypeVar("T")

PG_ADMIN_ENV = "CHARTER_TEST_PG_ADMIN"
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
SPEEDUP_TARGET = 3.0  # 4 workers' runs/s / 1 worker's, at least
SPEEDUP_WORKERS = 4
WAKE_P50_TARGET_MS = 20.0
WAKE_P99_TARGET_MS = 100.0
TAKEOVER_SLACK_S = 1.0  # a killed worker's runs resume within the lease + this
POLL_S = 0.05  # --poll-seconds of the throughput and takeover workers
WAKE_RUNS = 200
WAKE_WORKERS = 2
WAKE_INTERVAL_S = 0.020
TAKEOVER_RUNS = 100
TAKEOVER_STEPS = 20
TAKEOVER_LEASE_S = 2.0
TAKEOVER_HOLD_S = 0.5  # worker A works this long after its first claim, then is killed
OTHER_CPU_WARNING = 0.10  # share of the machine used by other processes that skews a figure
START_BATCH = 50  # runs created concurrently while setting up (not timed)
_WORKED = re.compile(r"worked (\d+) run\(s\); (\d+) error\(s\)")


# -- agents -------------------------------------------------------------------------------------


def io_agent(steps: int, tool_ms: float) -> Agent:
    """``steps`` responses that each call ``io_wait(tool_ms)``, then a final answer."""
    script: list[dict[str, Any]] = [
        {"tool_calls": [{"name": io_wait.name, "arguments": {"ms": tool_ms}}]} for _ in range(steps)
    ]
    script.append({"content": "done"})
    return Agent(
        name="scale_io",
        instructions="You are a benchmark. Call the tool, then answer.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[io_wait],
        budgets=Budgets(max_steps=steps + 10, max_tool_calls=steps + 10),
    )


def ask_agent() -> Agent:
    """Asks the principal (the run parks waiting for a message), then answers."""
    script: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Go on?"}}]},
        {"content": "thanks"},
    ]
    return Agent(
        name="scale_ask",
        instructions="You are a benchmark. Ask, then answer.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[ask_principal],
        budgets=Budgets(max_steps=10, max_tool_calls=10),
    )


# -- databases ----------------------------------------------------------------------------------


class Databases:
    """Fresh databases on the server named by the admin URL; all dropped by :meth:`close`."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        self.names: list[str] = []
        self.prefix = f"charter_bench_{os.getpid()}_{secrets.token_hex(3)}"

    def url(self, dbname: str) -> str:
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{dbname}"))

    def create(self, label: str) -> str:
        name = f"{self.prefix}_{label}"
        self.conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.names.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self.conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if name in self.names:
            self.names.remove(name)

    def close(self) -> None:
        for name in list(self.names):
            with contextlib.suppress(psycopg.Error):
                self.drop(self.url(name))
        self.conn.close()

    def server_version(self) -> str:
        row = self.conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def postmaster_pid(self) -> int | None:
        """The server's main process, if it runs on this machine where /proc shows it."""
        row = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        try:
            status = Path(f"/proc/{row[0] if row else 0}/status").read_text()
        except OSError:
            return None
        found = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
        return int(found.group(1)) if found else None


@contextlib.asynccontextmanager
async def fresh_db(dbs: Databases, label: str) -> AsyncIterator[str]:
    url = dbs.create(label)
    try:
        yield url
    finally:
        dbs.drop(url)


async def query(url: str, text: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(text, args)
        return await cur.fetchall()


async def start_runs(rt: Runtime, agent: Agent, n: int) -> list[str]:
    """Create ``n`` queued runs, a batch at a time (setup: not timed)."""
    ids: list[str] = []
    for first in range(0, n, START_BATCH):
        batch = range(first, min(n, first + START_BATCH))
        ids += await asyncio.gather(*(rt.start(agent, f"benchmark input {i}") for i in batch))
    return ids


async def statuses(rt: Runtime) -> dict[str, int]:
    return dict(sorted((await rt.store.run_counts()).items()))


# -- CPU accounting -----------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()  # fields from the 3rd (state) on


def pg_cpu_s(postmaster: int | None) -> float | None:
    """CPU seconds of the PostgreSQL server: the postmaster, its live children, reaped ones."""
    if postmaster is None:
        return None
    own = _stat_fields(postmaster)
    if own is None:
        return None
    ticks = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields is not None and int(fields[1]) == postmaster:  # ppid
                ticks += int(fields[11]) + int(fields[12])
    return ticks / TICK


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of a live process (0 once it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / TICK


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU used between :meth:`start` and :meth:`stop` by the workers, PostgreSQL, everything.

    Workers that exit in between are counted from ``RUSAGE_CHILDREN`` once reaped; workers that
    live through the whole interval are named by ``pids`` and read from /proc.
    """

    postmaster: int | None
    pids: tuple[int, ...] = ()

    def _sample(self) -> list[float | None]:
        workers = children_cpu_s() + sum(proc_cpu_s(pid) for pid in self.pids)
        return [workers, pg_cpu_s(self.postmaster), machine_busy_s(), self_cpu_s()]

    def start(self) -> None:
        self._wall0 = time.perf_counter()
        self._t0 = self._sample()

    def stop(self) -> dict[str, float | None]:
        pairs = zip(self._t0, self._sample(), strict=True)
        delta = [None if a is None or b is None else b - a for a, b in pairs]
        cpu = dict(zip(("workers", "postgres", "machine", "bench"), delta, strict=True))
        cpu["wall"] = time.perf_counter() - self._wall0
        workers, postgres, machine, bench = delta
        cpu["other"] = None
        if workers is not None and postgres is not None and machine is not None:
            cpu["other"] = machine - workers - postgres - (bench or 0.0)
        return cpu


def cpu_line(cpu: dict[str, float | None]) -> str:
    """Where the CPU went; says so when other processes took a noticeable share."""
    capacity = (os.cpu_count() or 1) * (cpu["wall"] or 1.0)
    busy, other = cpu["machine"], cpu["other"]
    line = (
        f"CPU: workers {_num(cpu['workers'], '.1f', ' s')}, PostgreSQL"
        f" {_num(cpu['postgres'], '.1f', ' s')}, this script {_num(cpu['bench'], '.1f', ' s')},"
        f" other processes {_num(other, '.1f', ' s')}; machine busy"
        f" {_num(None if busy is None else busy / capacity * 100, '.0f', '%')} of"
        f" {os.cpu_count()} CPUs"
    )
    if other is not None and other > OTHER_CPU_WARNING * capacity:
        line += f" (SKEWED: other processes used {other / capacity * 100:.0f}% of the machine)"
    return line


# -- worker processes ---------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(BENCH_DIR), str(SRC_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@dataclass
class WorkerProc:
    proc: asyncio.subprocess.Process
    log: Path

    def report(self) -> tuple[int, int] | None:
        """(runs worked, errors) as the worker printed them when it exited."""
        found = _WORKED.findall(self.log.read_text(errors="replace"))
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    def lease_lost(self) -> int:
        """How many runs the worker said it lost the lease of (and stopped working)."""
        return self.log.read_text(errors="replace").count("lease lost")

    def tail(self, lines: int = 8) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def spawn_worker(url: str, logdir: Path, name: str, *flags: str) -> WorkerProc:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "charter",
            "worker",
            "--db",
            url,
            *flags,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=worker_env(),
        )
    return WorkerProc(proc, log)


async def wait_exit(worker: WorkerProc, timeout: float) -> int | None:
    """The exit code, or None (after SIGKILL) when the worker outlived ``timeout``."""
    try:
        return await asyncio.wait_for(worker.proc.wait(), timeout)
    except TimeoutError:
        worker.proc.kill()
        await worker.proc.wait()
        return None


async def until(
    check: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float, every: float
) -> T:
    """Poll ``check()`` until ``done`` says so or ``timeout`` passes; return the last value."""
    deadline = time.monotonic() + timeout
    value = await check()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(every)
        value = await check()
    return value


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (as numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# -- 1. throughput ------------------------------------------------------------------------------


async def bench_throughput(
    dbs: Databases, args: argparse.Namespace, n_workers: int, logdir: Path, postmaster: int | None
) -> dict[str, Any]:
    async with fresh_db(dbs, f"tp{n_workers}") as url:
        agent = io_agent(args.steps, args.tool_ms)
        async with Runtime.open(url) as rt:
            await start_runs(rt, agent, args.runs)
            flags = ["--until-idle", "--concurrency", str(args.concurrency)]
            flags += ["--poll-seconds", str(POLL_S)]
            meter = CpuMeter(postmaster)
            meter.start()
            wall0 = time.perf_counter()
            workers = await asyncio.gather(
                *(spawn_worker(url, logdir, f"tp{n_workers}_{i}", *flags) for i in range(n_workers))
            )
            codes = await asyncio.gather(*(wait_exit(w, args.timeout) for w in workers))
            wall = time.perf_counter() - wall0
            cpu = meter.stop()
            counts = await statuses(rt)
            [(span_from, span_to, steps)] = await query(
                url,
                "SELECT (SELECT min(at) FROM events WHERE seq = 3), max(updated_at),"
                " sum((state::json->>'step')::int) FROM runs",
            )
    steps = int(steps or 0)
    reports = [w.report() for w in workers]
    failed = [w.tail() for w, c in zip(workers, codes, strict=True) if c != 0]
    span = float(span_to) - float(span_from) if span_from is not None else None
    return {
        "workers": n_workers,
        "runs": args.runs,
        "statuses": counts,
        "all_succeeded": counts.get("succeeded", 0) == args.runs,
        "steps": steps,
        "wall_s": wall,
        "runs_per_s": args.runs / wall,
        "steps_per_s": steps / wall,
        "work_span_s": span,
        "runs_per_s_in_span": args.runs / span if span else None,
        "exit_codes": codes,
        "runs_per_worker": [r[0] if r else None for r in reports],
        "lease_lost_per_worker": [w.lease_lost() for w in workers],
        "errors_per_worker": [r[1] if r else None for r in reports],
        "failed_worker_logs": failed,
        "cpu_s": cpu,
        "cpu_ms_per_step": {
            k: None if cpu[k] is None else cpu[k] / steps * 1000  # type: ignore[operator]
            for k in ("workers", "postgres", "bench", "other")
        }
        if steps
        else None,
    }


# -- 2. wake-up latency -------------------------------------------------------------------------


async def bench_wakeup(
    dbs: Databases, args: argparse.Namespace, logdir: Path, postmaster: int | None
) -> dict[str, Any]:
    timeout = args.timeout
    async with fresh_db(dbs, "wake") as url, Runtime.open(url) as rt:
        ids = await start_runs(rt, ask_agent(), WAKE_RUNS)
        flags = ["--concurrency", str(args.concurrency)]  # default poll: wake-ups are NOTIFYs
        workers = [
            await spawn_worker(url, logdir, f"wake_{i}", *flags) for i in range(WAKE_WORKERS)
        ]
        try:
            parked = await until(
                lambda: statuses(rt),
                lambda c: c.get("waiting", 0) == WAKE_RUNS,
                timeout,
                0.05,
            )
            await asyncio.sleep(0.5)  # let the workers settle into waiting for work
            meter = CpuMeter(postmaster, tuple(w.proc.pid for w in workers))
            meter.start()
            t0 = time.monotonic()
            for i, run_id in enumerate(ids):
                await asyncio.sleep(max(0.0, t0 + i * WAKE_INTERVAL_S - time.monotonic()))
                await rt.send(run_id, "yes")
            sending_s = time.monotonic() - t0
            final = await until(
                lambda: statuses(rt),
                lambda c: c.get("succeeded", 0) == WAKE_RUNS,
                timeout,
                0.05,
            )
            cpu = meter.stop()
        finally:
            for w in workers:
                if w.proc.returncode is None:
                    w.proc.send_signal(signal.SIGTERM)
            codes = [await wait_exit(w, 15.0) for w in workers]
        sent = dict(await query(url, "SELECT run_id, sent_at FROM inbox"))
        latencies: list[float] = []
        reasons: dict[str, int] = {}
        for run_id in ids:
            resumed = [
                (e.body.reason, e.at)
                for e in await rt.events(run_id)
                if isinstance(e.body, RunResumed)
            ]
            for reason, _ in resumed:
                reasons[reason] = reasons.get(reason, 0) + 1
            at = next((at for reason, at in resumed if reason == "message"), None)
            if at is not None and run_id in sent:
                latencies.append((at - float(sent[run_id])) * 1000)
    return {
        "runs": WAKE_RUNS,
        "workers": WAKE_WORKERS,
        "parked": parked.get("waiting", 0),
        "interval_ms": WAKE_INTERVAL_S * 1000,
        "sending_s": sending_s,
        "statuses": final,
        "resumed_reasons": reasons,
        "measured": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "min_ms": min(latencies) if latencies else None,
        "exit_codes_after_sigterm": codes,
        "cpu_s": cpu,
    }


# -- 3. takeover --------------------------------------------------------------------------------


async def bench_takeover(
    dbs: Databases, args: argparse.Namespace, logdir: Path, postmaster: int | None
) -> dict[str, Any]:
    timeout = args.timeout
    async with fresh_db(dbs, "takeover") as url, Runtime.open(url) as rt:
        ids = await start_runs(rt, io_agent(TAKEOVER_STEPS, args.tool_ms), TAKEOVER_RUNS)
        lease = ["--lease-seconds", str(TAKEOVER_LEASE_S), "--poll-seconds", str(POLL_S)]
        conc = ["--concurrency", str(args.concurrency)]
        a = await spawn_worker(url, logdir, "takeover_a", *conc, *lease)
        claimed = await until(
            lambda: statuses(rt), lambda c: c.get("running", 0) > 0, timeout, 0.01
        )
        await asyncio.sleep(TAKEOVER_HOLD_S)
        a.proc.kill()
        killed_at = time.time()
        b = await spawn_worker(url, logdir, "takeover_b", "--until-idle", *conc, *lease)
        held = dict(
            await query(
                url, "SELECT run_id, lease_expires_at FROM runs WHERE lease_owner IS NOT NULL"
            )
        )
        await a.proc.wait()
        meter = CpuMeter(postmaster)
        meter.start()
        code_b = await wait_exit(b, timeout)
        cpu = meter.stop()
        final = await statuses(rt)
        delays: list[float] = []
        after_expiry: list[float] = []
        for run_id in ids:
            for e in await rt.events(run_id):
                if isinstance(e.body, RunResumed) and e.body.reason == "recovery":
                    delays.append(e.at - killed_at)
                    if run_id in held:
                        after_expiry.append(e.at - float(held[run_id]))
        breaks = await rt.verify()
    remaining = [float(v) - killed_at for v in held.values()]
    return {
        "runs": TAKEOVER_RUNS,
        "steps": TAKEOVER_STEPS,
        "lease_s": TAKEOVER_LEASE_S,
        "claimed_before_kill": claimed.get("running", 0) > 0,
        "held_at_kill": len(held),
        "recovered": len(delays),
        "lease_left_at_kill_s": {"min": min(remaining), "max": max(remaining)}
        if remaining
        else None,
        "delay_p50_s": percentile(delays, 50),
        "delay_max_s": max(delays) if delays else None,
        "after_expiry_p50_s": percentile(after_expiry, 50),
        "after_expiry_max_s": max(after_expiry) if after_expiry else None,
        "statuses": final,
        "chain_breaks": len(breaks),
        "exit_code_b": code_b,
        "runs_worked_by_b": (b.report() or (None, None))[0],
        "lease_lost_b": b.lease_lost(),
        "cpu_s": cpu,
        "worker_b_log_tail": b.tail() if code_b != 0 else None,
    }


# -- report -------------------------------------------------------------------------------------


def _num(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + unit


def met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "no")


def summary(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    tp = {r["workers"]: r for r in results["throughput"]}
    base = tp.get(1)
    rows: list[tuple[str, str, str, str]] = []
    speedups: dict[int, float] = {}
    for n, r in tp.items():
        rows.append((f"{n} worker(s): runs/s", f"{r['runs_per_s']:,.1f}", "(reference)", "-"))
        if base is not None and n != 1:
            speedups[n] = r["runs_per_s"] / base["runs_per_s"]
    results["speedup"] = {str(n): s for n, s in speedups.items()}
    for n, s in speedups.items():
        if n == SPEEDUP_WORKERS:
            rows.append(
                (
                    f"{n} workers / 1 worker runs/s",
                    f"{s:.2f}x",
                    f">= {SPEEDUP_TARGET:g}x",
                    met(s >= SPEEDUP_TARGET),
                )
            )
        else:
            rows.append((f"{n} workers / 1 worker runs/s", f"{s:.2f}x", "(reference)", "-"))
    if SPEEDUP_WORKERS not in speedups:
        rows.append(
            (f"{SPEEDUP_WORKERS} workers / 1 worker runs/s", "n/a", f">= {SPEEDUP_TARGET:g}x", "-")
        )
    every = all(r["all_succeeded"] for r in tp.values())
    rows.append(("every throughput run succeeded", "yes" if every else "no", "yes", met(every)))
    w = results["wakeup"]
    p50, p99 = w["p50_ms"], w["p99_ms"]
    rows.append(
        (
            "wake-up p50",
            _num(p50, ".1f", " ms"),
            f"< {WAKE_P50_TARGET_MS:g} ms",
            met(None if p50 is None else p50 < WAKE_P50_TARGET_MS),
        )
    )
    rows.append(
        (
            "wake-up p99",
            _num(p99, ".1f", " ms"),
            f"< {WAKE_P99_TARGET_MS:g} ms",
            met(None if p99 is None else p99 < WAKE_P99_TARGET_MS),
        )
    )
    t = results["takeover"]
    limit = t["lease_s"] + TAKEOVER_SLACK_S
    worst = t["delay_max_s"]
    # Every run A held must have resumed in time; nothing held at the kill: nothing measured.
    ok = (
        None
        if t["held_at_kill"] == 0
        else (t["recovered"] >= t["held_at_kill"] and worst is not None and worst <= limit)
    )
    rows.append(
        (
            "takeover delay, max",
            _num(worst, ".2f", " s"),
            f"<= {limit:g} s",
            met(ok),
        )
    )
    rows.append(("takeover delay, p50", _num(t["delay_p50_s"], ".2f", " s"), "(reference)", "-"))
    shares = [
        cpu["other"] / ((os.cpu_count() or 1) * cpu["wall"])
        for cpu in [*(r["cpu_s"] for r in tp.values()), w["cpu_s"], t["cpu_s"]]
        if cpu["other"] is not None and cpu["wall"]
    ]
    worst_share = max(shares) if shares else None
    results["other_cpu_share_max"] = worst_share
    rows.append(
        (
            "CPU used by other processes, max",
            _num(None if worst_share is None else worst_share * 100, ".0f", "%"),
            f"< {OTHER_CPU_WARNING * 100:g}% (else skewed)",
            met(None if worst_share is None else worst_share < OTHER_CPU_WARNING),
        )
    )
    return rows


def print_throughput(r: dict[str, Any]) -> None:
    n = r["workers"]
    label = f"{n} worker{'s' if n != 1 else ''}"
    print(
        f"   {label}: {r['wall_s']:.2f} s wall -> {r['runs_per_s']:,.1f} runs/s,"
        f" {r['steps_per_s']:,.0f} steps/s; statuses {r['statuses']}"
    )
    span = r["work_span_s"]
    print(
        f"      first step to last finish {_num(span, '.2f', ' s')}"
        f" ({_num(r['runs_per_s_in_span'], ',.1f')} runs/s); runs per worker"
        f" {r['runs_per_worker']} (as each reported; 'lease lost' warnings"
        f" {r['lease_lost_per_worker']}); exit codes {r['exit_codes']}"
    )
    per = r["cpu_ms_per_step"] or {}
    print(f"      {cpu_line(r['cpu_s'])}")
    print(
        f"      per step: workers {_num(per.get('workers'), '.2f', ' ms')} (with their start-up),"
        f" PostgreSQL {_num(per.get('postgres'), '.2f', ' ms')}"
    )
    for tail in r["failed_worker_logs"]:
        print("      a worker failed; its log ends:")
        print("        " + tail.replace("\n", "\n        "))


def print_report(results: dict[str, Any], table: list[tuple[str, str, str, str]]) -> None:
    env, p = results["env"], results["params"]
    print(
        f"PostgreSQL {env['postgres']} at {env['server']}, Python {env['python']},"
        f" {env['cpus']} CPUs; workers: python -m charter worker --concurrency"
        f" {p['concurrency']}"
    )
    print(
        f"runs of {p['steps']} steps, each calling io_wait({p['tool_ms']:g} ms), then a final"
        " answer"
    )
    if env["postmaster"] is None:
        print("(PostgreSQL's processes are not visible here: its CPU is not measured)")
    print()
    print(
        f"1. throughput: {p['runs']} runs, started first (not timed); N workers started at once"
        f" with --until-idle --poll-seconds {POLL_S:g}; wall = until the last exited"
    )
    for r in results["throughput"]:
        print_throughput(r)
    for n, s in results["speedup"].items():
        print(f"   {n} workers / 1 worker: {s:.2f}x")
    w = results["wakeup"]
    print(
        f"2. wake-up latency: {w['runs']} runs parked on ask_principal ({w['parked']} waiting),"
        f" {w['workers']} workers (default --poll-seconds 0.2: faster means LISTEN/NOTIFY),"
        f" one message every {w['interval_ms']:g} ms ({w['sending_s']:.1f} s)"
    )
    print(
        f"   sent_at -> run_resumed: p50 {_num(w['p50_ms'], '.1f')} ms, p95"
        f" {_num(w['p95_ms'], '.1f')} ms, p99 {_num(w['p99_ms'], '.1f')} ms, max"
        f" {_num(w['max_ms'], '.1f')} ms, min {_num(w['min_ms'], '.1f')} ms"
        f" ({w['measured']} measured)"
    )
    print(
        f"   statuses {w['statuses']}; resumed by {w['resumed_reasons']}; workers' exit codes"
        f" after SIGTERM {w['exit_codes_after_sigterm']}"
    )
    print(f"   while sending and until all finished: {cpu_line(w['cpu_s'])}")
    t = results["takeover"]
    left = t["lease_left_at_kill_s"]
    print(
        f"3. takeover: {t['runs']} runs of {t['steps']} steps; worker A (--lease-seconds"
        f" {t['lease_s']:g}) SIGKILLed {TAKEOVER_HOLD_S:g} s after its first claim; worker B"
        " started at once (--until-idle)"
    )
    lease_left = (
        f"{left['min']:.2f}-{left['max']:.2f} s" if left else "n/a"
    )  # how long A's leases still ran
    print(
        f"   A held {t['held_at_kill']} runs at the kill (leases ending {lease_left} later);"
        f" B resumed {t['recovered']} with reason 'recovery' and reported {t['runs_worked_by_b']}"
        f" worked ({t['lease_lost_b']} 'lease lost' warnings)"
    )
    print(
        f"   kill -> run_resumed: p50 {_num(t['delay_p50_s'], '.2f')} s, max"
        f" {_num(t['delay_max_s'], '.2f')} s (lease + {TAKEOVER_SLACK_S:g} s ="
        f" {t['lease_s'] + TAKEOVER_SLACK_S:g} s); after the lease expired: p50"
        f" {_num(t['after_expiry_p50_s'], '.3f')} s, max {_num(t['after_expiry_max_s'], '.3f')} s"
    )
    print(
        f"   statuses {t['statuses']}; hash chains broken: {t['chain_breaks']}; B's exit code"
        f" {t['exit_code_b']}"
    )
    print(f"   while B worked: {cpu_line(t['cpu_s'])}")
    if t["worker_b_log_tail"]:
        print("   worker B's log ends:")
        print("     " + t["worker_b_log_tail"].replace("\n", "\n     "))
    print(f"total time: {results['total_s']:.0f} s")
    print()
    widths = [
        max(len(row[i]) for row in [*table, ("figure", "value", "target", "met")]) for i in range(4)
    ]
    header = ("figure", "value", "target", "met")
    for row in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# -- main ---------------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    dbs = Databases(args.pg_admin)
    try:
        postmaster = dbs.postmaster_pid()
        admin = urlsplit(args.pg_admin)
        results: dict[str, Any] = {
            "env": {
                "python": platform.python_version(),
                "postgres": dbs.server_version(),
                "server": f"{admin.hostname}:{admin.port or 5432}",
                "cpus": os.cpu_count(),
                "postmaster": postmaster,
            },
            "params": {
                "runs": args.runs,
                "steps": args.steps,
                "tool_ms": args.tool_ms,
                "workers": args.workers,
                "concurrency": args.concurrency,
                "quick": args.quick,
            },
        }
        results["throughput"] = [
            await bench_throughput(dbs, args, n, logdir, postmaster) for n in args.workers
        ]
        results["wakeup"] = await bench_wakeup(dbs, args, logdir, postmaster)
        results["takeover"] = await bench_takeover(dbs, args, logdir, postmaster)
    finally:
        dbs.close()
    results["total_s"] = time.perf_counter() - started
    return results


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts must be positive")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per throughput measurement")
    parser.add_argument("--steps", type=int, default=20, help="tool steps of each run")
    parser.add_argument("--tool-ms", type=float, default=20.0, help="how long each tool call waits")
    parser.add_argument(
        "--workers", type=worker_counts, default=[1, 2, 4], help="worker counts (default 1,2,4)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=100, help="runs each worker works at once"
    )
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get(PG_ADMIN_ENV, PG_ADMIN_DEFAULT),
        help=f"URL of a role that may create databases (default: ${PG_ADMIN_ENV} or local)",
    )
    parser.add_argument("--quick", action="store_true", help="200 runs x 10 steps, for a fast look")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="give up on a worker after this many seconds"
    )
    parser.add_argument("--keep-logs", type=Path, help="keep the workers' logs in this directory")
    parser.add_argument("--json", action="store_true", help="print a JSON dump instead")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.steps = 200, 10
    try:
        psycopg.connect(args.pg_admin, autocommit=True, connect_timeout=5).close()
    except psycopg.Error as exc:
        where = urlsplit(args.pg_admin)
        reason = str(exc).strip().splitlines()[0]
        print(f"cannot reach PostgreSQL at {where.hostname}:{where.port or 5432}: {reason}")
        return 2
    if args.keep_logs is not None:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        logdir = Path(tempfile.mkdtemp(prefix="scale_out_", dir=args.keep_logs))
        results = asyncio.run(run_all(args, logdir))
    else:
        with tempfile.TemporaryDirectory(prefix="charter_scale_out_") as tmp:
            results = asyncio.run(run_all(args, Path(tmp)))
    emit(results, summary(results), as_json=args.json, print_report=print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
