"""Routing, pinning and caching through the real runtime: scripted models per route, a real
store (SQLite, and PostgreSQL where the ``store_url`` fixture gives both)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.helpers.cli import run_charter

from charter import Agent, Budgets, ModelSpec, Runtime, ScriptedModel, tool
from charter._engine.state import RunState, fold_all
from charter.agents import load_agent
from charter.events import (
    Event,
    ModelCallFailed,
    ModelDegraded,
    ModelResponded,
    ToolCallSucceeded,
)
from charter.models import CachePolicy, ModelRequest, ModelResponse, Route, Routing, StepRule
from charter.store import open_store

T = TypeVar("T")
LOOKED: list[str] = []
LOOK = {"tool_calls": [{"name": "look", "arguments": {"q": "order 1042"}}]}
UNUSED = {"content": "unused"}


@tool(cacheable=True, cache_ttl_s=60, cost_usd=0.01)
def look(q: str) -> dict[str, str]:
    """Look an order up."""
    LOOKED.append(q)
    return {"q": q, "status": "shipped"}


class Recording:
    """The scripted model, counting the calls that reached it."""

    provider = "scripted"

    def __init__(self, script: Any, *, name: str) -> None:
        self.name = name
        self._inner = ScriptedModel(script, name=name)
        self.requests: list[ModelRequest] = []

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return await self._inner.respond(request)


def _scripted(name: str, script: list[dict[str, Any]], **prices: float) -> dict[str, Any]:
    return {"provider": "scripted", "name": name, "script": script, **prices}


def _routed_agent(
    *, rules: tuple[StepRule, ...] | None = None, name: str = "router", **kw: Any
) -> Agent:
    """classify (small-1) for the first step, draft (big-2) after tool results."""
    routes = {
        "classify": Route.model_validate(_scripted("small-1", [LOOK])),
        "draft": Route.model_validate(_scripted("big-2", [UNUSED, {"content": "done"}])),
    }
    if rules is None:
        rules = (
            StepRule(when=("first",), kind="classify"),
            StepRule(when=("after_tool_results",), kind="draft"),
        )
    return Agent(
        name=name,
        instructions="Be helpful.",
        model=ModelSpec(provider="scripted", name="default-1", script=[UNUSED, {"content": "ok"}]),
        tools=[look],
        routing=Routing(routes=routes, rules=rules),
        **kw,
    )


def _in_runtime(url: str, scenario: Callable[[Runtime], Awaitable[T]], **kw: Any) -> T:
    async def main() -> T:
        async with Runtime(store=open_store(url), **kw) as rt:
            return await scenario(rt)

    return asyncio.run(main())


async def _run(rt: Runtime, agent: Agent, text: str, **kw: Any) -> tuple[str, list[Event]]:
    record = await rt.run(agent, text, **kw)
    events = await rt.events(record.run_id)
    assert RunState.model_validate(record.state) == fold_all(events)
    return record.status, events


def _of(events: list[Event], kind: type[T]) -> list[T]:
    return [e.body for e in events if isinstance(e.body, kind)]


# -- routing ------------------------------------------------------------------------------------


def test_each_model_event_records_the_steps_kind_and_route(db_url: str) -> None:
    async def scenario(rt: Runtime) -> list[Event]:
        status, events = await _run(rt, _routed_agent(), "Where is order 1042?")
        assert status == "succeeded"
        return events

    responded = _of(_in_runtime(db_url, scenario), ModelResponded)
    assert [(r.step_kind, r.route, r.model) for r in responded] == [
        ("classify", "classify", "small-1"),
        ("draft", "draft", "big-2"),
    ]


def test_a_step_no_rule_matches_goes_to_the_agents_model(db_url: str) -> None:
    agent = _routed_agent(rules=(StepRule(when=("first",), kind="classify"),))

    async def scenario(rt: Runtime) -> list[Event]:
        return (await _run(rt, agent, "Where is order 1042?"))[1]

    responded = _of(_in_runtime(db_url, scenario), ModelResponded)
    assert [(r.step_kind, r.route, r.model) for r in responded] == [
        ("classify", "classify", "small-1"),
        ("default", "model", "default-1"),
    ]
    assert responded[1].content == "ok"


def test_routes_answer_with_their_own_model_instances(db_url: str) -> None:
    agent = _routed_agent()
    small = Recording([LOOK], name="small-1")

    async def scenario(rt: Runtime) -> None:
        rt.register(agent, routes={"classify": small})
        await _run(rt, agent, "one")
        await _run(rt, agent, "two")

    _in_runtime(db_url, scenario)
    assert [r.step for r in small.requests] == [0, 0]  # only first steps, in both runs


def test_a_failed_call_records_the_kind_and_route(db_url: str) -> None:
    agent = _routed_agent(
        rules=(StepRule(when=("first",), kind="classify"), StepRule(kind="classify"))
    )  # classify's script has one response: the second step asks for more

    async def scenario(rt: Runtime) -> tuple[str, list[Event]]:
        return await _run(rt, agent, "Where is order 1042?")

    status, events = _in_runtime(db_url, scenario)
    [failed] = _of(events, ModelCallFailed)
    assert (failed.step_kind, failed.route, failed.model) == ("classify", "classify", "small-1")
    assert status == "failed"


# -- degradation near a budget --------------------------------------------------------------


def _budgeted_agent() -> Agent:
    """draft costs $1 per input token; past 5% of a $100 budget its free fallback answers."""
    fallback = _scripted("cheap-1", [UNUSED, LOOK, {"content": "done"}])
    draft = {
        **_scripted("big-2", [LOOK], input_usd_per_mtok=1_000_000),
        "fallback": fallback,
        "fallback_at": 0.05,
    }
    return Agent(
        name="budgeted",
        instructions="Be helpful.",
        model=ModelSpec(provider="scripted", name="default-1", script=[UNUSED]),
        tools=[look],
        budgets=Budgets(max_cost_usd=100),
        routing=Routing(
            routes={"draft": Route.model_validate(draft)}, rules=(StepRule(kind="draft"),)
        ),
        cache=CachePolicy(tools=False),
    )


def test_near_its_budget_a_route_falls_back_and_the_switch_is_recorded_once(
    db_url: str,
) -> None:
    async def scenario(rt: Runtime) -> tuple[str, list[Event]]:
        return await _run(rt, _budgeted_agent(), "Please look up order 1042 for me")

    status, events = _in_runtime(db_url, scenario)
    assert status == "succeeded"
    responded = _of(events, ModelResponded)
    assert [(r.route, r.model) for r in responded] == [
        ("draft", "big-2"),
        ("draft.fallback", "cheap-1"),
        ("draft.fallback", "cheap-1"),
    ]
    assert responded[0].cost_usd >= 5 and responded[1].cost_usd == responded[2].cost_usd == 0
    [switch] = _of(events, ModelDegraded)
    assert (switch.step_kind, switch.route, switch.from_model, switch.to_model) == (
        "draft",
        "draft.fallback",
        "big-2",
        "cheap-1",
    )
    assert switch.budget == "max_cost_usd" and switch.limit == 100
    assert switch.used == round(responded[0].cost_usd + look.cost_usd, 9)  # the run's spending
    seqs = {type(e.body).__name__: e.seq for e in events if e.body is switch}
    second = next(e.seq for e in events if e.body is responded[1])
    assert seqs["ModelDegraded"] < second  # recorded before the fallback's first answer


# -- pinning: which runs used a model ---------------------------------------------------------


def test_runs_list_model_finds_the_runs_that_used_it(store_url: str, tmp_path: Path) -> None:
    plain = Agent(
        name="plain",
        instructions="Be helpful.",
        model=ModelSpec(provider="scripted", name="gpt-4.1-mini-2025-04-14", script=[UNUSED]),
    )

    async def scenario(rt: Runtime) -> tuple[str, str]:
        routed = (await rt.run(_routed_agent(), "Where is order 1042?")).run_id
        other = (await rt.run(plain, "hello")).run_id
        assert [r.run_id for r in await rt.list_runs(model="small-1")] == [routed]
        assert [r.run_id for r in await rt.list_runs(model="big-2")] == [routed]
        assert [r.run_id for r in await rt.list_runs(model="gpt-4.1-mini-2025-04-14")] == [other]
        assert await rt.list_runs(model="default-1") == []  # named, never used
        assert await rt.list_runs(model="small-1", status="failed") == []
        return routed, other

    routed, _ = _in_runtime(store_url, scenario)
    listed = run_charter(tmp_path, "runs", "list", "--model", "big-2", "--db", store_url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [routed]
    none = run_charter(tmp_path, "runs", "list", "--model", "nope", "--db", store_url)
    assert none.returncode == 0 and "no runs using nope" in none.stdout


# -- the response cache -------------------------------------------------------------------------


def _priced_agent(cache: CachePolicy) -> Agent:
    return Agent(
        name="cached",
        instructions="Be helpful.",
        model=ModelSpec(
            provider="scripted",
            name="big-2",
            script=[LOOK, {"content": "shipped"}],
            input_usd_per_mtok=3.0,
            output_usd_per_mtok=15.0,
        ),
        tools=[look],
        cache=cache,
    )


def test_a_second_identical_run_answers_from_the_model_cache_at_no_cost(store_url: str) -> None:
    agent = _priced_agent(CachePolicy(models=True, tools=False))
    model = Recording(agent.model.script, name="big-2")

    async def scenario(rt: Runtime) -> tuple[list[Event], list[Event], list[str]]:
        rt.register(agent, model=model)
        _, first = await _run(rt, agent, "Where is order 1042?")
        calls = len(model.requests)
        second_record = await rt.run(agent, "Where is order 1042?")
        second = await rt.events(second_record.run_id)
        assert len(model.requests) == calls  # the model was not asked again
        assert second_record.state["cost_usd"] == look.cost_usd  # the tool call, no tokens
        assert second_record.state["tokens"] == 0
        await _run(rt, agent, "Where is order 1043?")  # another question: asked
        return first, second, [b.run_id for b in await rt.verify()]

    first, second, broken = _in_runtime(store_url, scenario)
    assert broken == []
    assert [r.cached for r in _of(first, ModelResponded)] == [False, False]
    assert all(r.cost_usd > 0 for r in _of(first, ModelResponded))
    hits = _of(second, ModelResponded)
    assert [r.cached for r in hits] == [True, True]
    assert all(r.cost_usd == 0 and r.usage.total == 0 and r.latency_ms == 0 for r in hits)
    assert [r.content for r in hits] == [r.content for r in _of(first, ModelResponded)]
    assert _of(second, ModelResponded)[0].tool_calls == _of(first, ModelResponded)[0].tool_calls


def test_the_model_cache_is_off_unless_the_agent_turns_it_on(db_url: str) -> None:
    agent = _priced_agent(CachePolicy(tools=False))
    model = Recording(agent.model.script, name="big-2")

    async def scenario(rt: Runtime) -> list[Event]:
        rt.register(agent, model=model)
        await _run(rt, agent, "Where is order 1042?")
        return (await _run(rt, agent, "Where is order 1042?"))[1]

    second = _in_runtime(db_url, scenario)
    assert len(model.requests) == 4
    assert not any(r.cached for r in _of(second, ModelResponded))


def test_a_different_model_version_does_not_share_cached_answers(db_url: str) -> None:
    one = _priced_agent(CachePolicy(models=True, tools=False))
    spec = one.model.model_copy(update={"name": "big-3"})
    two = Agent(
        name="cached", instructions="Be helpful.", model=spec, tools=[look], cache=one.cache
    )

    async def scenario(rt: Runtime) -> list[Event]:
        await _run(rt, one, "Where is order 1042?")
        return (await _run(rt, two, "Where is order 1042?"))[1]

    assert not any(r.cached for r in _of(_in_runtime(db_url, scenario), ModelResponded))


# -- the result cache for cacheable reads ----------------------------------------------------------


def test_a_cacheable_read_is_served_from_the_cache_until_its_ttl_passes(store_url: str) -> None:
    LOOKED.clear()
    now = [time.time() - 1000.0]  # behind the store's clock, so new runs are claimable at once
    agent = _priced_agent(CachePolicy())

    async def scenario(rt: Runtime) -> list[list[ToolCallSucceeded]]:
        results = []
        for advance, tenant in ((0, "acme"), (30, "acme"), (0, "globex"), (31, "acme")):
            now[0] += advance
            results.append(
                _of((await _run(rt, agent, "order?", tenant=tenant))[1], ToolCallSucceeded)
            )
        return results

    first, hit, other_tenant, expired = _in_runtime(store_url, scenario, clock=lambda: now[0])
    assert len(LOOKED) == 3  # the hit made no call
    assert [r.cached for r in first + hit + other_tenant + expired] == [False, True, False, False]
    assert first[0].cost_usd == 0.01 and hit[0].cost_usd == 0 and hit[0].duration_ms == 0
    assert hit[0].output == first[0].output


def test_the_result_cache_can_be_turned_off_per_agent(db_url: str) -> None:
    LOOKED.clear()
    agent = _priced_agent(CachePolicy(tools=False))

    async def scenario(rt: Runtime) -> list[Event]:
        await _run(rt, agent, "order?")
        return (await _run(rt, agent, "order?"))[1]

    second = _in_runtime(db_url, scenario)
    assert len(LOOKED) == 2
    assert not any(r.cached for r in _of(second, ToolCallSucceeded))


# -- the README's routing example -----------------------------------------------------------------


def test_the_readme_routing_example_loads(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = readme.read_text().split("```yaml\n")[1:]
    [block] = [b.split("```")[0] for b in blocks if "model_routing:" in b]
    folder = tmp_path / "examples" / "support"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "support_triage.md").write_text("Triage.")
    (folder / "router.yaml").write_text(block)
    agent = load_agent(folder / "router.yaml")
    assert agent.routing is not None
    assert sorted(agent.routing.routes) == ["classify", "draft", "validate"]
    draft = agent.routing.routes["draft"]
    assert draft.fallback is not None and draft.fallback.provider == "local"
    assert [r.kind for r in agent.routing.rules] == ["classify", "validate", "draft"]
    assert agent.cache == CachePolicy(models=True, models_ttl_s=3600, tools=True)
