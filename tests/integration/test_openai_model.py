"""The openai provider against a fake OpenAI-compatible server, through the real SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from tests.helpers.models import LOOKUP

from charter.errors import ConfigError, ModelError
from charter.models import Message, ModelRequest, ModelResponse, ModelSpec, ToolSpec, build_model
from charter.models._openai import OpenAIModel
from charter.testing.fake_openai import FakeOpenAIServer

KEY_ENV = "CHARTER_TEST_OPENAI_KEY"


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield


def _model(server: FakeOpenAIServer, name: str = "gpt-test", **kw: object) -> OpenAIModel:
    spec = ModelSpec(
        provider="openai", name=name, base_url=server.base_url, api_key_env=KEY_ENV, **kw
    )
    model = build_model(spec)
    assert isinstance(model, OpenAIModel)
    return model


def _request(*messages: Message, step: int = 0, tools: tuple[ToolSpec, ...] = ()) -> ModelRequest:
    return ModelRequest(run_id="run-1", step=step, messages=messages, tools=tools)


def _ask(model: OpenAIModel, request: ModelRequest) -> ModelResponse:
    return asyncio.run(model.respond(request))


def test_text_answer() -> None:
    with FakeOpenAIServer(responses=[{"content": "Paris."}]) as server:
        model = _model(server, max_output_tokens=50, temperature=0.2)
        response = _ask(
            model,
            _request(
                Message(role="system", content="Be brief."),
                Message(role="user", content="Capital of France?"),
            ),
        )
    assert response.content == "Paris."
    assert response.tool_calls == ()
    assert response.model == "gpt-test"
    (body,) = server.requests
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 50
    assert "tools" not in body


def test_tool_call_round_trip() -> None:
    responses = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]},
        {"content": "Order A1 shipped."},
    ]
    with FakeOpenAIServer(responses=responses) as server:
        model = _model(server)
        user = Message(role="user", content="Where is order A1?")
        first = _ask(model, _request(user, tools=(LOOKUP,)))
        assert first.content is None
        (call,) = first.tool_calls
        assert call.name == "lookup"
        assert call.call_id  # the server's id is kept
        assert json.loads(call.arguments) == {"order_id": "A1"}

        second = _ask(
            model,
            _request(
                user,
                Message(role="assistant", content=None, tool_calls=first.tool_calls),
                Message(role="tool", tool_call_id=call.call_id, content='{"status": "shipped"}'),
                step=1,
                tools=(LOOKUP,),
            ),
        )
    assert second.content == "Order A1 shipped."
    assert second.tool_calls == ()

    first_body, second_body = server.requests
    assert first_body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look up an order.",
                "parameters": LOOKUP.parameters,
            },
        }
    ]
    assert second_body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": "lookup", "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.call_id, "content": '{"status": "shipped"}'},
    ]


def test_raw_arguments_are_kept_verbatim() -> None:
    raw = '{"order_id": "A1",}'  # not valid JSON: Charter validates later, not the provider
    with FakeOpenAIServer(responses=[{"tool_calls": [{"name": "lookup", "arguments": raw}]}]) as s:
        response = _ask(_model(s), _request(Message(role="user", content="hi"), tools=(LOOKUP,)))
    assert response.tool_calls[0].arguments == raw


def test_usage_is_mapped() -> None:
    responses = [
        {"content": "ok", "usage": {"prompt_tokens": 123, "completion_tokens": 7}},
        {"content": "twelve chars", "usage": None},
    ]
    with FakeOpenAIServer(responses=responses) as server:
        model = _model(server)
        reported = _ask(model, _request(Message(role="user", content="hello")))
        estimated = _ask(model, _request(Message(role="user", content="sixteen chars..."), step=1))
    assert (reported.usage.input_tokens, reported.usage.output_tokens) == (123, 7)
    assert reported.usage.total == 130
    assert (estimated.usage.input_tokens, estimated.usage.output_tokens) == (4, 3)


def test_server_error_is_retryable() -> None:
    with FakeOpenAIServer(responses=[{"status": 500, "error": "boom"}]) as server:
        model = _model(server)
        with pytest.raises(ModelError) as info:
            _ask(model, _request(Message(role="user", content="hi")))
    assert info.value.retryable is True
    assert server.base_url in str(info.value)
    assert "gpt-test" in str(info.value)
    assert "boom" in str(info.value)
    assert len(server.requests) == 1  # the SDK did not retry on its own


def test_exhausted_responses_are_a_server_error() -> None:
    with FakeOpenAIServer(responses=[]) as server, pytest.raises(ModelError) as info:
        _ask(_model(server), _request(Message(role="user", content="hi")))
    assert info.value.retryable is True


def test_unknown_model_is_not_retryable() -> None:
    server = FakeOpenAIServer(responses=[{"content": "never"}], unknown_models={"nope"})
    with server, pytest.raises(ModelError) as info:
        _ask(_model(server, name="nope"), _request(Message(role="user", content="hi")))
    assert info.value.retryable is False
    assert "does not serve the model 'nope'" in str(info.value)
    assert server.base_url in str(info.value)


def test_bad_request_is_not_retryable() -> None:
    server = FakeOpenAIServer(responses=[{"status": 400, "error": "bad tools"}])
    with server, pytest.raises(ModelError) as info:
        _ask(_model(server), _request(Message(role="user", content="hi")))
    assert info.value.retryable is False
    assert "400" in str(info.value)


def test_unreachable_endpoint_is_retryable() -> None:
    with FakeOpenAIServer() as server:
        base_url = server.base_url
    spec = ModelSpec(provider="openai", name="m", base_url=base_url, api_key_env=KEY_ENV)
    with pytest.raises(ModelError) as info:
        _ask(OpenAIModel(spec), _request(Message(role="user", content="hi")))
    assert info.value.retryable is True
    assert base_url in str(info.value)


def test_api_key_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    with FakeOpenAIServer(responses=[{"content": "ok"}]) as server:
        response = _ask(_model(server), _request(Message(role="user", content="hi")))
    assert response.content == "ok"


def test_missing_key_without_base_url_is_a_config_error() -> None:
    spec = ModelSpec(provider="openai", name="gpt-test", api_key_env=KEY_ENV)
    with pytest.raises(ConfigError) as info:
        OpenAIModel(spec)
    assert KEY_ENV in str(info.value)


def test_missing_key_with_base_url_uses_a_placeholder() -> None:
    spec = ModelSpec(
        provider="openai", name="local", base_url="http://127.0.0.1:1/v1", api_key_env=KEY_ENV
    )
    assert OpenAIModel(spec).name == "local"


def test_missing_call_ids_fall_back_to_the_step() -> None:
    calls = [{"name": "lookup", "arguments": "{}", "id": ""}] * 2
    with FakeOpenAIServer(responses=[{"tool_calls": calls}]) as server:
        request = _request(Message(role="user", content="hi"), step=3, tools=(LOOKUP,))
        response = _ask(_model(server), request)
    assert [c.call_id for c in response.tool_calls] == ["call_3_0", "call_3_1"]


def test_no_choices_is_a_retryable_malformed_response() -> None:
    raw = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    with FakeOpenAIServer(responses=[{"raw": raw}]) as s, pytest.raises(ModelError) as info:
        _ask(_model(s), _request(Message(role="user", content="hi")))
    assert info.value.retryable is True
    assert "malformed response" in str(info.value)


def test_rejected_key_is_not_retryable_and_names_the_variable() -> None:
    server = FakeOpenAIServer(responses=[{"status": 401, "error": "Incorrect API key"}])
    with server, pytest.raises(ModelError) as info:
        _ask(_model(server), _request(Message(role="user", content="hi")))
    assert info.value.retryable is False
    assert info.value.hint is not None and KEY_ENV in info.value.hint
