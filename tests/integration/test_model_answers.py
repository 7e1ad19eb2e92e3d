"""Answers a server gives with HTTP 200 that are not usable: empty, cut off, unparseable.

Each case drives a real run through ``Runtime`` against a real socket (the fake OpenAI server)
and a real store. An unusable answer is never a final answer: it is recorded with its reason,
retried within ``max_attempts`` and the budgets, then the run escalates. The tokens and cost of
every answered attempt, usable or not, reach the run's counters, the timeline and stats.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.cli import run_charter

from charter import Agent, Budgets, ModelSpec, Runtime, tool
from charter._engine.state import RunState
from charter.diff import summarize_run
from charter.events import (
    BudgetExceeded,
    ModelCallFailed,
    ModelResponded,
    RunFinished,
    ToolCallProposed,
    ToolCallSucceeded,
)
from charter.replay import replay_run
from charter.testing import FakeOpenAIServer

KEY_ENV = "CHARTER_TEST_MODEL_KEY"
USAGE = {"prompt_tokens": 700, "completion_tokens": 100}  # 800 tokens an answer
EMPTY = {"content": "", "finish_reason": "stop", "usage": USAGE}
CUT = {
    "content": "I have refunded the order and the customer",
    "finish_reason": "length",
    "usage": USAGE,
}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


def _agent(base_url: str, budgets: Budgets | None = None, **model: Any) -> Agent:
    spec = ModelSpec(
        provider="openai",
        name="m-test",
        base_url=base_url,
        api_key_env=KEY_ENV,
        input_usd_per_mtok=1.0,
        output_usd_per_mtok=10.0,
        **model,
    )
    return Agent(
        name="orders",
        instructions="Help.",
        model=spec,
        tools=[lookup],
        budgets=budgets or Budgets(),
    )


def _run(url: str, agent: Agent) -> tuple[str, str, list[object], Any]:
    async def main() -> tuple[str, str, list[object], Any]:
        async with Runtime.open(url) as rt:
            run = await rt.run(agent, "Refund order A1.")
            record = await rt.get_run(run.run_id)
            bodies = [e.body for e in await rt.events(run.run_id)]
            return run.run_id, run.status, bodies, RunState.model_validate(record.state)

    return asyncio.run(main())


def _served(
    url: str, responses: list[dict[str, Any]], **kw: Any
) -> tuple[str, str, list[object], Any, FakeOpenAIServer]:
    with FakeOpenAIServer(responses=responses) as server:
        run_id, status, bodies, state = _run(url, _agent(server.base_url, **kw))
    return run_id, status, bodies, state, server


def _finished(bodies: list[object]) -> RunFinished:
    (finished,) = [b for b in bodies if isinstance(b, RunFinished)]
    return finished


def test_an_empty_answer_is_retried_then_escalates(db_url: str) -> None:
    _, status, bodies, state, server = _served(db_url, [EMPTY, EMPTY, EMPTY])
    assert status == "escalated"
    assert len(server.requests) == 3
    (failed,) = [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert (failed.error.code, failed.error.retryable) == ("model_empty_answer", True)
    assert failed.finish_reason == "stop"
    assert [(r.attempt, r.code, r.finish_reason) for r in failed.rejected] == [
        (1, "model_empty_answer", "stop"),
        (2, "model_empty_answer", "stop"),
        (3, "model_empty_answer", "stop"),
    ]
    assert (failed.usage.input_tokens, failed.usage.output_tokens) == (2100, 300)
    assert failed.cost_usd == pytest.approx(3 * (700 * 1.0 + 100 * 10.0) / 1e6)
    assert state.tokens == 2400
    assert state.cost_usd == pytest.approx(failed.cost_usd)
    finished = _finished(bodies)
    assert finished.output is None
    assert "empty" in (finished.reason or "")
    assert not [b for b in bodies if isinstance(b, ModelResponded)]


def test_an_empty_answer_then_a_good_one_counts_both(db_url: str) -> None:
    good = {"content": "Order A1 has shipped.", "usage": USAGE}
    _, status, bodies, state, _ = _served(db_url, [EMPTY, good])
    assert status == "succeeded"
    assert _finished(bodies).output == "Order A1 has shipped."
    (responded,) = [b for b in bodies if isinstance(b, ModelResponded)]
    assert (responded.attempts, responded.finish_reason) == (2, "stop")
    assert [(r.attempt, r.code) for r in responded.rejected] == [(1, "model_empty_answer")]
    assert responded.usage.total == 1600  # the step's tokens: both answers
    assert state.tokens == 1600
    assert state.cost_usd == pytest.approx(2 * 1700 / 1e6)


def test_an_answer_cut_off_at_the_token_limit_is_not_a_final_answer(db_url: str) -> None:
    _, status, bodies, _, server = _served(db_url, [CUT, CUT], max_attempts=2)
    assert status == "escalated"
    assert len(server.requests) == 2
    (failed,) = [b for b in bodies if isinstance(b, ModelCallFailed)]
    assert failed.error.code == "model_truncated"
    assert failed.finish_reason == "length"
    assert "max_output_tokens" in failed.error.message
    finished = _finished(bodies)
    assert finished.output is None  # the claimed refund never became the run's answer
    assert "refunded" not in (finished.reason or "")


def test_tool_calls_cut_off_at_the_token_limit_are_not_proposed(db_url: str) -> None:
    cut_calls = {
        "tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}],
        "finish_reason": "length",
        "usage": USAGE,
    }
    good = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]},
        {"content": "Shipped."},
    ]
    _, status, bodies, _, server = _served(db_url, [cut_calls, *good])
    assert status == "succeeded"
    assert len(server.requests) == 3
    assert len([b for b in bodies if isinstance(b, ToolCallProposed)]) == 1
    assert [b.tool for b in bodies if isinstance(b, ToolCallSucceeded)] == ["lookup"]
    first = next(b for b in bodies if isinstance(b, ModelResponded))
    assert [(r.code, r.finish_reason) for r in first.rejected] == [("model_truncated", "length")]


def test_rejected_answers_stop_at_the_token_budget(db_url: str) -> None:
    budgets = Budgets(max_tokens_total=1000)
    _, status, bodies, state, server = _served(
        db_url, [EMPTY, EMPTY, EMPTY], budgets=budgets, max_attempts=3
    )
    assert status == "escalated"
    assert len(server.requests) == 2  # the second answer passed the budget: no third
    assert state.tokens == 1600
    (exceeded,) = [b for b in bodies if isinstance(b, BudgetExceeded)]
    assert (exceeded.budget, exceeded.used) == ("max_tokens_total", 1600)
    assert _finished(bodies).reason == "budget max_tokens_total exhausted: used 1600 of 1000"


def test_rejected_answers_stop_at_the_cost_budget(db_url: str) -> None:
    budgets = Budgets(max_cost_usd=0.0015)  # one answer costs 0.0017
    _, status, bodies, state, server = _served(db_url, [EMPTY, EMPTY, EMPTY], budgets=budgets)
    assert status == "escalated"
    assert len(server.requests) == 1
    assert state.cost_usd == pytest.approx(0.0017)
    (exceeded,) = [b for b in bodies if isinstance(b, BudgetExceeded)]
    assert exceeded.budget == "max_cost_usd"


def test_rejected_attempts_reach_the_timeline_and_stats(store_url: str, tmp_path: Path) -> None:
    run_id, status, _, _, _ = _served(store_url, [EMPTY, EMPTY, EMPTY])
    assert status == "escalated"
    shown = run_charter(tmp_path, "runs", "show", run_id, "--db", store_url)
    assert shown.returncode == 0, shown.stderr
    assert "2 retries · 2400 tokens" in shown.stdout  # was "0 retries · 0 tokens"
    assert "model_empty_answer" in shown.stdout
    done = run_charter(tmp_path, "stats", "--json", "--since", "all", "--db", store_url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["input_tokens"], report["output_tokens"]) == (2100, 300)
    assert report["retries"] == 2
    assert report["cost_usd"] == pytest.approx(0.0051)


def test_a_good_answer_after_retries_counts_its_retries_in_stats(
    db_url: str, tmp_path: Path
) -> None:
    good = {"content": "Order A1 has shipped.", "usage": USAGE}
    _served(db_url, [EMPTY, good])
    done = run_charter(tmp_path, "stats", "--json", "--since", "all", "--db", db_url)
    report = json.loads(done.stdout)
    assert report["retries"] == 1
    assert report["input_tokens"] + report["output_tokens"] == 1600


@pytest.mark.parametrize(
    "responses",
    [
        [EMPTY, {"content": "Order A1 has shipped.", "usage": USAGE}],
        [CUT, EMPTY, EMPTY],
    ],
    ids=["rejected-then-answered", "rejected-throughout"],
)
def test_a_run_with_rejected_answers_replays_identically(
    db_url: str, responses: list[dict[str, Any]]
) -> None:
    run_id, _, _, _, _ = _served(db_url, responses)

    async def main() -> Any:
        async with Runtime.open(db_url) as rt:
            return await replay_run(rt.store, run_id)

    report = asyncio.run(main())
    assert report.identical, report.divergence.to_dict() if report.divergence else None


def test_a_failed_steps_tokens_reach_the_run_diff(db_url: str) -> None:
    run_id, _, _, state, _ = _served(db_url, [EMPTY, EMPTY, EMPTY])

    async def main() -> Any:
        async with Runtime.open(db_url) as rt:
            return summarize_run(await rt.events(run_id))

    summary = asyncio.run(main())
    assert summary.tokens == state.tokens == 2400
    assert summary.cost_usd == pytest.approx(state.cost_usd)


def test_an_answer_that_used_every_output_token_is_cut_off_whatever_the_server_says(
    db_url: str,
) -> None:
    """A real llama.cpp-based server says ``finish_reason: "stop"`` even when it stopped at
    ``max_tokens``; the token count it reports shows the cut."""
    cut = {
        "content": "I have refunded the order and",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 700, "completion_tokens": 8},
    }
    good = {"content": "Not refunded.", "usage": {"prompt_tokens": 700, "completion_tokens": 5}}
    _, status, bodies, _, _ = _served(db_url, [cut, good], max_output_tokens=8)
    assert status == "succeeded"
    assert _finished(bodies).output == "Not refunded."
    (responded,) = [b for b in bodies if isinstance(b, ModelResponded)]
    assert [(r.code, r.finish_reason) for r in responded.rejected] == [("model_truncated", "stop")]
