"""What one tool call costs in each execution mode, measured through the real executor.

    .venv/bin/python bench/tool_execution.py [--calls 300] [--json]

A no-op tool (its body returns at once), called ``--calls`` times one after another through
``ToolExecutor.call`` (slots, circuit breaker, timeout, result serialisation):

* ``async``: an async tool on the event loop;
* ``thread``: a sync tool in a thread of its own (the default for sync tools);
* ``process``: a sync tool in a child process forked from the forkserver (killed at timeouts).

As a reference, in the same run: ``asyncio.to_thread`` on the same function (the shared pool,
what sync tools used before they got threads of their own). Prints the median and p95 per call
and the ratios to the async call. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Row, emit, print_table
from charter import ToolContext
from charter._engine.executor import ToolExecutor
from scale_tools import noop_async, noop_process, noop_thread

CTX = ToolContext(run_id="run_bench", tenant="bench", principal="bench", step=1, call_id="c")


async def _timed(calls: int, once: Any) -> list[float]:
    await once()  # warm up (the forkserver starts on the first process call)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await once()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def measure(calls: int) -> dict[str, Any]:
    executor = ToolExecutor()
    modes = {
        "async": lambda: executor.call(noop_async, CTX, {"n": 1}),
        "thread": lambda: executor.call(noop_thread, CTX, {"n": 1}),
        "process": lambda: executor.call(noop_process, CTX, {"n": 1}),
        "to_thread (reference)": lambda: asyncio.to_thread(noop_thread.fn, 1),
    }
    results: dict[str, Any] = {"calls": calls}
    for name, once in modes.items():
        times = sorted(await _timed(calls, once))
        results[name] = {
            "median_ms": round(statistics.median(times), 4),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 4),
        }
    return results


def _report(results: dict[str, Any], table: list[Row]) -> None:
    print(f"one no-op tool call, {results['calls']} calls per mode, in one process")
    print_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(measure(args.calls))
    base = results["async"]["median_ms"]
    table: list[Row] = []
    for name in ("async", "thread", "process", "to_thread (reference)"):
        figure = results[name]
        table.append(
            (
                f"{name}: median / p95 per call",
                f"{figure['median_ms']:.3f} / {figure['p95_ms']:.3f} ms"
                f" ({figure['median_ms'] / base:.1f}x async)",
                "",
                "",
            )
        )
    emit(results, table, as_json=args.json, print_report=_report)


if __name__ == "__main__":
    main()
