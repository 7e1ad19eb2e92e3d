"""Every run replays, or says exactly why not: caches, unimportable tools, retention, reruns."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.helpers.cli import run_charter

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import ModelResponded, ToolCallSucceeded
from charter.models._routing import CachePolicy
from charter.replay import replay_run


@tool(effect="read", cacheable=True)
def stock(sku: str) -> dict[str, Any]:
    """How many of an item are in stock."""
    return {"sku": sku, "count": 3}


CACHED_SCRIPT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "stock", "arguments": {"sku": "kettle"}}]},
    {"content": "3 kettles in stock."},
]


def _cached_agent() -> Agent:
    return Agent(
        name="stocker",
        instructions="Answer stock questions.",
        model=ModelSpec(provider="scripted", name="script-c", script=CACHED_SCRIPT),
        tools=[stock],
        cache=CachePolicy(models=True, tools=True),
    )


def test_runs_served_from_the_caches_replay_identically_on_both_stores(store_url: str) -> None:
    async def main() -> list[str]:
        async with Runtime.open(store_url) as rt:
            first = await rt.run(_cached_agent(), "Kettles?", tenant="acme")
            second = await rt.run(_cached_agent(), "Kettles?", tenant="acme")
            events = await rt.events(second.run_id)
            hits = [e.body for e in events if isinstance(e.body, ModelResponded) and e.body.cached]
            assert hits, "the second run's model answers came from the response cache"
            third = await rt.run(
                Agent(
                    name="stocker",
                    version="2",
                    instructions="Answer stock questions.",
                    model=ModelSpec(provider="scripted", name="script-c", script=CACHED_SCRIPT),
                    tools=[stock],
                ),
                "Kettles?",
                tenant="acme",
            )
            reads = [
                e.body for e in await rt.events(third.run_id)
                if isinstance(e.body, ToolCallSucceeded)
            ]  # fmt: skip
            assert [b.cached for b in reads] == [True]  # served from the result cache
            ids = [first.run_id, second.run_id, third.run_id]
            for run_id in ids:
                report = await replay_run(rt.store, run_id)
                assert report.identical, (run_id, report.divergence)
            return ids

    ids = asyncio.run(main())
    for run_id in ids:
        done = run_charter(Path.cwd(), "replay", run_id, "--db", store_url, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["identical"] is True
