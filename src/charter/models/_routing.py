"""Per-step model routing: which model answers a step, chosen by a pure rule from the run.

An agent declares its step kinds and a route (a model) per kind::

    model_routing:
      classify: {provider: local, name: qwen2.5-0.5b}
      draft: {provider: openai, name: gpt-4.1-mini-2025-04-14,
              fallback: {provider: local, name: qwen2.5-0.5b}, fallback_at: 0.8}
    step_kinds:                   # first matching rule wins
      - {when: first, kind: classify}
      - {when: [after_tool_results, after_write], kind: draft}
      - {kind: draft}             # no 'when': always matches

The facts a rule can test are derived from the events since the model last responded:

``first``               no model response yet in the run
``after_message``       a human message arrived since the last response
``after_tool_results``  tool results (successes, failures, rejections) arrived since
``after_write``         the last response proposed a write call
``after_failure``       a tool call failed or was rejected since the last response

A rule's ``when`` lists facts that must all hold. A step no rule matches is of kind
``default`` and goes to the agent's ``model:``. Near a budget (``fallback_at`` of the run's
``max_tokens_total`` or ``max_cost_usd`` spent), a route with a ``fallback`` answers with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from charter.errors import ConfigError
from charter.events import (
    EventBody,
    MessageReceived,
    ModelDegraded,
    ModelResponded,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallSucceeded,
)
from charter.models._base import Model, ModelRequest, ModelResponse, ModelSpec, build_model

Fact = Literal["first", "after_message", "after_tool_results", "after_write", "after_failure"]
FACTS: tuple[str, ...] = Fact.__args__  # type: ignore[attr-defined]
DEFAULT_KIND = "default"
DEFAULT_ROUTE = "model"
"""The route name of the agent's own ``model:`` (steps of the ``default`` kind)."""


class Route(ModelSpec):
    """A model for one step kind, with an optional cheaper ``fallback`` near a budget."""

    fallback: ModelSpec | None = None
    fallback_at: float = Field(default=0.8, gt=0, le=1)
    """The share of ``max_tokens_total`` or ``max_cost_usd`` spent from which the fallback
    answers instead."""


class StepRule(BaseModel):
    """``when`` these facts all hold, the step is of ``kind``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    when: tuple[Fact, ...] = ()
    kind: str

    @model_validator(mode="before")
    @classmethod
    def _one_fact(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("when"), str):
            return {**data, "when": (data["when"],)}
        return data


class Routing(BaseModel):
    """The agent's step kinds: a route per kind, and the rules that choose a step's kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    routes: dict[str, Route]
    rules: tuple[StepRule, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Routing:
        if DEFAULT_KIND in self.routes:
            raise ConfigError(
                f"model_routing: {DEFAULT_KIND!r} is the agent's own model; name the kind otherwise"
            )
        for i, rule in enumerate(self.rules):
            if rule.kind != DEFAULT_KIND and rule.kind not in self.routes:
                known = ", ".join(sorted(self.routes)) or "none"
                raise ConfigError(
                    f"step_kinds rule {i}: kind {rule.kind!r} has no route in model_routing"
                    f" (kinds: {known})"
                )
        return self


class CachePolicy(BaseModel):
    """The ``cache:`` section of an agent: which caches its runs use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: bool = False
    """Answer a model call from the response cache when the same model was asked the same."""
    models_ttl_s: float = Field(default=86_400.0, gt=0, allow_inf_nan=False)
    tools: bool = True
    """Serve calls to read tools declared ``cacheable`` from the result cache."""


@dataclass(frozen=True, slots=True)
class StepFacts:
    first: bool = False
    after_message: bool = False
    after_tool_results: bool = False
    after_write: bool = False
    after_failure: bool = False

    def holds(self, fact: str) -> bool:
        return bool(getattr(self, fact))


@dataclass(frozen=True, slots=True)
class Selection:
    """The model that answers a step: its kind, route name and spec, and why it fell back."""

    kind: str
    route: str
    spec: ModelSpec
    degraded: tuple[str, float, float] | None = None
    """``(budget, used, limit)`` when the route's fallback answers."""


def choose_kind(rules: tuple[StepRule, ...], facts: StepFacts) -> str:
    """The kind of the first rule whose facts all hold; ``default`` when none does."""
    for rule in rules:
        if all(facts.holds(f) for f in rule.when):
            return rule.kind
    return DEFAULT_KIND


def near_budget(
    share: float,
    *,
    tokens: int,
    cost_usd: float,
    max_tokens_total: int | None,
    max_cost_usd: float | None,
) -> tuple[str, float, float] | None:
    """``(budget, used, limit)`` of the first budget spent to ``share`` or more, else None."""
    if max_tokens_total and tokens >= share * max_tokens_total:
        return ("max_tokens_total", float(tokens), float(max_tokens_total))
    if max_cost_usd and cost_usd >= share * max_cost_usd:
        return ("max_cost_usd", round(cost_usd, 9), max_cost_usd)
    return None


def select(
    routing: Routing | None,
    default: ModelSpec,
    facts: StepFacts,
    *,
    tokens: int = 0,
    cost_usd: float = 0.0,
    max_tokens_total: int | None = None,
    max_cost_usd: float | None = None,
) -> Selection:
    """The route for a step (pure: the same facts and spending give the same answer)."""
    if routing is None:
        return Selection(kind=DEFAULT_KIND, route=DEFAULT_ROUTE, spec=default)
    kind = choose_kind(routing.rules, facts)
    route = routing.routes.get(kind)
    if route is None:
        return Selection(kind=kind, route=DEFAULT_ROUTE, spec=default)
    if route.fallback is not None:
        near = near_budget(
            route.fallback_at,
            tokens=tokens,
            cost_usd=cost_usd,
            max_tokens_total=max_tokens_total,
            max_cost_usd=max_cost_usd,
        )
        if near is not None:
            return Selection(
                kind=kind, route=f"{kind}.fallback", spec=route.fallback, degraded=near
            )
    return Selection(kind=kind, route=kind, spec=route)


class StepTracker:
    """The facts for the next step, kept from the events since the last model response.

    Fed every event of the run in order (when a worker loads it and as it appends); holds only
    the current step's facts and the routes that have answered, never the log.
    """

    def __init__(self) -> None:
        self.facts = StepFacts(first=True)
        self.degraded: set[str] = set()
        """The routes whose fallback has answered (``model_degraded`` is recorded once)."""

    def observe(self, body: EventBody) -> None:
        f = self.facts
        match body:
            case ModelResponded():
                self.facts = StepFacts()
            case ModelDegraded():
                self.degraded.add(body.route)
            case MessageReceived() if not f.first:
                self.facts = _with(f, after_message=True)
            case ToolCallProposed() if body.effect == "write":
                self.facts = _with(f, after_write=True)
            case ToolCallSucceeded():
                self.facts = _with(f, after_tool_results=True)
            case ToolCallFailed() | ToolCallRejected():
                self.facts = _with(f, after_tool_results=True, after_failure=True)


def _with(facts: StepFacts, **changes: bool) -> StepFacts:
    values = {name: getattr(facts, name) for name in FACTS}
    return StepFacts(**{**values, **changes})


class ModelRouter:
    """A :class:`Model` (the agent's own) that also keeps one model per route, built once.

    Shared by the runs of one agent in a runtime, so a route's client or loaded file is
    made on first use and reused.
    """

    def __init__(
        self,
        default: Model,
        *,
        routes: Mapping[str, Model] | None = None,
        build: Callable[[ModelSpec], Model] = build_model,
    ) -> None:
        self.default = default
        self.provider = default.provider
        self.name = default.name
        self._routes: dict[str, Model] = dict(routes or {})
        self._build = build

    async def respond(self, request: ModelRequest) -> ModelResponse:
        return await self.default.respond(request)

    def model_for(self, selection: Selection) -> Model:
        """The model for a selected route (the agent's own for the ``model`` route)."""
        if selection.route == DEFAULT_ROUTE:
            return self.default
        model = self._routes.get(selection.route)
        if model is None:
            model = self._routes[selection.route] = self._build(selection.spec)
        return model


def describe(model: Model, spec: ModelSpec) -> tuple[str | None, str | None, dict[str, Any]]:
    """``(endpoint, version, parameters)`` recorded on a model event and keyed in the cache.

    The endpoint is the URL an OpenAI-compatible model calls, or the GGUF file a local one
    runs; the version is that file's sha256 (a hosted model's version is its dated name).
    """
    endpoint = getattr(model, "endpoint", None)
    version = getattr(model, "sha256", None) if spec.provider == "local" else None
    own = getattr(model, "parameters", None)
    parameters: dict[str, Any] = {}
    if callable(own):
        parameters = dict(own())
    elif spec.provider != "scripted":
        parameters = {"temperature": spec.temperature}
        if spec.max_output_tokens is not None:
            parameters["max_output_tokens"] = spec.max_output_tokens
    return (
        None if endpoint is None else str(endpoint),
        None if version is None else str(version),
        parameters,
    )
