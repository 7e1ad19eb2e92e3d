"""Bad input from a model endpoint ends in a clear ``model_call_failed``, never a crash.

Each case drives a real run through ``Runtime`` against a real socket: a fake server of the
provider's API, or a port nobody listens on. A retryable failure is retried and then
escalates the run; a failure retrying cannot fix fails it; both are recorded with a code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import (
    ModelCallFailed,
    ModelResponded,
    RunFinished,
    RunWaiting,
    ToolCallRejected,
    ToolCallSucceeded,
)
from charter.testing import FakeAnthropicServer, FakeOpenAIServer

KEY_ENV = "CHARTER_TEST_MODEL_KEY"
PROVIDERS = ["openai", "anthropic"]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    yield


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


def _server(provider: str, responses: list[dict[str, Any]], **kw: Any) -> Any:
    if provider == "openai":
        return FakeOpenAIServer(responses=responses, **kw)
    return FakeAnthropicServer(responses=responses, **kw)


def _agent(provider: str, base_url: str, **model: Any) -> Agent:
    spec = ModelSpec(
        provider=provider,
        name=model.pop("name", "m-test"),
        base_url=base_url,
        api_key_env=KEY_ENV,
        **model,
    )
    return Agent(name="orders", instructions="Help.", model=spec, tools=[lookup])


def _run(tmp_path: Path, agent: Agent) -> tuple[str, list[object]]:
    async def main() -> tuple[str, list[object]]:
        async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
            run = await rt.run(agent, "Where is order A1?")
            return run.status, [e.body for e in await rt.events(run.run_id)]

    return asyncio.run(main())


def _failure(bodies: list[object]) -> ModelCallFailed:
    (failed,) = [b for b in bodies if isinstance(b, ModelCallFailed)]
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    assert finished.reason == f"model call failed: {failed.error.message}"
    return failed


def _served(provider: str, responses: list[dict[str, Any]], tmp_path: Path, **kw: Any) -> Any:
    server: AbstractContextManager[Any] = _server(provider, responses)
    with server as s:
        status, bodies = _run(tmp_path, _agent(provider, s.base_url, **kw))
    return status, bodies, s


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unreachable_endpoint_is_retried_then_escalates(tmp_path: Path, provider: str) -> None:
    with _server(provider, []) as server:
        base_url = server.base_url  # closed once the server stops: connection refused
    agent = _agent(provider, base_url, max_attempts=2, outage_waits=0)
    status, bodies = _run(tmp_path, agent)
    assert status == "escalated"
    failed = _failure(bodies)
    assert (failed.error.code, failed.error.retryable, failed.attempts) == (
        "model_unavailable",
        True,
        2,
    )
    assert f"cannot connect to {base_url}" in failed.error.message
    assert failed.provider == provider


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_key_fails_the_run_naming_the_variable(tmp_path: Path, provider: str) -> None:
    if provider == "openai":
        server: Any = FakeOpenAIServer(responses=[{"status": 401, "error": "Incorrect API key"}])
    else:
        server = FakeAnthropicServer(responses=[{"content": "never"}], api_key="sk-right")
    with server:
        status, bodies = _run(tmp_path, _agent(provider, server.base_url))
    assert status == "failed"
    failed = _failure(bodies)
    assert (failed.error.code, failed.error.retryable) == ("model_auth", False)
    assert f"${KEY_ENV}" in failed.error.message
    assert len(server.requests) == 1  # not retried: the same key fails the same way


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_model_the_endpoint_does_not_serve_fails_the_run(tmp_path: Path, provider: str) -> None:
    server = _server(provider, [{"content": "never"}], unknown_models={"no-such-model"})
    with server:
        status, bodies = _run(tmp_path, _agent(provider, server.base_url, name="no-such-model"))
    assert status == "failed"
    failed = _failure(bodies)
    assert (failed.error.code, failed.model) == ("model_not_found", "no-such-model")
    assert "does not serve the model 'no-such-model'" in failed.error.message


@pytest.mark.parametrize(("provider", "status"), [("openai", 503), ("anthropic", 529)])
def test_an_overloaded_endpoint_is_retried_and_the_run_goes_on(
    tmp_path: Path, provider: str, status: int
) -> None:
    responses: list[dict[str, Any]] = [
        {"status": status, "error": "overloaded"},
        {"content": "All good."},
    ]
    run_status, bodies, server = _served(provider, responses, tmp_path)
    assert run_status == "succeeded"
    assert not [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert len(server.requests) == 2


def test_openai_arguments_cut_off_mid_json_are_never_proposed(tmp_path: Path) -> None:
    """A call cut off at the token limit is refused whole (``model_truncated``) and asked again:
    the cut may have dropped later calls too, so no call of that answer is proposed."""
    cut = '{"order_id": "A'
    responses: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "lookup", "arguments": cut}], "finish_reason": "length"},
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]},
        {"content": "Shipped."},
    ]
    status, bodies, server = _served("openai", responses, tmp_path)
    assert status == "succeeded"
    assert not [b for b in bodies if isinstance(b, ToolCallRejected)]
    assert [b.tool for b in bodies if isinstance(b, ToolCallSucceeded)] == ["lookup"]
    first = next(b for b in bodies if isinstance(b, ModelResponded))
    assert [(r.code, r.finish_reason) for r in first.rejected] == [("model_truncated", "length")]
    assert first.attempts == 2 and len(server.requests) == 3


@pytest.mark.parametrize(
    "cut",
    [
        {"tool_calls": [{"name": "lookup", "arguments": {}}], "stop_reason": "max_tokens"},
        {"content": "I have refunded the order and", "stop_reason": "max_tokens"},
    ],
    ids=["tool-use", "text"],
)
def test_anthropic_answer_cut_off_by_max_tokens_escalates(
    tmp_path: Path, cut: dict[str, Any]
) -> None:
    """Cut off is cut off, text or tool use: refused as ``model_truncated``, asked again,
    then escalated; never proposed, never the run's output."""
    cut = {**cut, "usage": {"input_tokens": 700, "output_tokens": 8}}
    status, bodies, _ = _served(
        "anthropic", [cut, cut], tmp_path, max_output_tokens=8, max_attempts=2
    )
    assert status == "escalated"
    failed = _failure(bodies)
    assert (failed.error.code, failed.error.retryable) == ("model_truncated", True)
    assert failed.finish_reason == "max_tokens"
    assert "cut off at the 8 token limit" in failed.error.message
    assert failed.usage.total == 2 * 708
    assert not [b for b in bodies if isinstance(b, ModelResponded)]
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    assert finished.output is None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_answer_with_nothing_in_it_escalates(tmp_path: Path, provider: str) -> None:
    empty = {"content": None, "usage": {}}
    status, bodies, server = _served(provider, [empty, empty], tmp_path, max_attempts=2)
    assert status == "escalated"
    assert _failure(bodies).error.code == "model_empty_answer"
    assert len(server.requests) == 2


def test_json_mode_answer_cut_off_mid_json_escalates_naming_the_fix(tmp_path: Path) -> None:
    cut = {"content": '{"tool_calls": [{"name": "look', "finish_reason": "length"}
    status, bodies, _ = _served("openai", [cut, cut], tmp_path, tool_calling="json", max_attempts=2)
    assert status == "escalated"
    failed = _failure(bodies)
    assert (failed.error.code, failed.finish_reason) == ("model_truncated", "length")
    assert "raise the model's max_output_tokens" in failed.error.message
    assert len(failed.rejected) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unparseable_body_is_retried_then_escalates(tmp_path: Path, provider: str) -> None:
    garbage = {"raw": "<html>502 Bad Gateway</html>"}
    status, bodies, server = _served(provider, [garbage, garbage], tmp_path, max_attempts=2)
    assert status == "escalated"
    failed = _failure(bodies)
    assert (failed.error.code, failed.error.retryable) == ("model_bad_response", True)
    assert len(server.requests) == 2
    assert json.dumps(failed.model_dump(mode="json"))  # a plain value in the log


def test_an_outage_is_waited_out_on_a_timer_then_escalates(tmp_path: Path) -> None:
    """Rate-limited through every attempt: the run parks, tries again, and gives up at last."""
    busy = [{"status": 429, "error": "slow down"}] * 6
    with FakeOpenAIServer(responses=busy) as server:
        agent = _agent("openai", server.base_url, max_attempts=1, outage_waits=2)
        agent = dataclasses.replace(
            agent, model=agent.model.model_copy(update={"outage_wait_s": 0.05})
        )

        async def main() -> tuple[list[str], list[object]]:
            async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
                run = await rt.run(agent, "Where is order A1?")
                seen = [run.status]
                while seen[-1] == "waiting":  # a timer: the run comes back by itself
                    await asyncio.sleep(0.1)
                    await rt.work(until_idle=True)
                    seen.append((await rt.get_run(run.run_id)).status)
                return seen, [e.body for e in await rt.events(run.run_id)]

        seen, bodies = asyncio.run(main())
    assert seen[0] == "waiting" and seen[-1] == "escalated"
    failed = [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert [f.error.code for f in failed] == ["model_rate_limited"] * 3  # 1 try + 2 waits
    waits = [b for b in bodies if isinstance(b, RunWaiting)]
    assert [w.waiting_for for w in waits] == ["timer", "timer"]
    finished = bodies[-1]
    assert isinstance(finished, RunFinished)
    assert "after waiting 2 time(s)" in (finished.reason or "")
    assert len(server.requests) == 3


def test_a_run_that_waited_out_an_outage_goes_on(tmp_path: Path) -> None:
    answers = [{"status": 503, "error": "overloaded"}, {"content": "Order A1 has shipped."}]
    with FakeOpenAIServer(responses=answers) as server:
        agent = _agent("openai", server.base_url, max_attempts=1)
        agent = dataclasses.replace(
            agent, model=agent.model.model_copy(update={"outage_wait_s": 0.05})
        )

        async def main() -> tuple[str, list[object]]:
            async with Runtime.open(f"sqlite:///{tmp_path}/c.db") as rt:
                run = await rt.run(agent, "Where is order A1?")
                assert run.status == "waiting"
                await asyncio.sleep(0.1)
                await rt.work(until_idle=True)
                record = await rt.get_run(run.run_id)
                return record.status, [e.body for e in await rt.events(run.run_id)]

        status, bodies = asyncio.run(main())
    assert status == "succeeded"
    assert [type(b).__name__ for b in bodies if isinstance(b, ModelCallFailed | RunWaiting)] == [
        "ModelCallFailed",
        "RunWaiting",
    ]
