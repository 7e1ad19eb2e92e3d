#!/usr/bin/env python
"""`charter serve` read paths and live events, on SQLite and PostgreSQL.

Usage::

    python bench/server.py [--runs 100000] [--requests 200] [--watchers 200]
                           [--pg-admin URL] [--workdir DIR] [--only sqlite|postgres] [--json]

Against a real ``charter serve`` process and real ``charter worker`` processes, per backend
(a fresh SQLite file; a fresh PostgreSQL database on ``--pg-admin``, dropped at the end):

1. a run's detail with 1,000 events: ``GET /v1/runs/{id}/timeline`` and ``.../events``, p50/p99
   over ``--requests`` requests (issue 12's target: p99 < 50 ms);
2. the runs list over ``--runs`` runs (rows copied from one real run): the first page
   (``GET /v1/runs?limit=50``), p50/p99 (target: p99 < 100 ms);
3. event → visible on SSE: a worker works a run whose read tool takes 10 ms per step while one
   client follows ``/v1/runs/{id}/events/stream``; latency is the client's receive time minus
   the event's ``at`` (stamped by the worker *before* its commit, so this includes the commit),
   p50/p99 (target: p99 < 100 ms);
4. ``--watchers`` SSE watchers vs a worker's step rate: the same 8 runs of 60 steps worked with
   no watcher, then with the watchers spread over those runs, in this one invocation; the ratio
   of steps/s (target: the rate drops by at most 10%, ratio >= 0.9).

It prints figures; it asserts nothing. The machine's other load shows in the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from _report import emit, print_table
from charter import Agent, Budgets, ModelSpec, Runtime
from scale_out import PG_ADMIN_DEFAULT, Databases

TOOLS = '''
import time
from charter import tool

@tool(effect="read")
def tick(n: int) -> str:
    """Wait 10 ms."""
    time.sleep(0.01)
    return "ok"
'''
TARGETS = {"detail_p99_ms": 50, "list_p99_ms": 100, "sse_p99_ms": 100, "step_ratio": 0.9}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def script(steps: int) -> list[dict[str, Any]]:
    call = {"tool_calls": [{"name": "tick", "arguments": {"n": 1}}]}
    return [call] * steps + [{"content": "done"}]


def agent_file(work: Path, name: str, steps: int, tools: str) -> Path:
    (work / f"{name}.json").write_text(json.dumps(script(steps)))
    (work / "prompt.md").write_text("Tick.")
    path = work / f"{name}.yaml"
    path.write_text(
        f"agent:\n  name: {name}\n  instructions: prompt.md\n"
        f"  model: {{provider: scripted, script: {name}.json}}\n"
        f'  tools: ["{tools}"]\n'
        f"  budgets: {{max_steps: {steps + 5}, max_tool_calls: {steps + 5}}}\n"
    )
    return path


def env(work: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(work), *sys.path])}


@contextmanager
def process(work: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", *args], cwd=work, env=env(work),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def serving(work: Path, db: str, *agents: Path) -> Iterator[str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    files = [a for p in agents for a in ("--agent", str(p))]
    with process(work, "serve", "--db", db, "--port", str(port), *files):
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base


def timed(client: httpx.Client, path: str, n: int) -> list[float]:
    client.get(path).raise_for_status()  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        client.get(path).raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def prepare(db: str, work: Path, runs: int) -> tuple[str, str]:
    """A token, and one finished run of ~1,000 events; then ``runs`` copies of its row."""
    sys.path.insert(0, str(work))
    spec = ModelSpec(provider="scripted", script=script(333))
    import bench_tools  # type: ignore[import-not-found]

    agent = Agent(name="big", instructions="Tick.", model=spec, tools=[bench_tools.tick],
                  budgets=Budgets(max_steps=340, max_tool_calls=340))  # fmt: skip
    async with Runtime.open(db) as rt:
        secret, _ = await rt.operations.create_token(principal="bench", tenant="default")
        rt.register(agent)
        run_id = await rt.start(agent, "go")
        await rt.work(until_idle=True)
        columns, rows = await rt.store.table_rows("runs")
        row = next(r for r in rows if r[columns.index("run_id")] == run_id)
        at, no = columns.index("created_at"), columns.index("run_no")
        rid, now = columns.index("run_id"), time.time()
        for start in range(0, runs, 5000):
            batch = []
            for i in range(start, min(runs, start + 5000)):
                copy = list(row)
                copy[rid], copy[no], copy[at] = f"run_copy{i:07d}", 10_000_000 + i, now - 10 - i
                batch.append(tuple(copy))
            await rt.store.insert_rows("runs", columns, batch)
        return secret, run_id


def read_paths(base: str, secret: str, run_id: str, n: int) -> dict[str, Any]:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}) as c:
        events = len(c.get(f"/v1/runs/{run_id}/events").json())
        out: dict[str, Any] = {"events_in_run": events}
        for name, path in (
            ("timeline", f"/v1/runs/{run_id}/timeline"),
            ("events", f"/v1/runs/{run_id}/events"),
            ("list_first_page", "/v1/runs?limit=50"),
        ):
            ms = timed(c, path, n)
            out[name] = {"p50_ms": statistics.median(ms), "p99_ms": pct(ms, 0.99)}
        return out


async def follow(base: str, secret: str, run_id: str, lags: list[float] | None) -> int:
    """Read a run's stream to its end; each event's lag (receive - at) into ``lags``."""
    headers = {"Authorization": f"Bearer {secret}"}
    n = 0
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=None) as c,
        c.stream("GET", f"/v1/runs/{run_id}/events/stream") as s,
    ):
        async for line in s.aiter_lines():
            if line.startswith("event: end"):
                break
            if line.startswith("data: "):
                n += 1
                if lags is not None:
                    lags.append((time.time() - json.loads(line[6:])["at"]) * 1000)
    return n


async def watch_raw(base: str, secret: str, run_id: str) -> None:
    """A cheap watcher: the raw bytes of a run's stream, read until its end event (parsing
    nothing, so that the watchers' own CPU on this 2-core machine stays small)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /v1/runs/{run_id}/events/stream HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {secret}\r\n\r\n".encode()
    )
    tail = b""
    while b"event: end" not in tail:
        chunk = await reader.read(65536)
        if not chunk:
            break
        tail = tail[-16:] + chunk
    writer.close()


async def start_runs(base: str, secret: str, name: str, n: int) -> list[str]:
    headers = {"Authorization": f"Bearer {secret}"}
    out = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as c:
        for _ in range(n):
            started = await c.post("/v1/runs", json={"agent": name, "input": "go"})
            assert started.status_code == 201, started.text
            out.append(started.json()["run_id"])
    return out


async def heads(db: str, run_ids: list[str]) -> list[Any]:
    async with Runtime.open(db, read_only=True) as rt:
        return await rt.run_heads(run_ids)


async def step_rate(db: str, run_ids: list[str]) -> float:
    """Steps/s over the runs: model steps / (last event - first model step), from the log."""
    async with Runtime.open(db, read_only=True) as rt:
        ats, steps = [], 0
        for run_id in run_ids:
            for e in await rt.events(run_id):
                if e.type in ("model_responded", "run_finished"):
                    ats.append(e.at)
                    steps += e.type == "model_responded"
        return steps / (max(ats) - min(ats))


async def live(base: str, secret: str, db: str, work: Path, watchers: int) -> dict[str, Any]:
    lags: list[float] = []
    (one,) = await start_runs(base, secret, "live1", 1)
    with process(work, "worker", "--db", db):
        await follow(base, secret, one, lags)
        plain = await start_runs(base, secret, "rate", 8)
        while not all(h.status == "succeeded" for h in await heads(db, plain)):
            await asyncio.sleep(0.2)
        watched = await start_runs(base, secret, "rate", 8)
        await asyncio.gather(*(watch_raw(base, secret, watched[i % 8]) for i in range(watchers)))
    before, after = await step_rate(db, plain), await step_rate(db, watched)
    return {
        "sse_lag": {"n": len(lags), "p50_ms": statistics.median(lags), "p99_ms": pct(lags, 0.99)},
        "steps_per_s_no_watchers": before,
        "steps_per_s_with_watchers": after,
        "watchers": watchers,
        "ratio": after / before,
    }


def bench(db: str, label: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench_tools.py").write_text(TOOLS)
    t = time.perf_counter()
    secret, run_id = asyncio.run(prepare(db, work, args.runs))
    print(f"[{label}] prepared {args.runs} runs in {time.perf_counter() - t:.0f}s", flush=True)
    files = [agent_file(work, n, s, "bench_tools:tick") for n, s in (("live1", 60), ("rate", 60))]
    with serving(work, db, *files) as base:
        out = {"backend": label, **read_paths(base, secret, run_id, args.requests)}
        print(f"[{label}] read paths: {out}", flush=True)
        out.update(asyncio.run(live(base, secret, db, work, args.watchers)))
    print(f"[{label}] {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument(
        "--pg-admin", default=os.environ.get("CHARTER_TEST_PG_ADMIN", PG_ADMIN_DEFAULT)
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="charter-bench-server-"))
    results = []
    if args.only in (None, "sqlite"):
        db = f"sqlite:///{root / 'sqlite' / 'charter.db'}"
        results.append(bench(db, "sqlite", args, root / "sqlite"))
    if args.only in (None, "postgres"):
        dbs = Databases(args.pg_admin)
        try:
            results.append(bench(dbs.create("server"), "postgres", args, root / "postgres"))
        finally:
            dbs.close()
    table = []
    for r in results:
        b = r["backend"]
        figures = (
            (f"{b}: timeline of {r['events_in_run']} events p99", r["timeline"]["p99_ms"],
             "detail_p99_ms", "ms"),
            (f"{b}: events of the run p99", r["events"]["p99_ms"], "detail_p99_ms", "ms"),
            (f"{b}: runs list over {args.runs} runs, first page p99",
             r["list_first_page"]["p99_ms"], "list_p99_ms", "ms"),
            (f"{b}: event at -> seen on SSE p99 ({r['sse_lag']['n']} events)",
             r["sse_lag"]["p99_ms"], "sse_p99_ms", "ms"),
        )  # fmt: skip
        for name, value, target, unit in figures:
            table.append((name, f"{value:.1f} {unit}", f"< {TARGETS[target]} {unit}",
                          "yes" if value < TARGETS[target] else "NO"))  # fmt: skip
        ratio = r["ratio"]
        table.append((
            f"{b}: steps/s with {r['watchers']} watchers / without",
            f"{r['steps_per_s_with_watchers']:.1f} / {r['steps_per_s_no_watchers']:.1f}"
            f" = {ratio:.2f}",
            f">= {TARGETS['step_ratio']}",
            "yes" if ratio >= TARGETS["step_ratio"] else "NO",
        ))  # fmt: skip

    def report(results: dict[str, Any], rows: list[Any]) -> None:
        print_table(rows)

    emit({"targets": TARGETS, "results": results}, table, as_json=args.json, print_report=report)


if __name__ == "__main__":
    main()
