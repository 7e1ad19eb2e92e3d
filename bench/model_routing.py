#!/usr/bin/env python
"""What routing and the caches add to a step, and how fast a cache hit answers.

Usage::

    python bench/model_routing.py [--n 20000] [--messages 12] [--postgres URL] [--json]

In one process:

1. **Routing**: ``StepRoutes.choose`` for an agent with three routes, four step-kind rules and
   a fallback near its cost budget, over a cycle of step facts and spending (the pure rule,
   the route's model and its recorded fields, the ``model_degraded`` check) — per step.
2. **Cache keys**: the response cache's key (sha256 of a canonical JSON of the model's
   identity, parameters, ``--messages`` messages of the working context and three tools) and
   a read tool's result-cache key — per step.
3. Routing + the model key + one tool key is the CPU a step pays for routing and cache
   lookups besides the store round trip (target < 50 us).
4. **A cache hit**: ``Store.cache_get`` of a stored response and its decoding, on a real
   SQLite file (and PostgreSQL with ``--postgres``): the time a hit takes to answer instead
   of the model (target < 1 ms). A miss costs the same read plus, after the model answers,
   one ``cache_put`` (a write transaction), shown for reference.

Each operation is timed on its own with ``time.perf_counter_ns``. A benchmark, not a test: it
asserts nothing and prints what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _report import Row, emit, print_table
from charter import Agent, Budgets, ModelSpec, tool
from charter._engine.caching import decode_response, encode_response, model_key, tool_key
from charter._engine.routing import StepRoutes
from charter._engine.state import RunState
from charter.events import ProposedCall, Usage
from charter.models import Message, ModelRequest, ModelResponse, ToolSpec
from charter.models._routing import CachePolicy, Route, Routing, StepFacts, StepRule, StepTracker
from charter.store import Store, open_store

STEP_TARGET_US = 50.0
HIT_TARGET_MS = 1.0


@tool(cacheable=True, cache_ttl_s=300)
def lookup_order(order_id: str) -> dict[str, str]:
    """Look an order up."""
    return {"order_id": order_id}


def _agent() -> Agent:
    cheap = ModelSpec(provider="scripted", name="qwen2.5-0.5b", script=[])
    routes = {
        "classify": Route(provider="scripted", name="qwen2.5-0.5b", script=[]),
        "draft": Route(
            provider="scripted",
            name="gpt-4.1-mini-2025-04-14",
            script=[],
            input_usd_per_mtok=0.4,
            fallback=cheap,
            fallback_at=0.8,
        ),
        "validate": Route(provider="scripted", name="gpt-4.1-2025-04-14", script=[]),
    }
    rules = (
        StepRule(when=("first",), kind="classify"),
        StepRule(when=("after_write",), kind="validate"),
        StepRule(when=("after_failure",), kind="classify"),
        StepRule(kind="draft"),
    )
    return Agent(
        name="bench",
        instructions="You are a support agent. " * 20,
        model=ModelSpec(provider="scripted", name="default", script=[]),
        tools=[lookup_order],
        budgets=Budgets(max_cost_usd=1.0),
        routing=Routing(routes=routes, rules=rules),
        cache=CachePolicy(models=True),
    )


def _request(messages: int) -> ModelRequest:
    history: list[Message] = [Message(role="system", content="You are a support agent. " * 20)]
    for i in range(messages - 1):
        if i % 3 == 0:
            history.append(Message(role="user", content=f"Where is order {1000 + i}? " * 4))
        elif i % 3 == 1:
            call = ProposedCall(call_id=f"c{i}", name="lookup_order", arguments='{"order_id":"1"}')
            history.append(Message(role="assistant", tool_calls=(call,)))
        else:
            history.append(
                Message(role="tool", content='{"status":"shipped"}' * 5, tool_call_id="c")
            )
    tools = tuple(
        ToolSpec(
            name=f"tool_{k}", description="Does a thing. " * 5, parameters=lookup_order.input_schema
        )
        for k in range(3)
    )
    return ModelRequest(
        run_id="run_x",
        step=3,
        messages=tuple(history),
        tools=tools,
        parameters={"temperature": 0.0},
    )


def _time(n: int, op: Callable[[int], Any]) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        op(i)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return samples


async def _atime(n: int, op: Callable[[int], Awaitable[Any]]) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        await op(i)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return samples


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": statistics.median(ordered),
        "p99_us": ordered[int(len(ordered) * 0.99) - 1],
        "mean_us": statistics.fmean(ordered),
    }


async def _store_figures(store: Store, n: int, response: ModelResponse) -> dict[str, Any]:
    now = time.time()
    value = encode_response(response)
    keys = [f"{i:064x}" for i in range(200)]
    for key in keys:
        await store.cache_put(key, value, kind="model", now=now, ttl_s=3600)

    async def hit(i: int) -> None:
        text = await store.cache_get(keys[i % len(keys)], now=now)
        assert text is not None and decode_response(text) is not None

    async def miss(i: int) -> None:
        assert await store.cache_get(f"missing{i}", now=now) is None

    async def put(i: int) -> None:
        await store.cache_put(f"new{i}", value, kind="model", now=now, ttl_s=3600)

    await _atime(200, hit)  # warm up
    return {
        "hit": _stats(await _atime(n, hit)),
        "miss": _stats(await _atime(n, miss)),
        "put": _stats(await _atime(min(n, 500), put)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    agent = _agent()
    routes = StepRoutes(agent=agent, model=_NoModel(), store=None, clock=time.time)  # type: ignore[arg-type]
    facts = [
        StepFacts(first=True),
        StepFacts(after_tool_results=True),
        StepFacts(after_tool_results=True, after_write=True),
        StepFacts(after_tool_results=True, after_failure=True),
        StepFacts(after_message=True),
    ]
    trackers = []
    for f in facts:
        tracker = StepTracker()
        tracker.facts = f
        trackers.append(tracker)
    states = [RunState(cost_usd=c) for c in (0.0, 0.3, 0.79, 0.81, 0.95)]
    request = _request(args.messages)
    arguments = {"order_id": "1042"}

    def choose(i: int) -> None:
        routes.choose(trackers[i % 5], states[(i // 5) % 5])

    def key(i: int) -> None:
        model_key(identity="a" * 64, request=request)

    def tkey(i: int) -> None:
        tool_key(lookup_order, tenant="acme", arguments=arguments)

    def step(i: int) -> None:
        chosen = routes.choose(trackers[i % 5], states[(i // 5) % 5])
        model_key(identity=chosen.identity, request=request)
        tool_key(lookup_order, tenant="acme", arguments=arguments)

    for op in (choose, key, tkey, step):
        _time(2000, op)  # warm up
    results: dict[str, Any] = {
        "env": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load": list(os.getloadavg()),
        },
        "params": vars(args),
        "routing": _stats(_time(args.n, choose)),
        "model_key": _stats(_time(args.n, key)),
        "tool_key": _stats(_time(args.n, tkey)),
        "step": _stats(_time(args.n, step)),
    }
    response = ModelResponse(
        content=None,
        tool_calls=(ProposedCall(call_id="c1", name="lookup_order", arguments='{"order_id":"1"}'),),
        usage=Usage(input_tokens=900, output_tokens=20),
        model="gpt-4.1-mini-2025-04-14",
    )
    lookups = min(args.n, 5000)
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = asyncio.run(
            _with_store(f"sqlite:///{Path(tmp) / 'bench.db'}", lookups, response)
        )
    if args.postgres:
        results["postgres"] = asyncio.run(_with_store(args.postgres, lookups, response))
    return results


async def _with_store(url: str, n: int, response: ModelResponse) -> dict[str, Any]:
    store = open_store(url)
    try:
        return await _store_figures(store, n, response)
    finally:
        await store.close()


class _NoModel:
    provider = "scripted"
    name = "default"

    async def respond(self, request: ModelRequest) -> ModelResponse:
        raise AssertionError("not called")


def summary(results: dict[str, Any]) -> list[Row]:
    def met(ok: bool) -> str:
        return "yes" if ok else "no"

    step = results["step"]
    rows: list[Row] = [
        ("routing + cache keys per step (median)", f"{step['median_us']:.2f} us",
         f"< {STEP_TARGET_US:g} us", met(step["median_us"] < STEP_TARGET_US)),
        ("routing + cache keys per step (p99)", f"{step['p99_us']:.2f} us",
         f"< {STEP_TARGET_US:g} us", met(step["p99_us"] < STEP_TARGET_US)),
        ("  routing alone (median)", f"{results['routing']['median_us']:.2f} us",
         "(reference)", "-"),
        ("  model cache key (median)", f"{results['model_key']['median_us']:.2f} us",
         "(reference)", "-"),
        ("  tool cache key (median)", f"{results['tool_key']['median_us']:.2f} us",
         "(reference)", "-"),
    ]  # fmt: skip
    for backend in ("sqlite", "postgres"):
        figures = results.get(backend)
        if not figures:
            continue
        hit = figures["hit"]
        rows += [
            (f"cache hit, {backend} (median)", f"{hit['median_us'] / 1000:.3f} ms",
             f"< {HIT_TARGET_MS:g} ms", met(hit["median_us"] / 1000 < HIT_TARGET_MS)),
            (f"cache hit, {backend} (p99)", f"{hit['p99_us'] / 1000:.3f} ms",
             f"< {HIT_TARGET_MS:g} ms", met(hit["p99_us"] / 1000 < HIT_TARGET_MS)),
            (f"  miss lookup, {backend} (median)", f"{figures['miss']['median_us'] / 1000:.3f} ms",
             "(reference)", "-"),
            (f"  keeping an answer, {backend} (median)",
             f"{figures['put']['median_us'] / 1000:.3f} ms", "(reference)", "-"),
        ]  # fmt: skip
    return rows


def print_report(results: dict[str, Any], table: list[Row]) -> None:
    env, params = results["env"], results["params"]
    load = ", ".join(f"{x:.2f}" for x in env["load"])
    print(f"Python {env['python']}, {env['cpus']} CPUs, load average {load}")
    print(
        f"{params['n']:,} steps timed one at a time; a working context of {params['messages']}"
        " messages and 3 tools; three routes, four rules, a fallback at 80% of the cost budget"
    )
    print(
        "a step's routing + cache keys = StepRoutes.choose + the response cache key + one"
        " read-tool key (the store round trip of a lookup is the 'cache hit' figure)"
    )
    print()
    print_table(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="steps to time")
    parser.add_argument("--messages", type=int, default=12, help="messages in the context")
    parser.add_argument("--postgres", default=None, help="also time cache hits on this URL")
    parser.add_argument("--json", action="store_true", help="print a JSON dump instead")
    args = parser.parse_args(argv)
    results = run(args)
    emit(results, summary(results), as_json=args.json, print_report=print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
