#!/usr/bin/env python
"""The local model on this machine: load time, tokens/s, memory and time per tool-calling step.

Usage::

    python bench/local_model.py [--tickets 7] [--json]

Needs the model file (``scripts/get-local-model``). In one process:

1. verifies the file's sha256 and loads it (timed separately; both happen once per process);
2. the demo agent (``src/charter/demo/agent.yaml``, its seven tools) on the demo's tickets:
   one cold step (empty KV cache: the system prompt and tools decoded too), then for each
   ticket its first step (the shared system prompt and tools come from the KV cache) and a
   second step after a tool result (the run's own history comes from the cache too);
3. reports prompt and generation tokens/s, the time per step (median and max), the resident
   memory, and what the model did (a tool call or an answer, and whether the call's
   arguments passed the tool's own validation).

It is a benchmark, not a test: it asserts nothing and prints what it measured. Other
processes on the machine's cores slow it down: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from typing import Any

from _report import emit, print_table
from charter.demo import load_demo_agent
from charter.models import Message, ModelRequest, ModelSpec, ToolSpec, _local_engine as engine
from charter.models._local import LocalModel
from charter.testing.systems import CUSTOMERS, TICKETS

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"
TOOL_RESULT = {
    "order_id": "1002", "customer_id": "C-102", "item": "Ceramic pour-over set", "amount": 35.0,
    "refunded": 0.0, "currency": "EUR", "status": "delivered", "placed_on": "2024-05-06",
}  # fmt: skip


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ticket_text(ticket: tuple[str, str, str, str]) -> str:
    tid, cid, subject, body = ticket
    name, tier = next((c[1], c[3]) for c in CUSTOMERS if c[0] == cid)
    return f"Ticket {tid} from {name} ({cid}, {tier} tier)\nSubject: {subject}\n\n{body}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    agent = load_demo_agent()
    tools = tuple(ToolSpec(t.name, t.description, t.input_schema) for t in agent.tools)
    by_name = {t.name: t for t in agent.tools}
    model = LocalModel(ModelSpec(provider="local", name=MODEL, max_output_tokens=256))
    rss_before = rss_mb()
    began = time.perf_counter()
    engine.file_sha256(model.path)
    verify_s = time.perf_counter() - began
    loaded = engine.load(model.path, sha256=None)
    steps: list[dict[str, Any]] = []

    def step(kind: str, run_id: str, messages: list[Message]) -> Any:
        request = ModelRequest(run_id=run_id, step=0, messages=tuple(messages), tools=tools)
        began = time.perf_counter()
        try:
            response, gen = model.generate(request)
        except Exception as exc:  # a model error is a result here, not a crash
            steps.append({"kind": kind, "error": str(exc), "s": time.perf_counter() - began})
            return None
        call = response.tool_calls[0] if response.tool_calls else None
        valid = None
        if call is not None:
            try:
                by_name[call.name].validate(json.loads(call.arguments))
                valid = True
            except Exception:
                valid = False
        steps.append({
            "kind": kind, "s": time.perf_counter() - began, "prompt_tokens": gen.prompt_tokens,
            "decoded": gen.prompt_tokens - gen.reused_tokens, "prompt_s": gen.prompt_s,
            "output_tokens": gen.output_tokens, "generate_s": gen.generate_s,
            "call": call.name if call else None, "valid": valid,
        })  # fmt: skip
        return response

    system = Message(role="system", content=agent.instructions)
    first = ticket_text(TICKETS[0])
    step("cold", "cold", [system, Message(role="user", content=first)])
    for i, ticket in enumerate(TICKETS[: args.tickets]):
        history = [system, Message(role="user", content=ticket_text(ticket))]
        response = step("first", f"r{i}", history)
        if response is None or not response.tool_calls:
            continue
        call = response.tool_calls[0]
        history += [
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", tool_call_id=call.call_id, content=json.dumps(TOOL_RESULT)),
        ]
        step("next", f"r{i}", history)
    ok = [s for s in steps if "error" not in s]
    decoded = sum(s["decoded"] for s in ok)
    return {
        "env": {"python": platform.python_version(), "cpus": os.cpu_count(),
                "threads": model.threads, "load": os.getloadavg()},
        "model": {"name": MODEL, "path": str(model.path), "bytes": model.path.stat().st_size},
        "verify_s": verify_s, "load_s": loaded.load_s,
        "rss_mb": {"before_load": rss_before, "after": rss_mb(),
                   "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
        "prompt_tps": decoded / max(1e-9, sum(s["prompt_s"] for s in ok)),
        "generate_tps": sum(s["output_tokens"] for s in ok)
        / max(1e-9, sum(s["generate_s"] for s in ok)),
        "steps": steps,
    }  # fmt: skip


def summary(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    steps = results["steps"]

    def times(kind: str) -> list[float]:
        return [s["s"] for s in steps if s["kind"] == kind and "error" not in s]

    def med(kind: str) -> str:
        t = times(kind)
        return f"{statistics.median(t):.2f} s (max {max(t):.2f})" if t else "-"

    calls = [s for s in steps if s.get("call")]
    rows = [
        ("sha256 check (once per process)", f"{results['verify_s']:.2f} s", "(reference)", "-"),
        ("load time", f"{results['load_s']:.2f} s", "(reference)", "-"),
        ("resident memory after the steps", f"{results['rss_mb']['after']:.0f} MB",
         "(reference)", "-"),
        ("prompt tokens/s (decoded)", f"{results['prompt_tps']:.0f}", "(reference)", "-"),
        ("generation tokens/s", f"{results['generate_tps']:.1f}", "(reference)", "-"),
        ("step, cold cache", med("cold"), "(reference)", "-"),
        ("step, first of a ticket", med("first"), "(reference)", "-"),
        ("step, after a tool result", med("next"), "(reference)", "-"),
        ("steps that called a tool", f"{len(calls)} of {len(steps)}", "(reference)", "-"),
        ("calls whose arguments validate", f"{sum(bool(s['valid']) for s in calls)} of "
         f"{len(calls)}", "all", "yes" if all(s["valid"] for s in calls) else "no"),
    ]  # fmt: skip
    return rows


def print_report(results: dict[str, Any], table: list[tuple[str, str, str, str]]) -> None:
    env, model = results["env"], results["model"]
    load = ", ".join(f"{x:.2f}" for x in env["load"])
    print(f"Python {env['python']}, {env['cpus']} CPUs, {env['threads']} threads, load {load}")
    print(f"model {model['name']}: {model['bytes']:,} bytes at {model['path']}")
    print("\nkind   seconds  prompt (decoded)  out  answer")
    for s in results["steps"]:
        if "error" in s:
            print(f"{s['kind']:<6} {s['s']:7.2f}  error: {s['error'][:90]}")
            continue
        answer = f"{s['call']} (valid: {s['valid']})" if s["call"] else "content"
        print(f"{s['kind']:<6} {s['s']:7.2f}  {s['prompt_tokens']:6} ({s['decoded']:5})"
              f"  {s['output_tokens']:4}  {answer}")  # fmt: skip
    print()
    print_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=len(TICKETS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args)
    emit(results, summary(results), as_json=args.json, print_report=print_report)


if __name__ == "__main__":
    main()
