"""Runs with an HTTP model replay identically: the sampling parameters the original sent
(``model_responded.parameters``), a step asked again after an outage, and the excerpt of an
unusable answer are all served from the log.

Each run is made against a real socket (``charter.testing``'s fake OpenAI server) and then
replayed with :func:`charter.replay.replay_run`; the replay calls no server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import ModelCallFailed, ModelResponded, RunWaiting
from charter.models import ReplayModel
from charter.models._routing import describe
from charter.replay import ReplayReport, replay_run
from charter.testing import FakeOpenAIServer


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


def _agent(base_url: str, **model: Any) -> Agent:
    spec = ModelSpec(provider="openai", name="m-test", base_url=base_url, **model)
    return Agent(name="orders", instructions="Help.", model=spec, tools=[lookup])


def _run_and_replay(
    url: str, responses: list[dict[str, Any]], **model: Any
) -> tuple[list[object], ReplayReport]:
    with FakeOpenAIServer(responses=responses) as server:
        agent = _agent(server.base_url, **model)

        async def main() -> tuple[list[object], ReplayReport]:
            async with Runtime.open(url) as rt:
                run = await rt.run(agent, "Where is order A1?")
                if run.status == "waiting":  # an outage: wait it out, then go on
                    await asyncio.sleep(0.1)
                    await rt.work(until_idle=True)
                bodies = [e.body for e in await rt.events(run.run_id)]
                return bodies, await replay_run(rt.store, run.run_id)

        return asyncio.run(main())


def _answer(body: object) -> dict[str, object]:
    return {"content": json.dumps(body)}


def test_the_parameters_the_original_sent_are_recorded_again(store_url: str) -> None:
    call = {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]}
    responses = [_answer(call), _answer({"content": "A1 has shipped."})]
    bodies, report = _run_and_replay(store_url, responses, tool_calling="json")
    (first, _) = [b for b in bodies if isinstance(b, ModelResponded)]
    assert first.parameters.get("tool_calling") == "json"
    assert report.identical, report.divergence


def test_a_step_asked_again_after_an_outage_gets_the_answer_it_got_then(store_url: str) -> None:
    responses = [{"status": 503, "error": "overloaded"}, {"content": "Order A1 has shipped."}]
    bodies, report = _run_and_replay(store_url, responses, max_attempts=1, outage_wait_s=0.05)
    kinds = [type(b).__name__ for b in bodies if isinstance(b, ModelCallFailed | RunWaiting)]
    assert kinds == ["ModelCallFailed", "RunWaiting"]
    assert isinstance(bodies[-2], ModelResponded)  # the same step, answered after the wait
    assert report.identical, report.divergence


def test_unusable_answers_fail_again_with_their_excerpt(store_url: str) -> None:
    garbage = {"content": "I cannot answer in JSON.", "usage": {"prompt_tokens": 7}}
    bodies, report = _run_and_replay(
        store_url, [garbage, garbage], tool_calling="json", max_attempts=2
    )
    (failed,) = [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert failed.excerpt == "I cannot answer in JSON."
    assert report.identical, report.divergence


def test_a_local_model_is_described_with_the_file_version_and_parameters_it_recorded() -> None:
    """``describe`` is what the routing records on a model event: a replay's model must give
    the recorded GGUF file, its sha256 and the sampling parameters, not the spec's defaults."""
    recorded = ModelResponded(
        step=1,
        provider="local",
        model="qwen",
        prompt_hash="p",
        content="hi",
        endpoint="/models/qwen.gguf",
        model_version="1d96",
        parameters={"temperature": 0.0, "max_tokens": 256},
    )
    spec = ModelSpec(provider="local", name="qwen")
    assert describe(ReplayModel([recorded]), spec) == (
        "/models/qwen.gguf",
        "1d96",
        {"temperature": 0.0, "max_tokens": 256},
    )
