"""A model answer that cannot be used is quoted in the error recorded for it; the agent's
logging settings apply to that quote as to the answer itself (found by the trust review)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from charter import Agent, ModelSpec, Runtime, tool
from charter.redaction import LoggingSettings
from charter.testing import FakeOpenAIServer

SECRET = "Mail ann@example.com the card 4111 1111 1111 1111"


@tool(effect="read")
def lookup(order_id: str) -> str:
    """Look an order up."""
    return order_id


def _payloads(tmp_path: Path, settings: LoggingSettings) -> str:
    garbage = {"content": f"I cannot answer in JSON. {SECRET}"}
    with FakeOpenAIServer(responses=[garbage, garbage]) as server:
        spec = ModelSpec(
            provider="openai", name="small-local", base_url=server.base_url,
            tool_calling="json", max_attempts=2,
        )  # fmt: skip
        agent = Agent(
            name="orders", instructions="Help.", model=spec, tools=[lookup], logging=settings
        )

        async def main() -> str:
            async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
                run = await rt.run(agent, "Where is A1?")
                assert run.status in ("failed", "escalated")
                return "\n".join(e.payload for e in await rt.events(run.run_id))

        return asyncio.run(main())


def test_the_quote_is_kept_when_the_settings_keep_everything(tmp_path: Path) -> None:
    assert "ann@example.com" in _payloads(tmp_path, LoggingSettings())


@pytest.mark.parametrize(
    "settings",
    [LoggingSettings(pii_redaction=True), LoggingSettings(store_prompt=False)],
    ids=["pii_redaction", "store_prompt_false"],
)
def test_the_quote_of_an_unusable_answer_obeys_the_logging_settings(
    tmp_path: Path, settings: LoggingSettings
) -> None:
    stored = _payloads(tmp_path, settings)
    assert "ann@example.com" not in stored
    assert "4111" not in stored
    assert "model_bad_response" in stored  # what went wrong is still recorded
