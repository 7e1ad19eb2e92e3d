#!/usr/bin/env python
"""Charter against LangGraph and DBOS: the same durable workload, in the same run.

Usage::

    python bench/peers.py [--steps 1000] [--repeats 3] [--no-history] [--workdir DIR] [--json]

The peers come from an optional extra: ``pip install -e '.[bench]'`` (langgraph,
langgraph-checkpoint-sqlite, dbos). A peer that is not installed is skipped with a line that
says so; Charter's row and the raw SQLite floor are always measured.

The workload, for every system: ``--steps`` agent steps, each one a model answer that calls a
read tool once (the answer comes from a script, the tool returns a 200-byte string at once),
then one final answer: ``--steps + 1`` steps, each committed durably before the next one
starts. Every system writes to a fresh SQLite file in WAL mode with ``synchronous=FULL`` (the
WAL is fsynced at every commit; NORMAL would fsync only at checkpoints and could lose the last
commits on power loss, not on a process crash). What each one commits per step:

* **raw SQLite** (the floor): one single-row ``INSERT`` + ``COMMIT`` of an event-shaped row
  (``step_overhead.py``'s loop, WAL, ``synchronous=FULL``). No work, no serialisation.
* **Charter**: one transaction per step (group commit: ~1.0 writer transactions a step)
  appending the step's events (``model_responded``, ``tool_call_proposed``,
  ``tool_call_succeeded``: a hash-chained row each) and updating the run's row; the model is
  Charter's scripted double, as in ``step_overhead.py``; WAL and ``synchronous=FULL`` are
  Charter's defaults. The agent row holds the agent spec, which inlines the whole script
  (reported apart in the storage figures).
* **LangGraph** (``SqliteSaver``, ``durability="sync"``): a graph whose one node does a step
  (script answer + tool call) and loops back to itself until the final answer. Per superstep
  the checkpointer commits twice: ``put_writes`` (the node's writes, one row per channel
  written) and ``put`` (a checkpoint: every channel's current value, msgpack, plus metadata).
  The state holds the step counter and the *latest* answer and tool results (overwritten each
  step), so the checkpoint does not grow. ``SqliteSaver.setup()`` sets WAL; the bench opens
  the connection and sets ``synchronous=FULL`` on it (SQLite's default here, stated anyway).
* **LangGraph, history** (skip with ``--no-history``): the same graph, but the state keeps
  the conversation as a list with an appending reducer, as ``MessagesState`` does (an agent's
  model needs it). Every checkpoint then re-serialises the whole history: storage and CPU per
  step grow with the run's length. Shown because it is how LangGraph agents are usually
  written; the row above is the fair floor.
* **DBOS** (SQLite system database): a workflow that calls one ``@DBOS.step`` per agent step
  (script answer + tool call, returning both); DBOS records each step's output (pickled) in
  ``operation_outputs``, one transaction per step, plus the workflow's status, input and
  output at its start and end. DBOS does not set WAL on SQLite: the bench sets
  ``journal_mode=WAL`` on the file before launch (it persists in the file) and
  ``synchronous=FULL`` on every connection DBOS opens (a SQLAlchemy connect listener; DBOS's
  own listener sets ``IMMEDIATE`` transactions and a busy timeout), and reports the modes the
  connections saw. DBOS's background threads (queue and notification pollers) run during the
  measurement and count in its CPU.

Measured per system, after an untimed 20-step warm-up run of each:

* wall (``time.perf_counter``) and CPU (``time.process_time``: every thread of this process,
  so Charter's SQLite writer thread and DBOS's pollers count) of the work phase only (the run;
  not opening the store, compiling the graph or launching DBOS);
* write commits per step (Charter: its writer's transactions; LangGraph: ``put`` and
  ``put_writes`` calls; DBOS: SQLAlchemy commit events whose connection changed a row, i.e.
  not its read-only look-ups, which are counted apart);
* storage: main file + ``-wal`` after a ``PRAGMA wal_checkpoint(TRUNCATE)`` on a fresh
  connection once the system has closed; per step, less the same system's empty store;
* the share of the machine's CPU that other processes used during each measured phase
  (``/proc/stat``): on a shared machine it says how far to trust a row, wall time above all.

``--repeats`` rounds, each on fresh files, the systems in a rotated order each round; the
figures are the medians, and the ratios (peer ÷ Charter) are of medians from this one run. All
in one process, one system at a time. It is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import operator
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, TypedDict

from charter import Runtime
from scale_out import machine_busy_s
from step_overhead import (
    MESSAGE_BYTES,
    CommitCounter,
    bench_raw,
    db_size,
    db_url,
    fs_type,
    make_agent,
    message,
)

WARMUP_STEPS = 20
EXTRA_HINT = "pip install -e '.[bench]'"
# the modules each peer needs: it is measured when they all import, skipped otherwise
PEERS = {
    "langgraph": ("langgraph.graph", "langgraph.checkpoint.sqlite"),
    "langgraph_history": ("langgraph.graph", "langgraph.checkpoint.sqlite"),
    "dbos": ("dbos", "sqlalchemy"),
}
SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
LABELS = {
    "raw": "raw SQLite INSERT+COMMIT",
    "charter": "Charter",
    "langgraph": "LangGraph (SqliteSaver, sync)",
    "langgraph_history": "LangGraph, state keeps history",
    "dbos": "DBOS (SQLite, WAL)",
}
_MESSAGE = "x" * MESSAGE_BYTES


# -- the workload the peers run ------------------------------------------------------------------


def model_answer(i: int, steps: int) -> dict[str, Any]:
    """The scripted model's answer at step ``i``: a call of the read tool, the last one text."""
    if i < steps:
        call = {"id": f"call_{i}", "name": "message", "arguments": {"key": f"k{i}"}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": "done", "tool_calls": []}


def read_tool(key: str) -> str:
    """The read tool: a 200-byte answer, at once."""
    return _MESSAGE


def agent_step(i: int, steps: int) -> dict[str, Any]:
    """One step: the model's answer, then each tool call it asked for."""
    answer = model_answer(i, steps)
    results = [read_tool(**call["arguments"]) for call in answer["tool_calls"]]
    return {"answer": answer, "results": results}


# -- helpers ------------------------------------------------------------------------------------


def unimportable(modules: tuple[str, ...]) -> str | None:
    """Why one of ``modules`` cannot be imported, or None."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"cannot import {module} ({exc})"
    return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("charter", "langgraph", "langgraph-checkpoint-sqlite", "dbos", "SQLAlchemy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def storage(path: Path, empty_bytes: int | None, steps: int) -> dict[str, Any]:
    size = db_size(path)
    total = size["main_bytes"] + size["wal_bytes"]
    return {
        "main_bytes": size["main_bytes"],
        "wal_bytes": size["wal_bytes"],
        "total_bytes": total,
        "empty_store_bytes": empty_bytes,
        "bytes_per_step": total / steps,
        "growth_bytes_per_step": None if empty_bytes is None else (total - empty_bytes) / steps,
        "tables": size["tables"],
    }


class Phase:
    """Wall and CPU time of a work phase, and the share of the machine's CPU that other
    processes used meanwhile (``/proc/stat``; None where there is none)."""

    wall = cpu = 0.0
    others: float | None = None

    def __enter__(self) -> Phase:
        self._busy = machine_busy_s()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        busy = machine_busy_s()
        if busy is not None and self._busy is not None and self.wall > 0:
            cores = os.cpu_count() or 1
            share = (busy - self._busy - self.cpu) / (self.wall * cores)
            self.others = min(1.0, max(0.0, share))  # clock ticks: short phases overshoot


def per_step(steps: int, phase: Phase, writes: int | None) -> dict[str, Any]:
    return {
        "steps": steps,
        "wall_s": phase.wall,
        "cpu_s": phase.cpu,
        "wall_ms_per_step": phase.wall / steps * 1000 if steps else None,
        "cpu_ms_per_step": phase.cpu / steps * 1000 if steps else None,
        "commits": writes,
        "commits_per_step": writes / steps if writes is not None and steps else None,
        "others_cpu_share": phase.others,
    }


# -- Charter ------------------------------------------------------------------------------------


async def _charter_run(path: Path, steps: int) -> dict[str, Any]:
    agent = make_agent("bench_peers", message, steps)
    rt = Runtime.open(db_url(path))
    counter = CommitCounter(rt.store)
    try:
        run_id = await rt.start(agent, "benchmark input")
        tx0, _ = counter.snapshot()
        with Phase() as phase:
            await rt.work(run_id=run_id)
        tx1, _ = counter.snapshot()
        record = await rt.get_run(run_id)
    finally:
        await rt.close()
    done = int(record.state.get("step", 0))
    out = per_step(done, phase, tx1 - tx0 if counter.available else None)
    conn = sqlite3.connect(path)
    try:
        types = conn.execute(
            "SELECT type, count(*) FROM events WHERE run_id = ? GROUP BY type", (run_id,)
        ).fetchall()
        spec = conn.execute("SELECT sum(length(spec)) FROM agents").fetchone()[0]
    finally:
        conn.close()
    out.update(status=record.status, events={str(t): int(n) for t, n in types})
    out["agent_spec_bytes"] = int(spec or 0)
    return out


def run_charter(path: Path, steps: int) -> dict[str, Any]:
    return asyncio.run(_charter_run(path, steps))


def empty_charter(path: Path) -> None:
    async def open_close() -> None:
        rt = Runtime.open(db_url(path))
        await rt.close()

    asyncio.run(open_close())


# -- LangGraph ----------------------------------------------------------------------------------


class _Latest(TypedDict):
    step: int
    answer: dict[str, Any]
    results: list[str]


class _History(TypedDict):
    step: int
    messages: Annotated[list[dict[str, Any]], operator.add]


@contextmanager
def _saver(path: Path) -> Iterator[Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    class CountingSaver(SqliteSaver):
        """Counts the checkpointer's write calls (each one is one commit)."""

        commits = 0

        def put(self, *args: Any, **kwargs: Any) -> Any:
            self.commits += 1
            return super().put(*args, **kwargs)

        def put_writes(self, *args: Any, **kwargs: Any) -> None:
            self.commits += 1
            super().put_writes(*args, **kwargs)

    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = CountingSaver(conn)
        saver.setup()  # journal_mode=WAL and the tables
        conn.execute("PRAGMA synchronous=FULL")
        yield saver
    finally:
        conn.close()


def _graph(steps: int, history: bool) -> Any:
    from langgraph.graph import END, START, StateGraph

    def node(state: dict[str, Any]) -> dict[str, Any]:
        i = state["step"]
        step = agent_step(i, steps)
        if history:
            tool_messages = [
                {"role": "tool", "tool_call_id": call["id"], "content": result}
                for call, result in zip(step["answer"]["tool_calls"], step["results"], strict=True)
            ]
            return {"step": i + 1, "messages": [step["answer"], *tool_messages]}
        return {"step": i + 1, "answer": step["answer"], "results": step["results"]}

    def route(state: dict[str, Any]) -> str:
        return "agent" if state["step"] <= steps else END

    graph = StateGraph(_History if history else _Latest)
    graph.add_node("agent", node)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route)
    return graph


def run_langgraph(path: Path, steps: int, *, history: bool = False) -> dict[str, Any]:
    graph = _graph(steps, history)
    config = {"configurable": {"thread_id": "bench"}, "recursion_limit": steps + 10}
    start: dict[str, Any] = {"step": 0, "messages": []} if history else {"step": 0}
    with _saver(path) as saver:
        app = graph.compile(checkpointer=saver)
        modes = (
            saver.conn.execute("PRAGMA journal_mode").fetchone()[0],
            SYNCHRONOUS[saver.conn.execute("PRAGMA synchronous").fetchone()[0]],
        )
        with Phase() as phase:
            final = app.invoke(start, config, durability="sync")
        commits = saver.commits
    conn = sqlite3.connect(path)
    try:
        checkpoints, blob = conn.execute(
            "SELECT count(*), sum(length(checkpoint)) FROM checkpoints"
        ).fetchone()
        writes = conn.execute("SELECT count(*) FROM writes").fetchone()[0]
    finally:
        conn.close()
    done = int(final["step"])
    out = per_step(done, phase, commits)
    out.update(
        status="succeeded" if done == steps + 1 else "incomplete",
        journal_mode=modes[0],
        synchronous=modes[1],
        checkpoints=checkpoints,
        checkpoint_blob_bytes=blob,
        write_rows=writes,
    )
    return out


def empty_langgraph(path: Path) -> None:
    with _saver(path):
        pass


# -- DBOS ---------------------------------------------------------------------------------------


class _Dbos:
    """DBOS's workflow and step, registered once per process; connection modes and commits
    counted by SQLAlchemy listeners on every engine (DBOS's are the only ones here)."""

    _made: _Dbos | None = None

    def __init__(self) -> None:
        import sqlalchemy as sa
        from dbos import DBOS

        self.dbos = DBOS
        self.modes: set[tuple[str, str]] = set()
        self.transactions = 0  # every transaction ended by a commit
        self.commits = 0  # those that wrote

        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA synchronous=FULL")
            mode = dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]
            self.modes.add((str(mode), SYNCHRONOUS[int(sync)]))

        changes: dict[int, int] = {}

        def on_commit(conn: Any) -> None:
            # a transaction that changed no row (DBOS reads in its own transactions, e.g. the
            # look-up of a step's recorded output before it runs) wrote nothing to commit
            self.transactions += 1
            dbapi = conn.connection.dbapi_connection
            total = dbapi.total_changes
            if total != changes.get(id(dbapi)):
                changes[id(dbapi)] = total
                self.commits += 1

        sa.event.listen(sa.engine.Engine, "connect", on_connect)
        sa.event.listen(sa.engine.Engine, "commit", on_commit)

        @DBOS.step()
        def bench_step(i: int, steps: int) -> dict[str, Any]:
            return agent_step(i, steps)

        @DBOS.workflow()
        def bench_workflow(steps: int) -> int:
            done = 0
            for i in range(steps + 1):
                bench_step(i, steps)
                done += 1
            return done

        self.workflow = bench_workflow

    @classmethod
    def get(cls) -> _Dbos:
        if cls._made is None:
            cls._made = cls()
        return cls._made

    @contextmanager
    def launched(self, path: Path) -> Iterator[None]:
        conn = sqlite3.connect(path)  # WAL persists in the file; DBOS leaves the mode alone
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        self.modes.clear()
        self.dbos(
            config={
                "name": "charter_peers_bench",
                "system_database_url": f"sqlite:///{path}",
                "log_level": "WARNING",
            }
        )
        self.dbos.launch()
        try:
            yield
        finally:
            self.dbos.destroy()


def run_dbos(path: Path, steps: int) -> dict[str, Any]:
    peer = _Dbos.get()
    with peer.launched(path):
        commits0, transactions0 = peer.commits, peer.transactions
        with Phase() as phase:
            done = peer.workflow(steps)
        commits = peer.commits - commits0
        transactions = peer.transactions - transactions0
        modes = sorted(peer.modes)
    conn = sqlite3.connect(path)
    try:
        outputs, blob = conn.execute(
            "SELECT count(*), sum(length(output)) FROM operation_outputs"
        ).fetchone()
    finally:
        conn.close()
    out = per_step(int(done), phase, commits)
    out.update(
        status="succeeded" if done == steps + 1 else "incomplete",
        transactions=transactions,
        connection_modes=[{"journal_mode": m, "synchronous": s} for m, s in modes],
        step_outputs=outputs,
        step_output_bytes=blob,
    )
    return out


def empty_dbos(path: Path) -> None:
    with _Dbos.get().launched(path):
        pass


# -- the rounds ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def measure(name: str, path: Path, steps: int) -> dict[str, Any]:
    if name == "raw":
        with Phase() as phase:  # for the others' share; the loop's own times are bench_raw's
            raw = bench_raw(path, steps)
        phase.wall, phase.cpu = raw["wall_s"], raw["cpu_s"]
        return per_step(steps, phase, steps)
    if name == "charter":
        return run_charter(path, steps)
    if name == "langgraph":
        return run_langgraph(path, steps)
    if name == "langgraph_history":
        return run_langgraph(path, steps, history=True)
    return run_dbos(path, steps)


EMPTY: dict[str, Callable[[Path], None]] = {
    "charter": empty_charter,
    "langgraph": empty_langgraph,
    "langgraph_history": empty_langgraph,
    "dbos": empty_dbos,
}


def run_all(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    systems = ["raw", "charter", "langgraph", "dbos"]
    if args.history:
        systems.insert(3, "langgraph_history")
    skipped: dict[str, str] = {}
    for name in list(systems):
        why = unimportable(PEERS.get(name, ()))
        if why is not None:
            skipped[name] = why
            systems.remove(name)
    empty: dict[str, int] = {}
    for name in systems:
        if name in EMPTY:
            path = workdir / f"empty_{name}.db"
            EMPTY[name](path)
            size = db_size(path)
            empty[name] = size["main_bytes"] + size["wal_bytes"]
    for name in systems:  # a short run first: imports and caches warm outside the rounds
        path = workdir / f"warmup_{name}.db"
        measure(name, path, min(args.steps, WARMUP_STEPS))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for r in range(args.repeats):
        shift = r % len(systems)
        for name in systems[shift:] + systems[:shift]:
            path = workdir / f"{name}_{r}.db"
            result = measure(name, path, args.steps)
            result["storage"] = storage(path, empty.get(name), result["steps"] or 1)
            rounds[name].append(result)
            if not args.keep_files:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {
        "env": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "filesystem": fs_type(workdir),
            "workdir": str(workdir),
            "versions": versions(),
        },
        "params": {"steps": args.steps, "repeats": args.repeats, "message_bytes": MESSAGE_BYTES},
        "skipped": skipped,
        "systems": {name: summarise(name, rounds[name]) for name in systems},
    }


def summarise(name: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str, where: str | None = None) -> float | None:
        values = [(r[where] if where else r)[key] for r in rounds]
        present = [v for v in values if v is not None]
        return _median(present) if present else None

    return {
        "label": LABELS[name],
        "statuses": sorted({str(r.get("status", "-")) for r in rounds}),
        "steps": rounds[0]["steps"],
        "cpu_ms_per_step": med("cpu_ms_per_step"),
        "wall_ms_per_step": med("wall_ms_per_step"),
        "commits_per_step": med("commits_per_step"),
        "others_cpu_share": med("others_cpu_share"),
        "total_bytes": med("total_bytes", "storage"),
        "growth_bytes_per_step": med("growth_bytes_per_step", "storage"),
        "empty_store_bytes": rounds[0]["storage"]["empty_store_bytes"],
        "rounds": rounds,
    }


# -- report -------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.2f}x"


def summary(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str, str]]:
    """One row per system: CPU and wall per step, storage, and each ratio to Charter."""
    systems = results["systems"]
    base = systems.get("charter", {})
    rows = []
    for name, s in systems.items():
        stored = name != "raw"  # the floor's table is not a store
        growth = s["growth_bytes_per_step"]
        rows.append(
            (
                s["label"],
                _fmt(s["cpu_ms_per_step"], ".3f"),
                _ratio(s["cpu_ms_per_step"], base.get("cpu_ms_per_step")),
                _fmt(s["wall_ms_per_step"], ".3f"),
                _ratio(s["wall_ms_per_step"], base.get("wall_ms_per_step")),
                f"{s['total_bytes'] / 1e6:,.2f} MB" if stored else "-",
                _fmt(growth, ",.0f") if stored else "-",
                _ratio(growth, base.get("growth_bytes_per_step")) if stored else "-",
            )
        )
    return rows


HEADER = ("system", "CPU ms/step", "x Charter", "wall ms/step", "x Charter",
          "storage", "B/step", "x Charter")  # fmt: skip
JSON_KEYS = ("system", "cpu_ms_per_step", "cpu_ratio", "wall_ms_per_step", "wall_ratio",
             "storage", "growth_bytes_per_step", "growth_ratio")  # fmt: skip


def print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, tuple("-" * w for w in widths), *rows]:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def print_report(results: dict[str, Any], table: list[Any]) -> None:
    env, params = results["env"], results["params"]
    print(
        f"Python {env['python']}, SQLite {env['sqlite']}, {env['cpus']} CPUs,"
        f" {env['filesystem']} at {env['workdir']}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v is not None))
    print(
        f"{params['steps']} tool steps + the final answer per run, a {params['message_bytes']}-byte"
        f" tool result each; medians of {params['repeats']} round(s); WAL, synchronous=FULL"
    )
    for name, why in results["skipped"].items():
        print(f"skipped {LABELS[name]}: {why}; install the extra: {EXTRA_HINT}")
    print()
    for s in results["systems"].values():
        cpu = ", ".join(f"{r['cpu_ms_per_step']:.3f}" for r in s["rounds"])
        commits = _fmt(s["commits_per_step"], ".2f")
        growth = s["growth_bytes_per_step"]
        grew = "" if growth is None else f", {growth:,.0f} B/step over an empty store"
        print(f"{s['label']}: {s['steps']} steps, {', '.join(s['statuses'])}")
        others = _fmt(s["others_cpu_share"], ".0%")
        print(f"   CPU ms/step by round: {cpu}; write commits per step {commits};"
              f" other processes' share of the machine meanwhile {others}")  # fmt: skip
        if s["empty_store_bytes"] is not None:
            print(
                f"   storage {s['total_bytes']:,.0f} B (main + WAL after a TRUNCATE checkpoint)"
                f"{grew}"
            )
        extra = s["rounds"][0]
        if "agent_spec_bytes" in extra:
            spec = extra["agent_spec_bytes"]
            print(f"   of which the agent spec (inlines the script): {spec:,} B;"
                  f" events {extra['events']}")  # fmt: skip
        if "connection_modes" in extra:
            print(f"   {extra['transactions'] / extra['steps']:.2f} transactions per step in all"
                  f" (reads included); DBOS connections: {extra['connection_modes']}")  # fmt: skip
        if "checkpoint_blob_bytes" in extra:
            modes = f"journal_mode={extra['journal_mode']}, synchronous={extra['synchronous']}"
            print(f"   {extra['checkpoints']} checkpoints ({extra['checkpoint_blob_bytes']:,} B of"
                  f" blobs), {extra['write_rows']} write rows; connection: {modes}")  # fmt: skip
    print()
    print_rows(table)
    shares = [
        r["others_cpu_share"]
        for s in results["systems"].values()
        for r in s["rounds"]
        if r["others_cpu_share"] is not None
    ]
    if shares:
        print(
            f"other processes used {min(shares):.0%}-{max(shares):.0%} of the machine's CPU"
            " during the measured phases (from /proc/stat): wall figures suffer most"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="tool steps of each run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument(
        "--no-history",
        dest="history",
        action="store_false",
        help="leave out LangGraph with the history in its state",
    )
    parser.add_argument("--workdir", type=Path, help="where to put the databases (kept)")
    parser.add_argument("--json", action="store_true", help="print a JSON dump instead")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="peers_", dir=args.workdir))
    else:
        workdir = Path(tempfile.mkdtemp(prefix="charter_peers_"))
    args.keep_files = args.workdir is not None
    try:
        results = run_all(args, workdir)
    finally:
        if not args.keep_files:
            shutil.rmtree(workdir, ignore_errors=True)
    table = summary(results)
    if args.json:
        results["table"] = [dict(zip(JSON_KEYS, row, strict=True)) for row in table]
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print_report(results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
