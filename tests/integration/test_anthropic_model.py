"""The anthropic provider against a fake messages API, through the real SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.helpers.models import LOOKUP

from charter.errors import ConfigError, ModelError
from charter.models import Message, ModelRequest, ModelResponse, ModelSpec, ToolSpec, build_model
from charter.models._anthropic import DEFAULT_MAX_OUTPUT_TOKENS, AnthropicModel
from charter.testing import FakeAnthropicServer

KEY_ENV = "CHARTER_TEST_ANTHROPIC_KEY"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    yield


def _model(server: FakeAnthropicServer, name: str = "claude-test", **kw: object) -> AnthropicModel:
    spec = ModelSpec(
        provider="anthropic", name=name, base_url=server.base_url, api_key_env=KEY_ENV, **kw
    )
    model = build_model(spec)
    assert isinstance(model, AnthropicModel)
    return model


def _request(*messages: Message, step: int = 0, tools: tuple[ToolSpec, ...] = ()) -> ModelRequest:
    return ModelRequest(run_id="run-1", step=step, messages=messages, tools=tools)


def _ask(model: AnthropicModel, request: ModelRequest) -> ModelResponse:
    return asyncio.run(model.respond(request))


def _fail(model: AnthropicModel, request: ModelRequest | None = None) -> ModelError:
    with pytest.raises(ModelError) as info:
        _ask(model, request or _request(Message(role="user", content="hi")))
    return info.value


def test_text_answer_sends_the_system_prompt_apart_and_the_key() -> None:
    with FakeAnthropicServer(responses=[{"content": "Paris."}], api_key="sk-ant-test") as server:
        response = _ask(
            _model(server, temperature=0.3),
            _request(
                Message(role="system", content="Be brief."),
                Message(role="user", content="Capital of France?"),
            ),
        )
    assert (response.content, response.tool_calls, response.model) == ("Paris.", (), "claude-test")
    (body,) = server.requests
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}
    ]
    assert body["max_tokens"] == DEFAULT_MAX_OUTPUT_TOKENS  # the API requires it
    assert body["temperature"] == 0.3
    assert "tools" not in body
    assert server.api_keys == ["sk-ant-test"]


def test_tool_use_round_trip_with_tool_result_blocks() -> None:
    responses: list[dict[str, Any]] = [
        {
            "content": "Looking.",
            "tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}],
        },
        {"content": "Order A1 shipped."},
    ]
    with FakeAnthropicServer(responses=responses) as server:
        model = _model(server, max_output_tokens=300)
        user = Message(role="user", content="Where is order A1?")
        first = _ask(model, _request(user, tools=(LOOKUP,)))
        (call,) = first.tool_calls
        assert first.content == "Looking."
        assert call.name == "lookup" and call.call_id == "toolu_fake_0_0"
        assert json.loads(call.arguments) == {"order_id": "A1"}
        second = _ask(
            model,
            _request(
                user,
                Message(role="assistant", content="Looking.", tool_calls=first.tool_calls),
                Message(role="tool", tool_call_id=call.call_id, content='{"status": "shipped"}'),
                Message(role="user", content="And quickly please."),
                step=1,
                tools=(LOOKUP,),
            ),
        )
    assert second.content == "Order A1 shipped." and second.tool_calls == ()
    first_body, second_body = server.requests
    assert first_body["tools"] == [
        {"name": "lookup", "description": "Look up an order.", "input_schema": LOOKUP.parameters}
    ]
    assert first_body["max_tokens"] == 300
    assert second_body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {
                    "type": "tool_use",
                    "id": call.call_id,
                    "name": "lookup",
                    "input": {"order_id": "A1"},
                },
            ],
        },
        {  # the result and the next user message share one user turn: roles alternate
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call.call_id,
                    "content": '{"status": "shipped"}',
                },
                {"type": "text", "text": "And quickly please."},
            ],
        },
    ]


def test_usage_is_reported() -> None:
    usage = {"input_tokens": 321, "output_tokens": 9}
    with FakeAnthropicServer(responses=[{"content": "ok", "usage": usage}]) as server:
        response = _ask(_model(server), _request(Message(role="user", content="hi")))
    assert (response.usage.input_tokens, response.usage.output_tokens) == (321, 9)


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (529, "overloaded_error", "model_unavailable"),
        (500, "api_error", "model_unavailable"),
        (429, "rate_limit_error", "model_rate_limited"),
    ],
)
def test_overload_server_errors_and_rate_limits_are_retryable(
    status: int, kind: str, code: str
) -> None:
    failing = [{"status": status, "type": kind, "error": "try later"}]
    with FakeAnthropicServer(responses=failing) as server:
        error = _fail(_model(server))
    assert (error.code, error.retryable) == (code, True)
    assert "try later" in str(error) and server.base_url in str(error)
    assert len(server.requests) == 1  # the SDK did not retry on its own


def test_a_wrong_key_is_not_retryable_and_names_the_variable() -> None:
    with FakeAnthropicServer(responses=[{"content": "never"}], api_key="the-right-key") as server:
        error = _fail(_model(server))
    assert (error.code, error.retryable) == ("model_auth", False)
    assert "rejected the API key" in error.message
    assert error.hint is not None and KEY_ENV in error.hint


def test_an_unknown_model_is_not_retryable() -> None:
    with FakeAnthropicServer(responses=[{"content": "never"}], unknown_models={"claude-nope"}) as s:
        error = _fail(_model(s, name="claude-nope"))
    assert (error.code, error.retryable) == ("model_not_found", False)
    assert "does not serve the model 'claude-nope'" in error.message
    assert error.hint == "check the model's name and base_url"


def test_an_unreachable_endpoint_is_retryable() -> None:
    with FakeAnthropicServer() as server:
        base_url = server.base_url  # the port is closed once the server stops
    error = _fail(_model_at(base_url))
    assert (error.code, error.retryable) == ("model_unavailable", True)
    assert base_url in error.message


def _model_at(base_url: str) -> AnthropicModel:
    spec = ModelSpec(
        provider="anthropic", name="claude-test", base_url=base_url, api_key_env=KEY_ENV
    )
    return AnthropicModel(spec)


def test_a_tool_call_cut_off_by_max_tokens_comes_back_marked_cut_off() -> None:
    """The run loop refuses it as ``model_truncated`` (test_model_bad_input.py)."""
    cut = {"tool_calls": [{"name": "lookup", "arguments": {}}], "stop_reason": "max_tokens"}
    with FakeAnthropicServer(responses=[cut]) as server:
        response = _ask(
            _model(server, max_output_tokens=16),
            _request(Message(role="user", content="x"), tools=(LOOKUP,)),
        )
    assert response.finish_reason == "max_tokens"
    assert [c.name for c in response.tool_calls] == ["lookup"]


def test_a_body_that_is_not_json_is_a_retryable_bad_response() -> None:
    with FakeAnthropicServer(responses=[{"raw": '{"type": "message", "content": [{"ty'}]) as server:
        error = _fail(_model(server))
    assert (error.code, error.retryable) == ("model_bad_response", True)


def test_the_key_variable_defaults_to_anthropic_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-default")
    with FakeAnthropicServer(responses=[{"content": "ok"}]) as server:
        spec = ModelSpec(provider="anthropic", name="claude-test", base_url=server.base_url)
        model = build_model(spec)
        assert isinstance(model, AnthropicModel)
        _ask(model, _request(Message(role="user", content="hi")))
    assert server.api_keys == ["sk-default"]


def test_a_missing_key_without_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        AnthropicModel(ModelSpec(provider="anthropic", name="claude-test"))
    assert "ANTHROPIC_API_KEY" in str(info.value)


def test_the_endpoint_shown_has_no_credentials_or_query() -> None:
    spec = ModelSpec(
        provider="anthropic",
        name="claude-test",
        base_url="https://user:secret@proxy.example:8443/anthropic/?token=abc",
        api_key_env=KEY_ENV,
    )
    assert AnthropicModel(spec).endpoint == "https://proxy.example:8443/anthropic"
