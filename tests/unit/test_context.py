"""The working context window: system prompt, the first user message, and a bounded tail."""

from __future__ import annotations

from tests.helpers.strategies import seal_chain

from charter._engine.context import Conversation, to_message
from charter.events import (
    ErrorInfo,
    MessageReceived,
    ModelResponded,
    ProposedCall,
    RunStarted,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallSucceeded,
)
from charter.models import Message


def _user(text: str) -> Message:
    return Message(role="user", content=text)


def _assistant_calling(*call_ids: str) -> Message:
    calls = tuple(ProposedCall(call_id=c, name="t", arguments="{}") for c in call_ids)
    return Message(role="assistant", tool_calls=calls)


def _tool(call_id: str) -> Message:
    return Message(role="tool", content="{}", tool_call_id=call_id)


def _conversation(*messages: Message) -> Conversation:
    conv = Conversation()
    conv.messages.extend(messages)
    return conv


def test_a_short_history_is_kept_whole_after_the_system_prompt() -> None:
    history = (_user("hi"), _assistant_calling("c1"), _tool("c1"))
    window = _conversation(*history).window("be brief", max_messages=5)
    assert window == (Message(role="system", content="be brief"), *history)


def test_a_long_history_keeps_system_first_user_message_and_the_tail() -> None:
    history = [_user("first")] + [
        Message(role="assistant" if i % 2 else "user", content=f"m{i}") for i in range(1, 20)
    ]
    window = _conversation(*history).window("sys", max_messages=6)
    assert window[0] == Message(role="system", content="sys")
    assert window[1] == _user("first")
    assert list(window[2:]) == history[-5:]
    assert len(window) == 7  # system + max_messages


def test_the_tail_never_starts_on_a_tool_message() -> None:
    history = [
        _user("first"),
        _assistant_calling("c1"),
        _tool("c1"),
        _assistant_calling("c2", "c3"),
        _tool("c2"),
        _tool("c3"),
        Message(role="assistant", content="done?"),
        _user("yes"),
    ]
    # A tail of 4 would start at _tool("c2"), whose call was cut away.
    window = _conversation(*history).window("sys", max_messages=5)
    assert [m.role for m in window] == ["system", "user", "assistant", "user"]
    assert window[2:] == (history[6], history[7])
    # Every tool result left in any window has its call in the same window.
    for size in range(2, len(history) + 1):
        win = _conversation(*history).window("sys", max_messages=size)
        assert win[1].role == "user"
        offered = {c.call_id for m in win for c in m.tool_calls}
        assert all(m.tool_call_id in offered for m in win if m.role == "tool"), size


def test_events_become_messages() -> None:
    events = seal_chain(
        "run_1",
        [
            RunStarted(
                agent_name="a",
                agent_version="1",
                agent_hash="h",
                tenant="t",
                principal="p",
                input="hi",
            ),
            MessageReceived(text="hi", source="input"),
            ModelResponded(
                step=1,
                provider="scripted",
                model="m",
                prompt_hash="h",
                tool_calls=(ProposedCall(call_id="c1", name="t", arguments="{}"),),
            ),
            ToolCallProposed(step=1, call_id="c1", tool="t", effect="read", arguments={}),
            ToolCallSucceeded(call_id="c1", tool="t", output={"n": 1}),
            ToolCallFailed(call_id="c2", tool="t", error=ErrorInfo(code="x", message="bad")),
        ],
    )
    conv = Conversation()
    for event in events:
        conv.apply(event)
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "tool"]
    assert to_message(events[0]) is None
    assert to_message(events[3]) is None
    assert conv.messages[2] == Message(role="tool", content='{"n": 1}', tool_call_id="c1")
    assert (
        conv.messages[3].content == '{"error": {"code": "x", "message": "bad", "retryable": false}}'
    )
