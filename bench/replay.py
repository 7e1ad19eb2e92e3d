"""How long ``charter replay`` takes over a long run (target: 10,000 events in under 1 s).

    .venv/bin/python bench/replay.py [--steps 3400] [--repeat 3] [--workdir DIR] [--json]

Records one run on a fresh SQLite file: ``--steps`` model steps, each calling a read tool that
policy allows (model_responded, tool_call_proposed, policy_evaluated, tool_call_succeeded: four
events a step), then a final answer. Then replays it ``--repeat`` times and reports the best and
median wall time of (a) the replay alone (log already in memory) and (b) ``replay_run`` as the
CLI runs it (load the log and the agent from the store, replay, compare).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import Row, emit
from charter import Agent, ModelSpec, Runtime, tool
from charter.agents import Budgets
from charter.policy import PolicySet
from charter.replay import replay_events, replay_run

TARGET_S = 1.0


@tool(effect="read")
def echo_value(n: int) -> dict[str, int]:
    """Return the number."""
    return {"n": n}


def _agent(steps: int) -> Agent:
    script: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "echo_value", "arguments": {"n": i}}]} for i in range(steps)
    ]
    script.append({"content": "done"})
    policy = {"policy": {"name": "b", "rules": [{"id": "r", "when": {"effect": "read"},
                                                  "then": "allow"}]}}  # fmt: skip
    return Agent(
        name="replay_bench",
        instructions="Count.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[echo_value],
        budgets=Budgets(max_steps=steps + 5, max_tool_calls=steps + 5),
        max_context_messages=20,
        policy=PolicySet.from_dict(policy),
    )


async def main(args: argparse.Namespace, workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'replay.db'}?synchronous=OFF"
    agent = _agent(args.steps)
    async with Runtime.open(url) as rt:
        began = time.perf_counter()
        run_id = await rt.start(agent, "count")
        await rt.work(run_id=run_id)
        recorded_s = time.perf_counter() - began
        events = await rt.events(run_id)
        in_memory, whole = [], []
        for _ in range(args.repeat):
            began = time.perf_counter()
            report = await replay_events(events, agent=agent)
            in_memory.append(time.perf_counter() - began)
            assert report.identical, report.divergence
            began = time.perf_counter()
            report = await replay_run(rt.store, run_id)
            whole.append(time.perf_counter() - began)
            assert report.identical, report.divergence
    results = {
        "events": len(events),
        "record_s": round(recorded_s, 3),
        "replay_in_memory_s": {"best": min(in_memory), "median": statistics.median(in_memory)},
        "replay_run_s": {"best": min(whole), "median": statistics.median(whole)},
        "per_event_us": round(min(whole) / len(events) * 1e6, 1),
    }
    per_10k = min(whole) / len(events) * 10_000
    table: list[Row] = [
        ("events in the run", len(events), "10000", ""),
        ("replay_run, best of repeats (s)", f"{min(whole):.3f}", "", ""),
        ("replay_run, median (s)", f"{statistics.median(whole):.3f}", "", ""),
        ("replay alone, best (s)", f"{min(in_memory):.3f}", "", ""),
        ("scaled to 10,000 events (s)", f"{per_10k:.3f}", f"< {TARGET_S:g}",
         "yes" if per_10k < TARGET_S else "no"),
    ]  # fmt: skip
    emit(results, table, as_json=args.json, print_report=_print)


def _print(results: dict[str, Any], table: list[Row]) -> None:
    print(f"recorded the run in {results['record_s']} s; {results['per_event_us']} µs per event")
    for figure, value, target, met in table:
        print(f"  {figure:<34} {value!s:>10}  {target:<8} {met}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.setrecursionlimit(10_000)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(args, args.workdir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(args, Path(tmp)))
