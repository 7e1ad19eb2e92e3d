#!/usr/bin/env python
"""What tracing adds to a durable step: bench/step_overhead.py's single run, traced and not.

Usage::

    python bench/tracing_overhead.py [--steps 1000] [--repeats 3] [--workdir DIR] [--json]

Each measurement runs in a fresh child process (OpenTelemetry's tracer provider can be set
once per process), alternating, ``--repeats`` times each:

* ``off``: nothing configured: Charter sees no tracer provider (the default for every user);
* ``otlp``: ``charter.telemetry.configure_from_env()`` with
  ``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9`` (nothing listens there): the SDK, a
  batch span processor and the OTLP/HTTP exporter, whose exports fail in its thread; the
  default sampler, so the run is traced;
* ``unsampled``: the same with ``OTEL_TRACES_SAMPLER=parentbased_always_off``: the sampler
  leaves the run out.

With a ratio sampler (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, runs in or out by
their trace id) a share ``r`` of the runs costs what ``otlp`` costs and the rest what
``unsampled`` costs: the report gives the largest ``r`` that keeps the added CPU under 10%.

The workload is ``bench_single`` from bench/step_overhead.py (one run, every step a model
call plus a no-op read tool, fully durable on SQLite). CPU time is ``time.process_time()``,
every thread of the process, so the exporter's thread is counted. It asserts nothing: it
prints the medians and the added share per step (target: under 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _report import emit

TARGET_SHARE = 0.10
MODES = ("off", "otlp", "unsampled")
HERE = Path(__file__).resolve().parent
NOWHERE = "http://127.0.0.1:9"


def child(mode: str, steps: int, path: Path) -> dict[str, Any]:
    """One measurement in this process (called in a child)."""
    import asyncio

    from charter import telemetry
    from step_overhead import bench_single, noop

    if mode != "off":
        assert telemetry.configure_from_env(), "OTEL_EXPORTER_OTLP_ENDPOINT must be set"
    assert telemetry.enabled() == (mode != "off")
    result = asyncio.run(bench_single(path, steps, noop))
    result["mode"] = mode
    return result


def measure(mode: str, steps: int, path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if mode != "off":
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": NOWHERE, "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    if mode == "unsampled":
        env["OTEL_TRACES_SAMPLER"] = "parentbased_always_off"
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--steps", str(steps), "--db", str(path)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def print_report(results: dict[str, Any], table: list[Any]) -> None:
    print(f"tracing overhead: {results['steps']} steps per run, {results['repeats']} runs each")
    for mode in MODES:
        cpu = ", ".join(f"{v:.4f}" for v in results[f"cpu_ms_per_step_{mode}"])
        wall = ", ".join(f"{v:.0f}" for v in results[f"steps_per_s_{mode}"])
        print(f"  {mode:>9}: CPU ms/step {cpu}; steps/s {wall}")
    print()
    for figure, value, target, met in table:
        print(f"  {figure:<38} {value:>12} {target:>12}  {'met' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.db)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="charter-trace-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for i in range(args.repeats):
        for mode in MODES[i % 3 :] + MODES[: i % 3]:
            runs[mode].append(measure(mode, args.steps, workdir / f"{mode}_{i}.db"))
    results: dict[str, Any] = {"steps": args.steps, "repeats": args.repeats}
    for mode, rs in runs.items():
        results[f"cpu_ms_per_step_{mode}"] = [r["cpu_ms_per_step"] for r in rs]
        results[f"steps_per_s_{mode}"] = [r["steps_per_s"] for r in rs]
        results[f"statuses_{mode}"] = sorted({r["status"] for r in rs})
    off = _median(results["cpu_ms_per_step_off"])
    on = _median(results["cpu_ms_per_step_otlp"])
    out = _median(results["cpu_ms_per_step_unsampled"])
    wall_off = 1 / _median(results["steps_per_s_off"])
    wall_on = 1 / _median(results["steps_per_s_otlp"])
    # the share r of runs traced so that (r * on + (1 - r) * out - off) / off = the target
    ratio = (TARGET_SHARE * off - (out - off)) / (on - out) if on > out else 1.0
    results |= {"median_cpu_ms_off": off, "median_cpu_ms_otlp": on,
                "median_cpu_ms_unsampled": out, "share": (on - off) / off,
                "unsampled_share": (out - off) / off, "sampling_ratio_for_target": ratio,
                "wall_share": (wall_on - wall_off) / wall_off}  # fmt: skip
    table = [
        ("CPU ms per step, tracing off", f"{off:.4f}", "", True),
        ("CPU ms per step, OTLP to nowhere", f"{on:.4f}", "", True),
        ("CPU ms per step, run not sampled", f"{out:.4f}", "", True),
        ("CPU added per step, run traced", f"{results['share']:+.1%}", f"< {TARGET_SHARE:.0%}",
         results["share"] < TARGET_SHARE),
        ("CPU added per step, run not sampled", f"{results['unsampled_share']:+.1%}",
         f"< {TARGET_SHARE:.0%}", results["unsampled_share"] < TARGET_SHARE),
        ("largest share of runs traced for 10%", f"{max(0.0, min(1.0, ratio)):.0%}", "", True),
        ("wall time added per step, run traced", f"{results['wall_share']:+.1%}",
         f"< {TARGET_SHARE:.0%}", results["wall_share"] < TARGET_SHARE),
    ]  # fmt: skip
    emit(results, table, as_json=args.json, print_report=print_report)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
