"""How long `charter stats` takes over a large event log on SQLite.

::

    .venv/bin/python bench/stats.py [--runs 100000] [--workdir DIR] [--repeat 3] [--json]

Fills a fresh SQLite file (through Charter's own schema: the store is opened once to migrate
it) with ``--runs`` runs of exactly 10 events each (1,000,000 events for 100,000 runs), written
in bulk with plain SQL: valid hash chains, payloads shaped like the run loop's (defaults left
out). The mix: 75% succeeded (a read and a write, retries on some), 10% failed (tool errors
after 3 attempts), 8% escalated on a budget, 7% with an approval (granted or denied), created
over the last 30 days, for 4 tenants and 2 agents. Then it times ``store.stats()`` (what
``charter stats`` calls) without filters, with ``since`` = 7 days, and for one tenant, each
``--repeat`` times on the same open store, and the whole ``charter stats --json`` command once
(a child process: interpreter start, imports, and the query). Target: under 2 s for the whole
log. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import emit
from charter._engine.state import RunState
from charter.events import (
    GENESIS_HASH,
    SCHEMA_VERSION,
    chain_hash,
    content_digest,
    verify_chain,
)
from charter.store import SQLiteStore, _event_log

TENANTS = ("acme", "globex", "initech", "umbrella")
AGENTS = ("support", "billing")
DAY = 86_400.0
Row = tuple[str, int, str, int, float, str, str]


def _dump(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _model(step: int, call: str | None, rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"step": step, "provider": "openai", "model": "gpt-4o-mini"}
    body["prompt_hash"] = "p" * 16
    if call is None:
        body["content"] = "Your refund is on its way."
    else:
        body["tool_calls"] = [{"call_id": f"c{step}", "name": call, "arguments": "{}"}]
    body["usage"] = {"input_tokens": rng.randrange(200, 2000), "output_tokens": rng.randrange(80)}
    body["latency_ms"] = round(rng.lognormvariate(6.5, 0.5), 3)
    body["cost_usd"] = round(rng.uniform(0.0001, 0.002), 6)
    return body


def _proposed(step: int, tool: str) -> dict[str, Any]:
    effect = "read" if tool == "lookup" else "write"
    args = {"order_id": "A1042"} if tool == "lookup" else {"order_id": "A1042", "amount": 12.5}
    body = {"step": step, "call_id": f"c{step}", "tool": tool, "effect": effect}
    return {**body, "arguments": args, "tool_version": "2" if tool == "lookup" else "1"}


def _outcome(step: int, tool: str, ok: bool, rng: random.Random) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"call_id": f"c{step}", "tool": tool}
    if ok:
        body["output"] = {"order_id": "A1042", "status": "shipped"}
        if rng.random() < 0.05:
            body["attempts"] = 2
    else:
        body["error"] = {"code": "tool_error", "message": "upstream 503", "retryable": True}
        body["attempts"] = 3
    body["duration_ms"] = round(rng.lognormvariate(3.5, 0.7), 3)
    return ("tool_call_succeeded" if ok else "tool_call_failed"), body


def _run_bodies(kind: str, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """Exactly 10 (type, payload) for a run of ``kind`` (after run_started)."""
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("message_received", {"text": "Where is my refund for A1042?", "source": "input"})
    ]
    if kind == "approval":
        granted = rng.random() < 0.7
        approval = {"approval_id": "ap1", "call_id": "c1"}
        args = {"order_id": "A1042", "amount": 12.5}
        requested = {
            **approval,
            "tool": "refund",
            "arguments": args,
            "arguments_hash": "a" * 64,
            "risk": "high",
            "reason": "refunds over 100 need a lead",
            "requested_by": "ann",
            "tier": "lead",
            "role": "support_lead",
            "expires_at": 0.0,
        }
        decided = {
            **approval,
            "decision": "granted" if granted else "denied",
            "decided_by": "lee",
            "decided_at": 0.0,
            "arguments_hash": "a" * 64,
        }
        denied = {
            "call_id": "c1",
            "tool": "refund",
            "error": {"code": "approval_denied", "message": "no"},
        }
        bodies += [
            ("model_responded", _model(1, "refund", rng)),
            ("tool_call_proposed", _proposed(1, "refund")),
            (
                "policy_evaluated",
                {
                    "call_id": "c1",
                    "tool": "refund",
                    "outcome": "require_approval",
                    "reason": "refunds over 100 need a lead",
                    "policy_hash": "h",
                },
            ),
            ("approval_requested", requested),
            ("approval_decided", decided),
            _outcome(1, "refund", True, rng) if granted else ("tool_call_rejected", denied),
            ("model_responded", _model(2, None, rng)),
            ("run_finished", {"status": "succeeded", "output": "done"}),
        ]
        return bodies
    ok = kind != "failed"
    for step, tool in ((1, "lookup"), (2, "refund")):
        bodies += [
            ("model_responded", _model(step, tool, rng)),
            ("tool_call_proposed", _proposed(step, tool)),
            _outcome(step, tool, ok, rng),
        ]
    if kind == "escalated":
        bodies += [
            ("budget_exceeded", {"budget": "max_steps", "limit": 2.0, "used": 2.0}),
            (
                "run_finished",
                {"status": "escalated", "reason": "budget max_steps exhausted: used 2 of 2"},
            ),
        ]
    else:
        status = "succeeded" if ok else "failed"
        bodies += [
            ("model_responded", _model(3, None, rng)),
            ("run_finished", {"status": status, "output": "done"}),
        ]
    return bodies


def _chain(run_id: str, start: float, bodies: list[tuple[str, dict[str, Any]]]) -> list[Row]:
    rows, prev, at = [], GENESIS_HASH, start
    for seq, (type_, body) in enumerate(bodies, start=1):
        at = round(at + 0.4, 6)
        if type_ == "approval_requested":
            body["expires_at"] = at + 86_400
        elif type_ == "approval_decided":
            body["decided_at"] = round(at + 60 + (seq * 977 % 3600), 3)  # a human took a while
        payload = _dump(body)
        digest = content_digest(type_, payload)
        hash_ = chain_hash(
            run_id=run_id,
            seq=seq,
            type=type_,
            schema_version=SCHEMA_VERSION,
            at=at,
            digest=digest,
            prev=prev,
        )
        rows.append((run_id, seq, type_, SCHEMA_VERSION, at, payload, hash_))
        prev = hash_
    return rows


def fill(path: Path, *, runs: int, seed: int = 7) -> int:
    """Write ``runs`` runs to a migrated SQLite file; return the number of events."""
    asyncio.run(SQLiteStore(path).close())  # creates and migrates the schema
    rng = random.Random(seed)
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO agents VALUES ('h_support', '{}'), ('h_billing', '{}')")
    states = {
        s: RunState(status=s).model_dump_json()  # type: ignore[arg-type]
        for s in ("succeeded", "failed", "escalated")
    }
    kinds = rng.choices(["succeeded", "failed", "escalated", "approval"], [75, 10, 8, 7], k=runs)
    events = 0
    batch_runs: list[tuple[Any, ...]] = []
    batch_events: list[tuple[Any, ...]] = []
    for i, kind in enumerate(kinds):
        run_id = f"run_{i:08d}"
        agent, tenant = AGENTS[i % 2], TENANTS[i % 4]
        created = now - rng.uniform(0, 30 * DAY)
        started = {
            "agent_name": agent,
            "agent_version": "3",
            "agent_hash": f"h_{agent}",
            "tenant": tenant,
            "principal": "ann",
            "input": "Where is my refund?",
        }
        bodies = [("run_started", started), *_run_bodies(kind, rng)]
        rows = _chain(run_id, created, bodies)
        status = "succeeded" if kind == "approval" else kind
        batch_runs.append(
            (
                run_id,
                agent,
                "3",
                f"h_{agent}",
                tenant,
                "ann",
                status,
                None,
                None,
                None,
                None,
                1,
                len(rows),
                rows[-1][6],
                states[status],
                created,
                rows[-1][4],
                i + 1,  # run_no
            )
        )
        batch_events += [(i + 1, *_event_log.stored(*row[1:])) for row in rows]
        events += len(rows)
        if len(batch_runs) >= 5000:
            _flush(conn, batch_runs, batch_events)
    _flush(conn, batch_runs, batch_events)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    for i in range(0, runs, max(1, runs // 200)):  # payloads parse, hashes chain
        rows = conn.execute(
            "SELECT seq, type, schema_version, at, payload, hash FROM events WHERE run_id = ?"
            " ORDER BY seq",
            (f"run_{i:08d}",),
        ).fetchall()
        broken = verify_chain(rows, f"run_{i:08d}")
        assert broken is None, broken
    conn.close()
    return events


def _flush(
    conn: sqlite3.Connection, runs: list[tuple[Any, ...]], events: list[tuple[Any, ...]]
) -> None:
    conn.executemany(f"INSERT INTO runs VALUES ({', '.join('?' * 18)})", runs)
    conn.executemany("INSERT INTO event_log VALUES (?, ?, ?, ?, ?, ?, ?)", events)
    runs.clear()
    events.clear()


async def _time_stats(path: Path, repeat: int) -> dict[str, list[float]]:
    store = SQLiteStore(path)
    cases: dict[str, dict[str, Any]] = {
        "all": {},
        "since 7d": {"since": time.time() - 7 * DAY},
        "tenant acme": {"tenant": "acme"},
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(repeat):
            for name, filters in cases.items():
                started = time.perf_counter()
                await store.stats(
                    since=filters.get("since"), agent=None, tenant=filters.get("tenant")
                )
                timings[name].append(time.perf_counter() - started)
    finally:
        await store.close()
    return timings


def _time_cli(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "charter",
            "stats",
            "--since",
            "all",
            "--json",
            "--db",
            f"sqlite:///{path}",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _print_report(results: dict[str, Any], table: list[Any]) -> None:
    print(
        f"charter stats over {results['runs']:,} runs / {results['events']:,} events"
        f" ({results['db_mb']:.0f} MB SQLite file, filled in {results['fill_s']:.1f} s)"
    )
    for name, seconds in results["timings"].items():
        print(f"  stats {name:<12} best {min(seconds):.3f} s  all {[round(s, 3) for s in seconds]}")
    print(f"  charter stats --json (whole command, new process): {results['cli_s']:.3f} s")
    for figure, value, target, met in table:
        print(f"{figure}: {value} (target {target}) met: {'yes' if met else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = Path(tmp) / "stats.db"
        started = time.perf_counter()
        events = fill(path, runs=args.runs)
        fill_s = time.perf_counter() - started
        timings = asyncio.run(_time_stats(path, args.repeat))
        cli_s = _time_cli(path)
        results = {
            "runs": args.runs,
            "events": events,
            "fill_s": fill_s,
            "timings": timings,
            "cli_s": cli_s,
            "db_mb": path.stat().st_size / 1e6,
        }
    best = min(timings["all"])
    table = [("stats over the whole log", f"{best:.3f} s", "< 2 s", best < 2.0)]
    emit(results, table, as_json=args.json, print_report=_print_report)


if __name__ == "__main__":
    main()
