"""A whole run through the engine against an OpenAI-compatible endpoint (a double of the API)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import ModelCallFailed, ModelResponded
from charter.testing import FakeOpenAIServer


@tool(effect="read")
def weather(city: str) -> dict[str, str]:
    """Today's weather in a city."""
    return {"city": city, "sky": "clear"}


def _agent(base_url: str, **model: object) -> Agent:
    spec = ModelSpec(provider="openai", name="gpt-test", base_url=base_url, **model)  # type: ignore[arg-type]
    return Agent(name="forecaster", instructions="Answer briefly.", model=spec, tools=[weather])


def test_tool_call_round_trip_through_the_engine(tmp_path: Path) -> None:
    responses = [
        {"tool_calls": [{"name": "weather", "arguments": '{"city": "Oslo"}'}]},
        {"content": "Clear skies in Oslo."},
    ]
    with FakeOpenAIServer(responses=responses) as server:

        async def main() -> tuple[str, list[object]]:
            async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
                run = await rt.run(_agent(server.base_url), "Weather in Oslo?")
                return run.status, [e.body for e in await rt.events(run.run_id)]

        status, bodies = asyncio.run(main())
    assert status == "succeeded"
    first, second = server.requests
    assert first["tools"][0]["function"]["name"] == "weather"
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    assert '"sky": "clear"' in second["messages"][3]["content"]
    responded = [b for b in bodies if isinstance(b, ModelResponded)]
    assert [r.provider for r in responded] == ["openai", "openai"]
    assert all(r.model == "gpt-test" and r.usage.total > 0 for r in responded)


@pytest.mark.parametrize(("status", "final"), [(500, "escalated"), (401, "failed")])
def test_provider_errors_end_the_run_cleanly(tmp_path: Path, status: int, final: str) -> None:
    failures = [{"status": status, "error": "boom"}] * 3
    with FakeOpenAIServer(responses=failures) as server:

        async def main() -> tuple[str, list[object]]:
            async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
                agent = _agent(server.base_url, max_attempts=2, outage_waits=0)
                run = await rt.run(agent, "Weather?")
                return run.status, [e.body for e in await rt.events(run.run_id)]

        run_status, bodies = asyncio.run(main())
    assert run_status == final
    failed = [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert len(failed) == 1
    assert failed[0].error.retryable is (status == 500)
    assert len(server.requests) == (2 if status == 500 else 1)
