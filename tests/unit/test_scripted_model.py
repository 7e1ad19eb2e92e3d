"""The scripted model: answers by step, picks a script by regex, refuses bad scripts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from charter import ConfigError, ModelError, ScriptedModel
from charter.models import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSpec,
    build_model,
    estimate_tokens,
)


def _ask(model: ScriptedModel, step: int, text: str = "hello") -> ModelResponse:
    """Ask as the run whose input is ``text`` (one run per distinct input)."""
    request = ModelRequest(
        run_id=f"run:{text}",
        step=step,
        messages=(Message(role="system", content="sys"), Message(role="user", content=text)),
        tools=(),
    )
    return asyncio.run(model.respond(request))


SCRIPT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}, {"name": "other"}]},
    {"tool_calls": [{"name": "lookup", "arguments": "{raw json"}], "content": "thinking"},
    {"content": "done"},
]


def test_responses_are_chosen_by_step() -> None:
    model = ScriptedModel(SCRIPT)
    first, second, third = (_ask(model, step) for step in range(3))

    assert [c.name for c in first.tool_calls] == ["lookup", "other"]
    assert [c.call_id for c in first.tool_calls] == ["call_0_0", "call_0_1"]
    assert json.loads(first.tool_calls[0].arguments) == {"order_id": "A1"}
    assert first.tool_calls[1].arguments == "{}"
    assert first.content is None

    assert second.tool_calls[0].call_id == "call_1_0"
    assert second.tool_calls[0].arguments == "{raw json"  # raw text passes through untouched
    assert second.content == "thinking"

    assert third.content == "done"
    assert third.tool_calls == ()


def test_the_same_step_gives_the_same_response() -> None:
    model = ScriptedModel(SCRIPT)
    assert _ask(model, 1) == _ask(model, 1)


def test_usage_is_a_deterministic_estimate_of_about_four_characters_a_token() -> None:
    model = ScriptedModel([{"content": "x" * 40}])
    response = _ask(model, 0, text="y" * 80)
    assert response.usage == _ask(model, 0, text="y" * 80).usage
    assert response.usage.output_tokens == estimate_tokens("x" * 40) == 10
    assert response.usage.input_tokens == pytest.approx((len("sys") + 80) / 4, abs=2)
    assert response.model == "scripted"


def test_the_first_script_whose_regex_matches_the_first_user_message_answers() -> None:
    model = ScriptedModel(
        {
            "scripts": [
                {"match": r"refund", "responses": [{"content": "refunding"}]},
                {"match": r"^where is", "responses": [{"content": "tracking"}]},
                {"match": "", "responses": [{"content": "fallback"}]},
            ]
        },
        name="router",
    )
    assert _ask(model, 0, "Please REFUND order 7").content == "refunding"  # case-insensitive
    assert _ask(model, 0, "Where is my parcel?").content == "tracking"
    assert _ask(model, 0, "hello").content == "fallback"
    assert _ask(model, 0, "hello").model == "router"


def test_no_matching_script_is_a_model_error() -> None:
    model = ScriptedModel({"scripts": [{"match": "refund", "responses": [{"content": "x"}]}]})
    with pytest.raises(ModelError, match="no script matches"):
        _ask(model, 0, "hello")


def test_an_exhausted_script_is_a_model_error() -> None:
    model = ScriptedModel([{"content": "only one"}])
    with pytest.raises(ModelError, match="step 1") as info:
        _ask(model, 1)
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("responses.json", "a model script must be a list"),
        ({"responses": []}, "a model script must be a list"),
        ({"scripts": [{"match": "x"}]}, "'responses' must be a list of objects"),
        ([{"content": "ok"}, "not an object"], "'responses' must be a list of objects"),
        ([{"content": "ok", "tool_cals": []}], "unknown field(s) ['tool_cals']"),
        ({"scripts": [{"match": "(", "responses": []}]}, "bad 'match' regex"),
        ([{"tool_calls": [{"arguments": {"order_id": "A1"}}]}], "name"),
        ([{"tool_calls": "lookup"}], "tool_calls"),
    ],
    ids=[
        "string",
        "no-scripts-key",
        "no-responses",
        "non-object",
        "unknown-field",
        "bad-regex",
        "tool-call-without-name",
        "tool-calls-not-a-list",
    ],
)
def test_a_bad_script_is_a_config_error(script: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ScriptedModel(script)
    assert message in info.value.message


def test_build_model_makes_a_scripted_model_and_needs_a_script() -> None:
    model = build_model(ModelSpec(provider="scripted", name="s1", script=[{"content": "hi"}]))
    assert isinstance(model, ScriptedModel)
    assert model.name == "s1"
    with pytest.raises(ConfigError, match="needs a 'script'"):
        build_model(ModelSpec(provider="scripted"))
