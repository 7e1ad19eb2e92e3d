"""The working context: what the model sees this turn. Derived from events, bounded."""

from __future__ import annotations

import json
from typing import Any

from charter.events import (
    Event,
    MessageReceived,
    ModelResponded,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallSucceeded,
)
from charter.models import Message
from charter.models._routing import StepTracker


class Conversation:
    """The run's chat history, rebuilt from its events when a worker takes the run.

    It lives only while a worker holds the run: a waiting run holds no memory in a worker.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.steps = StepTracker()
        """What happened since the model last spoke: the facts that route the next step."""

    def apply(self, event: Event) -> None:
        self.steps.observe(event.body)
        message = to_message(event)
        if message is not None:
            self.messages.append(message)

    def window(self, instructions: str, max_messages: int) -> tuple[Message, ...]:
        """System prompt, the first user message, and the most recent messages.

        The cut never starts on a tool result whose call was cut away.
        """
        system = Message(role="system", content=instructions)
        history = self.messages
        if len(history) <= max_messages:
            return (system, *history)
        first, tail = history[0], history[-(max_messages - 1) :]
        while tail and tail[0].role == "tool":
            tail = tail[1:]
        return (system, first, *tail)


def to_message(event: Event) -> Message | None:
    body = event.body
    match body:
        case MessageReceived():
            return Message(role="user", content=body.text)
        case ModelResponded():
            return Message(role="assistant", content=body.content, tool_calls=body.tool_calls)
        case ToolCallSucceeded():
            return Message(role="tool", content=_json(body.output), tool_call_id=body.call_id)
        case ToolCallFailed() | ToolCallRejected():
            error = {"error": body.error.model_dump(mode="json")}
            return Message(role="tool", content=_json(error), tool_call_id=body.call_id)
    return None


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
