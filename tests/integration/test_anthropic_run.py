"""A whole run through the engine against Anthropic's messages API (a double of it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import ModelResponded, RunFinished, ToolCallSucceeded
from charter.testing import FakeAnthropicServer


@tool(effect="read")
def weather(city: str) -> dict[str, str]:
    """Today's weather in a city."""
    return {"city": city, "sky": "clear"}


def test_tool_use_round_trip_through_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-run")
    responses: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "weather", "arguments": {"city": "Oslo"}}]},
        {"content": "Clear skies in Oslo.", "usage": {"input_tokens": 200, "output_tokens": 10}},
    ]
    with FakeAnthropicServer(responses=responses, api_key="sk-ant-run") as server:
        spec = ModelSpec(
            provider="anthropic",
            name="claude-test",
            base_url=server.base_url,
            input_usd_per_mtok=3.0,
            output_usd_per_mtok=15.0,
        )
        agent = Agent(
            name="forecaster", instructions="Answer briefly.", model=spec, tools=[weather]
        )

        async def main() -> tuple[str, list[object]]:
            async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
                run = await rt.run(agent, "Weather in Oslo?")
                return run.status, [e.body for e in await rt.events(run.run_id)]

        status, bodies = asyncio.run(main())
    assert status == "succeeded"
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    assert finished.output == "Clear skies in Oslo."
    assert [b.tool for b in bodies if isinstance(b, ToolCallSucceeded)] == ["weather"]
    first, second = server.requests
    assert first["system"] == "Answer briefly."
    assert first["tools"][0]["name"] == "weather"
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    (result,) = second["messages"][2]["content"]
    assert result["type"] == "tool_result" and '"sky": "clear"' in result["content"]
    responded = [b for b in bodies if isinstance(b, ModelResponded)]
    assert [(r.provider, r.model) for r in responded] == [("anthropic", "claude-test")] * 2
    last = responded[-1]
    assert (last.usage.input_tokens, last.usage.output_tokens) == (200, 10)
    assert last.cost_usd == pytest.approx((200 * 3.0 + 10 * 15.0) / 1_000_000)
