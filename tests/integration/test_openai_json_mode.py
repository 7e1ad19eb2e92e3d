"""``tool_calling: json``: an endpoint without tool calling answers JSON its schema allows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.models import LOOKUP

from charter import Agent, ModelSpec, Runtime, tool
from charter.errors import ModelError
from charter.events import (
    ModelCallFailed,
    ModelResponded,
    ProposedCall,
    RunFinished,
    ToolCallSucceeded,
)
from charter.models import Message, ModelRequest, ModelResponse, build_model
from charter.models._openai import OpenAIModel
from charter.testing import FakeOpenAIServer

KEY_ENV = "CHARTER_TEST_OPENAI_KEY"


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield


def _model(server: FakeOpenAIServer, **kw: object) -> OpenAIModel:
    spec = ModelSpec(
        provider="openai",
        name="small-local",
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        tool_calling="json",
        **kw,
    )
    model = build_model(spec)
    assert isinstance(model, OpenAIModel)
    return model


def _ask(model: OpenAIModel, *messages: Message, step: int = 0) -> ModelResponse:
    request = ModelRequest(run_id="r", step=step, messages=messages, tools=(LOOKUP,))
    return asyncio.run(model.respond(request))


def _answer(body: object) -> dict[str, object]:
    return {"content": json.dumps(body)}


def test_the_request_carries_a_json_schema_instead_of_tools() -> None:
    call = {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]}
    with FakeOpenAIServer(responses=[_answer(call)]) as server:
        response = _ask(
            _model(server),
            Message(role="system", content="Help with orders."),
            Message(role="user", content="Where is A1?"),
        )
    (body,) = server.requests
    assert "tools" not in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    shapes = fmt["json_schema"]["schema"]["anyOf"]
    assert [list(s["properties"]) for s in shapes] == [["tool_calls"], ["content"]]
    (offered,) = shapes[0]["properties"]["tool_calls"]["items"]["anyOf"]
    assert offered["properties"]["name"] == {"type": "string", "enum": ["lookup"]}
    assert offered["properties"]["arguments"] == LOOKUP.parameters
    system = body["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Help with orders.")
    assert '"lookup"' in system["content"] and "Look up an order." in system["content"]
    (proposed,) = response.tool_calls
    assert (proposed.call_id, proposed.name) == ("call_0_0", "lookup")
    assert json.loads(proposed.arguments) == {"order_id": "A1"}
    assert response.content is None


def test_earlier_calls_and_results_are_shown_as_json_and_user_turns() -> None:
    with FakeOpenAIServer(responses=[_answer({"content": "A1 shipped."})]) as server:
        model = _model(server)
        call_args = '{"order_id": "A1"}'
        call = ProposedCall(call_id="call_0_0", name="lookup", arguments=call_args)
        response = _ask(
            model,
            Message(role="user", content="Where is A1?"),
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", tool_call_id="call_0_0", content='{"status": "shipped"}'),
            step=1,
        )
    assert response.content == "A1 shipped." and response.tool_calls == ()
    roles = [(m["role"], m["content"]) for m in server.requests[0]["messages"][1:]]
    assert roles == [
        ("user", "Where is A1?"),
        (
            "assistant",
            json.dumps({"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]}),
        ),
        ("user", 'Result of the call to lookup (call_0_0):\n{"status": "shipped"}'),
    ]


def test_an_answer_cut_off_is_not_parsed_and_says_so() -> None:
    """The engine refuses it as ``model_truncated`` (tests/integration/test_model_answers.py)."""
    text = '{"tool_calls": [{"name": "lookup", "argum'
    cut = {"content": text, "finish_reason": "length"}
    with FakeOpenAIServer(responses=[cut]) as server:
        response = _ask(_model(server, max_output_tokens=12), Message(role="user", content="hi"))
    assert (response.finish_reason, response.content, response.tool_calls) == ("length", text, ())


@pytest.mark.parametrize(
    "content",
    ["not json at all", json.dumps({"something": "else"}), json.dumps({"tool_calls": [{"x": 1}]})],
)
def test_an_answer_of_the_wrong_shape_is_a_bad_response(content: str) -> None:
    server = FakeOpenAIServer(responses=[{"content": content}])
    with server, pytest.raises(ModelError) as info:
        _ask(_model(server, temperature=0.7), Message(role="user", content="hi"))
    assert (info.value.code, info.value.retryable) == (
        "model_bad_response",
        True,
    )  # resampling may help


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


def test_a_run_in_json_mode_calls_the_tool_and_answers(tmp_path: Path) -> None:
    responses = [
        _answer({"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]}),
        _answer({"content": "A1 has shipped."}),
    ]
    with FakeOpenAIServer(responses=responses) as server:
        spec = ModelSpec(
            provider="openai", name="small-local", base_url=server.base_url, tool_calling="json"
        )
        agent = Agent(name="orders", instructions="Help.", model=spec, tools=[lookup])

        async def main() -> tuple[str, list[object]]:
            async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
                run = await rt.run(agent, "Where is A1?")
                return run.status, [e.body for e in await rt.events(run.run_id)]

        status, bodies = asyncio.run(main())
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    assert (status, finished.output) == ("succeeded", "A1 has shipped.")
    assert [b.tool for b in bodies if isinstance(b, ToolCallSucceeded)] == ["lookup"]
    responded = [b for b in bodies if isinstance(b, ModelResponded)]
    assert [r.provider for r in responded] == ["openai", "openai"]
    assert not [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert all("response_format" in r for r in server.requests)


def _json_run(tmp_path: Path, responses: list[dict[str, object]], **kw: object) -> list[object]:
    with FakeOpenAIServer(responses=responses) as server:
        spec = ModelSpec(
            provider="openai",
            name="small-local",
            base_url=server.base_url,
            tool_calling="json",
            **kw,  # type: ignore[arg-type]
        )
        agent = Agent(name="orders", instructions="Help.", model=spec, tools=[lookup])

        async def main() -> list[object]:
            async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
                run = await rt.run(agent, "Where is A1?")
                return [e.body for e in await rt.events(run.run_id)]

        return asyncio.run(main())


def test_text_after_the_json_object_is_ignored_and_recorded(tmp_path: Path) -> None:
    """A server that does not enforce the schema writes on after the object ("Extra data")."""
    call = {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]}
    responses: list[dict[str, object]] = [
        {"content": json.dumps(call) + "\nI will look that up for you."},
        {"content": json.dumps({"content": "A1 has shipped."}) + "\n\nAnything else?"},
    ]
    bodies = _json_run(tmp_path, responses)
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    assert (finished.status, finished.output) == ("succeeded", "A1 has shipped.")
    assert [b.tool for b in bodies if isinstance(b, ToolCallSucceeded)] == ["lookup"]
    responded = [b for b in bodies if isinstance(b, ModelResponded)]
    assert [r.ignored_text for r in responded] == ["I will look that up for you.", "Anything else?"]


def test_an_object_in_a_markdown_fence_is_accepted() -> None:
    fenced = "```json\n" + json.dumps({"content": "Done."}) + "\n```"
    with FakeOpenAIServer(responses=[{"content": fenced}]) as server:
        response = _ask(_model(server), Message(role="user", content="hi"))
    assert (response.content, response.ignored_text) == ("Done.", None)


@pytest.mark.parametrize(
    "content",
    [
        'Sure! {"content": "Done."}',  # text before the object
        '["content", "Done."]',  # not an object
        '{"content": 3} trailing',  # the first object has neither shape
    ],
)
def test_what_json_mode_refuses(content: str) -> None:
    with (
        FakeOpenAIServer(responses=[{"content": content}]) as server,
        pytest.raises(ModelError) as info,
    ):
        _ask(_model(server), Message(role="user", content="hi"))
    assert info.value.code == "model_bad_response"


def test_unusable_json_answers_count_their_tokens(tmp_path: Path) -> None:
    usage = {"prompt_tokens": 700, "completion_tokens": 100}
    garbage = {"content": "I cannot answer in JSON.", "usage": usage}
    bodies = _json_run(tmp_path, [garbage, garbage], temperature=0.7, max_attempts=2)
    (failed,) = [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert [r.code for r in failed.rejected] == ["model_bad_response"] * 2
    assert failed.usage.total == 1600
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    assert finished.status == "escalated"


@pytest.mark.parametrize("text", [json.dumps({"content": "  "}), "", "\n"])
def test_an_empty_json_answer_is_not_a_final_answer(tmp_path: Path, text: str) -> None:
    """Seen from a real server: an empty body text at temperature 0 must escalate, not fail."""
    empty = {"content": text}
    bodies = _json_run(tmp_path, [empty, empty], max_attempts=2)
    (failed,) = [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert failed.error.code == "model_empty_answer"
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    assert (finished.status, finished.output) == ("escalated", None)
