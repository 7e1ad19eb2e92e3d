"""The model for each step: routing (pure, in ``models/_routing.py``), pinning and the cache.

``StepRoutes.choose`` applies the agent's rules to the facts the conversation kept and to the
run's spending, and returns a :class:`RoutedStep`: the kind, the route, the model (built once
per route and kept by the :class:`ModelRouter`), what is recorded on the model event (endpoint,
version, parameters), and the ``model_degraded`` event when a fallback answers for the first
time. ``lookup``/``keep`` are the response cache around the call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from charter._engine.caching import Caches, model_key
from charter._engine.state import RunState
from charter.agents import Agent
from charter.events import ModelDegraded
from charter.models import Model, ModelRequest, ModelResponse, ModelSpec
from charter.models._routing import ModelRouter, Selection, StepTracker, describe, select
from charter.store import CacheStorage

_NOT_THE_ANSWER = {
    "timeout_s",
    "max_attempts",
    "api_key_env",
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "fallback",
    "fallback_at",
    "threads",
}
"""Spec fields that do not change what a model answers: left out of the cache key."""


@dataclass(frozen=True, slots=True)
class RoutedStep:
    selection: Selection
    model: Model
    endpoint: str | None
    version: str | None
    parameters: dict[str, Any]
    identity: str
    """sha256 of what decides the model's answers (provider, spec, endpoint, version)."""
    routed: bool
    """The agent routes steps (so kind and route are recorded)."""
    degraded: ModelDegraded | None = None

    @property
    def spec(self) -> ModelSpec:
        return self.selection.spec

    def recorded(self) -> dict[str, Any]:
        """The fields every model event of this step carries."""
        fields: dict[str, Any] = {"endpoint": self.endpoint}
        if self.routed:
            fields.update(step_kind=self.selection.kind, route=self.selection.route)
        return fields


class StepRoutes:
    """Per run driver: chooses each step's model and consults the response cache."""

    def __init__(
        self,
        *,
        agent: Agent,
        model: Model,
        store: CacheStorage,
        clock: Callable[[], float],
        tenant: str,
    ) -> None:
        self.agent = agent
        self.tenant = tenant
        self.router = model if isinstance(model, ModelRouter) else ModelRouter(model)
        self.caches = Caches(store=store, policy=agent.cache, clock=clock)
        self._described: dict[str, tuple[str | None, str | None, dict[str, Any], str]] = {}

    def choose(self, steps: StepTracker, state: RunState) -> RoutedStep:
        budgets = self.agent.budgets
        selection = select(
            self.agent.routing,
            self.agent.model,
            steps.facts,
            tokens=state.tokens,
            cost_usd=state.cost_usd,
            max_tokens_total=budgets.max_tokens_total,
            max_cost_usd=budgets.max_cost_usd,
        )
        model = self.router.model_for(selection)
        endpoint, version, parameters, identity = self._describe(selection, model)
        degraded = None
        if selection.degraded is not None and selection.route not in steps.degraded:
            budget, used, limit = selection.degraded
            assert self.agent.routing is not None
            degraded = ModelDegraded(
                step_kind=selection.kind,
                route=selection.route,
                from_model=self.agent.routing.routes[selection.kind].name,
                to_provider=selection.spec.provider,
                to_model=selection.spec.name,
                budget=budget,
                used=used,
                limit=limit,
            )
        return RoutedStep(
            selection=selection,
            model=model,
            endpoint=endpoint,
            version=version,
            parameters=parameters,
            identity=identity,
            routed=self.agent.routing is not None,
            degraded=degraded,
        )

    def _describe(
        self, selection: Selection, model: Model
    ) -> tuple[str | None, str | None, dict[str, Any], str]:
        """Endpoint, version, parameters and identity of a route's model: worked out once."""
        known = self._described.get(selection.route)
        if known is None:
            endpoint, version, parameters = describe(model, selection.spec)
            spec = selection.spec.model_dump(mode="json", exclude=_NOT_THE_ANSWER)
            material = [model.provider, spec, endpoint, version]
            text = json.dumps(material, sort_keys=True, separators=(",", ":"))
            identity = hashlib.sha256(text.encode()).hexdigest()
            known = self._described[selection.route] = (endpoint, version, parameters, identity)
        return known

    async def lookup(
        self, step: RoutedStep, request: ModelRequest
    ) -> tuple[str | None, ModelResponse | None]:
        """``(key, cached response)``; ``(None, None)`` when the agent's model cache is off."""
        if not self.agent.cache.models:
            return None, None
        key = model_key(identity=step.identity, tenant=self.tenant, request=request)
        return key, await self.caches.response(key)

    async def keep(self, key: str | None, response: ModelResponse) -> None:
        if key is not None:
            await self.caches.keep_response(key, response)
