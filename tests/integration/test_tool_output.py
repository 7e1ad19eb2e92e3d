"""A tool's result is checked against its declared return type before it is recorded."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import ModelResponded, ToolCallFailed, ToolCallSucceeded

CALLS: list[str] = []


class Stock(BaseModel):
    sku: str
    count: int


@tool(effect="read")
def count_stock(sku: str) -> Stock:
    """How many are in stock (declares a Stock, returns something else)."""
    CALLS.append(sku)
    return {"sku": sku, "count": "many"}  # type: ignore[return-value]


@tool(effect="read")
def good_stock(sku: str) -> Stock:
    """How many are in stock."""
    return Stock(sku=sku, count=3)


@tool(effect="read")
def as_dict(sku: str) -> dict[str, Any]:
    """A plain dict, as declared."""
    return {"sku": sku, "count": 3}


SCRIPT: list[dict[str, Any]] = [
    {
        "tool_calls": [
            {"name": "count_stock", "arguments": {"sku": "kettle"}},
            {"name": "good_stock", "arguments": {"sku": "kettle"}},
            {"name": "as_dict", "arguments": {"sku": "kettle"}},
        ]
    },
    {"content": "Three kettles."},
]


def test_a_result_that_does_not_match_the_return_type_fails_as_output_invalid(
    store_url: str,
) -> None:
    CALLS.clear()
    agent = Agent(
        name="stock",
        instructions="Count stock.",
        model=ModelSpec(provider="scripted", script=SCRIPT),
        tools=[count_stock, good_stock, as_dict],
    )

    async def main() -> None:
        async with Runtime.open(store_url) as rt:
            run = await rt.run(agent, "Kettles?")
            assert run.status == "succeeded"
            events = await rt.events(run.run_id)
        failed = [e.body for e in events if isinstance(e.body, ToolCallFailed)]
        assert [(f.tool, f.error.code, f.error.retryable, f.attempts) for f in failed] == [
            ("count_stock", "output_invalid", False, 1)
        ]
        assert "count" in failed[0].error.message and "Stock" in failed[0].error.message
        ok = {e.body.tool: e.body.output for e in events if isinstance(e.body, ToolCallSucceeded)}
        assert ok == {
            "good_stock": {"sku": "kettle", "count": 3},
            "as_dict": {"sku": "kettle", "count": 3},
        }
        assert CALLS == ["kettle"]  # not retried
        responded = [e for e in events if isinstance(e.body, ModelResponded)]
        assert len(responded) == 2  # the model saw the failure and answered

    asyncio.run(main())
