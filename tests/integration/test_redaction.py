"""Per-agent logging settings: redaction before the log is written, on a real run (SQLite)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.models import Recording

from charter import Agent, ConfigError, ModelSpec, Runtime, ToolContext, load_agent, tool
from charter._engine.state import RunState, fold_all
from charter.events import (
    Event,
    MessageReceived,
    ModelResponded,
    RunStarted,
    ToolCallProposed,
    ToolCallStarted,
    ToolCallSucceeded,
)
from charter.redaction import NOT_STORED, LoggingSettings, Redactor

SENT: list[dict[str, Any]] = []


@tool(effect="read")
def customer(order_id: str) -> dict[str, Any]:
    """Who ordered."""
    return {"name": "Ann", "email": "ann@example.com", "phone": "+1 415 555 0100",
            "card": "4111 1111 1111 1111", "order": f"ORD-{order_id}"}  # fmt: skip


@tool(effect="write")
def send(ctx: ToolContext, to: str, text: str) -> str:
    """Mail a customer."""
    SENT.append({"to": to, "key": ctx.idempotency_key})
    return "sent"


def _run(url: str, settings: LoggingSettings) -> tuple[list[Event], Recording, str]:
    SENT.clear()
    script = [
        {"tool_calls": [{"name": "customer", "arguments": {"order_id": "123456"}}]},
        {"tool_calls": [{"name": "send", "arguments": {"to": "ann@example.com", "text": "hi"}}]},
        {"content": "Mailed ann@example.com about ORD-123456"},
    ]
    agent = Agent(
        name="mailer",
        instructions="Mail the customer.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[customer, send],
        logging=settings,
    )
    model = Recording(script)

    async def main() -> tuple[list[Event], str]:
        async with Runtime.open(url) as rt:
            rt.register(agent, model=model)
            run = await rt.run(agent, "mail ann@example.com, phone +44 20 7946 0958")
            events = await rt.events(run.run_id)
            assert RunState.model_validate(run.state) == fold_all(events)
            assert await rt.verify(run.run_id) == []
            return events, run.run_id

    events, run_id = asyncio.run(main())
    return events, model, run_id


def _one(events: list[Event], kind: type[Any]) -> Any:
    return next(e.body for e in events if isinstance(e.body, kind))


def test_pii_is_redacted_before_writing_and_the_event_says_where(db_url: str) -> None:
    settings = LoggingSettings(pii_redaction=True, redact_patterns=(r"ORD-\d{6}",))
    events, _, _ = _run(db_url, settings)
    read = _one(events, ToolCallSucceeded)
    assert read.output == {"name": "Ann", "email": "[redacted:email]",
                           "phone": "[redacted:phone]", "card": "[redacted:card]",
                           "order": "[redacted:custom]"}  # fmt: skip
    assert set(read.redacted) == {"output.email", "output.phone", "output.card", "output.order"}
    final = events[-1].body
    assert final.output == "Mailed [redacted:email] about [redacted:custom]"  # type: ignore[union-attr]
    message = _one(events, MessageReceived)  # the input: written by start, kept (see docs)
    assert "ann@example.com" in message.text and message.redacted == ()
    responded = [e.body for e in events if isinstance(e.body, ModelResponded)]
    assert responded[1].tool_calls[0].arguments == '{"to": "[redacted:email]", "text": "hi"}'
    assert "tool_calls.0.arguments.to" in responded[1].redacted


def test_the_engine_keeps_what_it_needs_to_act_exactly_once(db_url: str) -> None:
    events, model, run_id = _run(db_url, LoggingSettings(pii_redaction=True))
    proposed = [e.body for e in events if isinstance(e.body, ToolCallProposed)]
    assert proposed[1].arguments == {"to": "ann@example.com", "text": "hi"}  # not redacted
    started = _one(events, ToolCallStarted)
    assert started.idempotency_key.startswith(f"{run_id}:")
    assert [{"to": "ann@example.com", "key": started.idempotency_key}] == SENT
    # In the same process the model still saw the real values.
    shown = model.requests[1].messages[-1].content or ""
    assert "ann@example.com" in shown


def test_prompts_and_tool_io_can_be_left_out(db_url: str) -> None:
    events, _, _ = _run(db_url, LoggingSettings(store_prompt=False, store_tool_io=False))
    assert _one(events, ToolCallSucceeded).output == NOT_STORED
    assert events[-1].body.output == NOT_STORED  # type: ignore[union-attr]
    assert _one(events, ModelResponded).tool_calls[0].arguments == NOT_STORED
    assert "ann@example.com" in _one(events, RunStarted).input  # written by start, see docs


def test_no_settings_write_everything_unchanged(db_url: str) -> None:
    events, _, _ = _run(db_url, LoggingSettings())
    assert _one(events, ToolCallSucceeded).output["email"] == "ann@example.com"
    assert all(not getattr(e.body, "redacted", ()) for e in events)


def test_redaction_is_idempotent_and_numbers_that_are_not_pii_stay() -> None:
    redactor = Redactor(LoggingSettings(pii_redaction=True))
    body = MessageReceived(text="order 42 costs 19.99, mail bob@x.org or call 020 7946 0958")
    once = redactor.apply(body)
    assert once.text == "order 42 costs 19.99, mail [redacted:email] or call [redacted:phone]"  # type: ignore[union-attr]
    assert redactor.apply(once.model_copy(update={"redacted": ()})).redacted == ()  # type: ignore[union-attr]


def test_agent_files_take_logging_settings(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("Hi.")
    text = (
        "agent:\n  name: a\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: []}\n"
        "  logging: {store_prompt: false, pii_redaction: true, redact_patterns: ['ORD-\\d+']}\n"
    )
    (tmp_path / "agent.yaml").write_text(text)
    agent = load_agent(tmp_path / "agent.yaml")
    assert agent.logging == LoggingSettings(
        store_prompt=False, pii_redaction=True, redact_patterns=(r"ORD-\d+",)
    )
    assert Agent.from_spec(agent.spec()).logging == agent.logging
    plain = Agent(name="b", instructions="x", model=ModelSpec(provider="scripted", script=[]))
    assert "logging" not in plain.spec()  # older agents keep their hash
    (tmp_path / "agent.yaml").write_text(text.replace("ORD-\\d+", "ORD-("))
    with pytest.raises(ConfigError, match="not a regular expression"):
        load_agent(tmp_path / "agent.yaml")
