"""Per-step routing (pure): step facts, the kind rules, fallback near a budget; cache keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from charter import Agent, ModelSpec, tool
from charter._engine.caching import decode_response, encode_response, model_key, tool_key
from charter.agents import load_agent
from charter.errors import ConfigError
from charter.events import (
    Event,
    MessageReceived,
    ModelDegraded,
    ModelResponded,
    ProposedCall,
    RunStarted,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallSucceeded,
    Usage,
)
from charter.models import Message, ModelRequest, ModelResponse, ToolSpec
from charter.models._routing import (
    CachePolicy,
    Route,
    Routing,
    StepFacts,
    StepRule,
    StepTracker,
    choose_kind,
    near_budget,
    select,
)

DEFAULT = ModelSpec(provider="scripted", name="default-1", script=[])
SMALL = Route(provider="scripted", name="small-1", script=[])
CHEAP = ModelSpec(provider="scripted", name="cheap-1", script=[])
BIG = Route(provider="scripted", name="big-2", script=[], fallback=CHEAP, fallback_at=0.5)
ROUTING = Routing(
    routes={"classify": SMALL, "draft": BIG},
    rules=(
        StepRule(when=("first",), kind="classify"),
        StepRule(when=("after_tool_results", "after_failure"), kind="classify"),
        StepRule(when=("after_write",), kind="draft"),
        StepRule(when=("after_message",), kind="draft"),
    ),
)


# -- the step's kind ------------------------------------------------------------------------


def test_the_first_matching_rule_chooses_the_kind() -> None:
    assert choose_kind(ROUTING.rules, StepFacts(first=True)) == "classify"
    assert choose_kind(ROUTING.rules, StepFacts(after_write=True)) == "draft"
    assert choose_kind(ROUTING.rules, StepFacts(after_message=True)) == "draft"


def test_a_rule_needs_all_of_its_facts() -> None:
    results_only = StepFacts(after_tool_results=True)
    assert choose_kind(ROUTING.rules, results_only) == "default"
    failed = StepFacts(after_tool_results=True, after_failure=True, after_write=True)
    assert choose_kind(ROUTING.rules, failed) == "classify"  # earlier rule wins


def test_a_rule_without_when_always_matches() -> None:
    rules = (StepRule(when=("first",), kind="classify"), StepRule(kind="draft"))
    assert choose_kind(rules, StepFacts()) == "draft"


def test_when_may_be_one_fact_as_text() -> None:
    assert StepRule.model_validate({"when": "first", "kind": "x"}).when == ("first",)


def test_an_unknown_fact_is_refused() -> None:
    with pytest.raises(ValueError, match="when"):
        StepRule.model_validate({"when": ["after_lunch"], "kind": "x"})


def test_a_rule_naming_a_kind_without_a_route_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="kind 'validate' has no route"):
        Routing(routes={"draft": BIG}, rules=(StepRule(kind="validate"),))


def test_default_cannot_be_a_route_name() -> None:
    with pytest.raises(ConfigError, match="'default' is the agent's own model"):
        Routing(routes={"default": SMALL})


# -- the facts, from events -------------------------------------------------------------------


def _feed(tracker: StepTracker, *bodies: Any) -> StepFacts:
    for body in bodies:
        tracker.observe(body)
    return tracker.facts


def _responded(route: str | None = None) -> ModelResponded:
    return ModelResponded(step=1, provider="scripted", model="m", prompt_hash="h", route=route)


def test_facts_start_as_first_and_reset_at_each_response() -> None:
    tracker = StepTracker()
    assert _feed(tracker, MessageReceived(text="hi", source="input")) == StepFacts(first=True)
    assert _feed(tracker, _responded()) == StepFacts()


def test_facts_note_writes_results_failures_and_messages() -> None:
    tracker = StepTracker()
    facts = _feed(
        tracker,
        _responded(),
        ToolCallProposed(step=1, call_id="c1", tool="refund", effect="write"),
        ToolCallSucceeded(call_id="c1", tool="refund"),
    )
    assert facts == StepFacts(after_write=True, after_tool_results=True)
    failed = ToolCallFailed(call_id="c2", tool="x", error={"code": "tool", "message": "no"})
    facts = _feed(tracker, _responded(), failed, MessageReceived(text="and?"))
    assert facts == StepFacts(after_tool_results=True, after_failure=True, after_message=True)


def test_a_read_proposal_is_not_a_write() -> None:
    tracker = StepTracker()
    proposed = ToolCallProposed(step=1, call_id="c1", tool="look", effect="read")
    assert _feed(tracker, _responded(), proposed) == StepFacts()


def test_the_tracker_remembers_routes_that_fell_back() -> None:
    tracker = StepTracker()
    degraded = ModelDegraded(
        step_kind="draft",
        route="draft.fallback",
        from_model="big-2",
        to_provider="scripted",
        to_model="cheap-1",
        budget="max_cost_usd",
        used=0.6,
        limit=1.0,
    )
    _feed(tracker, degraded, _responded("draft.fallback"))
    assert tracker.degraded == {"draft.fallback"}


# -- the route, and its fallback near a budget ------------------------------------------------


def test_no_routing_always_selects_the_agents_model() -> None:
    chosen = select(None, DEFAULT, StepFacts(first=True))
    assert (chosen.kind, chosen.route, chosen.spec) == ("default", "model", DEFAULT)


def test_an_unmatched_step_goes_to_the_agents_model() -> None:
    chosen = select(ROUTING, DEFAULT, StepFacts())
    assert (chosen.kind, chosen.route, chosen.spec.name) == ("default", "model", "default-1")


def test_a_routed_kind_selects_its_route() -> None:
    chosen = select(ROUTING, DEFAULT, StepFacts(first=True))
    assert (chosen.kind, chosen.route, chosen.spec.name) == ("classify", "classify", "small-1")


def test_the_fallback_answers_from_its_share_of_the_cost_budget() -> None:
    facts = StepFacts(after_write=True)
    below = select(ROUTING, DEFAULT, facts, cost_usd=0.49, max_cost_usd=1.0)
    assert (below.route, below.spec.name, below.degraded) == ("draft", "big-2", None)
    at = select(ROUTING, DEFAULT, facts, cost_usd=0.5, max_cost_usd=1.0)
    assert (at.kind, at.route, at.spec.name) == ("draft", "draft.fallback", "cheap-1")
    assert at.degraded == ("max_cost_usd", 0.5, 1.0)


def test_the_fallback_answers_from_its_share_of_the_token_budget() -> None:
    chosen = select(ROUTING, DEFAULT, StepFacts(after_write=True), tokens=60, max_tokens_total=100)
    assert chosen.degraded == ("max_tokens_total", 60.0, 100.0)


def test_without_budgets_there_is_no_fallback() -> None:
    chosen = select(ROUTING, DEFAULT, StepFacts(after_write=True), tokens=10**9, cost_usd=1e9)
    assert chosen.route == "draft"


def test_a_route_without_fallback_keeps_its_model_near_the_budget() -> None:
    chosen = select(ROUTING, DEFAULT, StepFacts(first=True), cost_usd=0.99, max_cost_usd=1.0)
    assert chosen.route == "classify"


def test_near_budget_names_the_first_budget_reached() -> None:
    assert near_budget(0.8, tokens=0, cost_usd=0, max_tokens_total=None, max_cost_usd=None) is None
    got = near_budget(0.8, tokens=80, cost_usd=0.9, max_tokens_total=100, max_cost_usd=1.0)
    assert got == ("max_tokens_total", 80.0, 100.0)


def test_a_fallback_cannot_have_a_fallback() -> None:
    with pytest.raises(ValueError, match="fallback"):
        Route.model_validate(
            {
                "provider": "openai",
                "name": "a",
                "fallback": {"provider": "openai", "name": "b", "fallback": {"provider": "x"}},
            }
        )


# -- agents ------------------------------------------------------------------------------------


AGENT_FILE = """
agent:
  name: router
  instructions: prompt.md
  model: {provider: scripted, name: default-1, script: []}
  model_routing:
    classify: {provider: scripted, name: small-1, script: small.json}
    draft:
      provider: scripted
      name: big-2
      script: []
      fallback: {provider: scripted, name: cheap-1, script: small.json}
      fallback_at: 0.75
  step_kinds:
    - {when: first, kind: classify}
    - {kind: draft}
  cache: {models: true, models_ttl_s: 60}
"""


def test_load_agent_reads_routing_rules_and_cache(tmp_path: Path) -> None:
    (tmp_path / "small.json").write_text('[{"content": "hi"}]')
    (tmp_path / "prompt.md").write_text("Be brief.")
    (tmp_path / "agent.yaml").write_text(AGENT_FILE)
    agent = load_agent(tmp_path / "agent.yaml")
    assert agent.routing is not None
    assert agent.routing.routes["classify"].script == [{"content": "hi"}]
    draft = agent.routing.routes["draft"]
    assert draft.fallback is not None and draft.fallback.script == [{"content": "hi"}]
    assert draft.fallback_at == 0.75
    assert [r.kind for r in agent.routing.rules] == ["classify", "draft"]
    assert agent.cache == CachePolicy(models=True, models_ttl_s=60)
    again = Agent.from_spec(agent.spec())
    assert again.routing == agent.routing and again.cache == agent.cache
    assert again.agent_hash == agent.agent_hash


def test_step_kinds_naming_an_unrouted_kind_is_a_config_error_naming_the_file(
    tmp_path: Path,
) -> None:
    text = AGENT_FILE.replace("{kind: draft}", "{kind: validate}").replace("small.json", "[]")
    (tmp_path / "prompt.md").write_text("Be brief.")
    (tmp_path / "agent.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"agent\.yaml: step_kinds rule 1: kind 'validate'"):
        load_agent(tmp_path / "agent.yaml")


def test_step_kinds_without_model_routing_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("Be brief.")
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: a\n  instructions: prompt.md\n  model: {provider: scripted, script: []}\n"
        "  step_kinds: [{kind: draft}]\n"
    )
    with pytest.raises(ConfigError, match="step_kinds needs model_routing"):
        load_agent(tmp_path / "agent.yaml")


def test_an_agent_without_routing_or_cache_keeps_its_spec() -> None:
    agent = Agent(name="plain", instructions="x", model=DEFAULT)
    assert "routing" not in agent.spec() and "cache" not in agent.spec()


# -- cache keys --------------------------------------------------------------------------------


def _request(text: str = "hello", *, run_id: str = "run_a", step: int = 0) -> ModelRequest:
    return ModelRequest(
        run_id=run_id,
        step=step,
        messages=(Message(role="system", content="Be brief."), Message(role="user", content=text)),
        tools=(ToolSpec(name="look", description="Look.", parameters={"type": "object"}),),
        parameters={"temperature": 0.0},
    )


def test_the_model_key_ignores_run_and_step_but_not_content_model_or_parameters() -> None:
    key = model_key(identity="m1", tenant="acme", request=_request())
    assert key == model_key(identity="m1", tenant="acme", request=_request(run_id="b", step=3))
    assert key != model_key(identity="m2", tenant="acme", request=_request())
    assert key != model_key(identity="m1", tenant="acme", request=_request("hello!"))
    assert key != model_key(identity="m1", tenant="globex", request=_request())
    warmer = _request()
    warmer = ModelRequest(
        run_id=warmer.run_id,
        step=0,
        messages=warmer.messages,
        tools=warmer.tools,
        parameters={"temperature": 0.7},
    )
    assert key != model_key(identity="m1", tenant="acme", request=warmer)


def test_a_cached_response_round_trips_with_zero_usage() -> None:
    response = ModelResponse(
        content=None,
        tool_calls=(ProposedCall(call_id="c", name="look", arguments='{"q": 1}'),),
        usage=Usage(input_tokens=10, output_tokens=3),
        model="big-2",
    )
    back = decode_response(encode_response(response))
    assert back is not None
    assert back.tool_calls == response.tool_calls and back.model == "big-2"
    assert back.usage == Usage()
    assert decode_response("not json") is None


@tool(cacheable=True, cache_ttl_s=60)
def look(q: str) -> str:
    """Look something up."""
    return q


def _caller(**changes: Any) -> RunStarted:
    fields: dict[str, Any] = {
        "agent_name": "a",
        "agent_version": "1",
        "agent_hash": "h",
        "tenant": "acme",
        "principal": "ann",
        "input": "hi",
        "roles": ("support",),
        "environment": "prod",
    }
    return RunStarted(**(fields | changes))


def test_the_tool_key_covers_the_whole_caller_and_the_arguments() -> None:
    key = tool_key(look, caller=_caller(), arguments={"q": "a"})
    assert key == tool_key(look, caller=_caller(input="other"), arguments={"q": "a"})
    for change in (
        {"tenant": "globex"},
        {"principal": "bob"},
        {"roles": ("support", "admin")},
        {"environment": "staging"},
        {"principal_tenant": "acme"},
    ):
        assert key != tool_key(look, caller=_caller(**change), arguments={"q": "a"}), change
    assert key != tool_key(look, caller=_caller(), arguments={"q": "b"})


def test_a_tenant_scoped_tool_key_ignores_who_asks_within_the_tenant() -> None:
    shared = tool(cacheable=True, cache_scope="tenant")(look.fn)
    key = tool_key(shared, caller=_caller(), arguments={"q": "a"})
    assert key == tool_key(shared, caller=_caller(principal="bob", roles=()), arguments={"q": "a"})
    assert key != tool_key(shared, caller=_caller(tenant="globex"), arguments={"q": "a"})
    assert key != tool_key(look, caller=_caller(), arguments={"q": "a"})


def test_a_write_tool_cannot_be_cacheable() -> None:
    def pay(amount: int) -> str:
        return "paid"

    with pytest.raises(ConfigError, match="only read tools can be cacheable"):
        tool(effect="write", cacheable=True)(pay)


def test_cache_ttl_must_be_positive() -> None:
    def find(q: str) -> str:
        return q

    with pytest.raises(ConfigError, match="cache_ttl_s"):
        tool(cacheable=True, cache_ttl_s=0)(find)


def test_describe_reports_cacheability() -> None:
    assert look.describe()["cacheable"] is True and look.describe()["cache_ttl_s"] == 60


def test_events_keep_routing_fields_out_of_the_payload_when_unset() -> None:
    body = _responded()
    event = Event.seal(run_id="r", seq=1, at=0.0, body=body, prev_hash="0" * 64)
    for name in ("step_kind", "route", "endpoint", "model_version", "parameters", "cached"):
        assert name not in event.payload
