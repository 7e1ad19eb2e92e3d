"""The policy engine between a proposed call and its execution, for one run.

The model only proposes; a :class:`Governor` asks the agent's policy set about each proposal
with the run's context (agent, tenant, principal and roles, environment, trust tier) and
returns the decision the loop records as ``policy_evaluated``. Control tools (ask, sleep)
are runtime primitives with no external effect and are not governed. Without a policy set
every call is allowed and nothing is recorded.

Provenance comes from a :class:`~charter._engine.provenance.ProvenanceTracker` the loop feeds
with every event of the run (``observe``); each decision gets where the call's argument values
came from, whether untrusted data is in its arguments or in the run, and what vouches for each
destination; the ``policy_evaluated`` event records what the decision used. The principal's
own tenant is ``RunStarted.principal_tenant`` (None when whoever started the run did not say,
which ``tenant_matches_principal`` never matches). Rules see the kill switch (``kill_switch``)
for write calls; the loop also enforces it itself, right before each write
(``RunDriver._write``), whatever the policy says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from charter._engine.provenance import Assessment, ProvenanceTracker
from charter.agents import Agent
from charter.events import (
    CounterReading,
    Event,
    PolicyEvaluated,
    ProvenanceRecord,
    RunStarted,
)
from charter.policy import Decision, PolicyInput
from charter.tools import Tool


class Governor:
    def __init__(self, agent: Agent, started: RunStarted, *, history: Iterable[Event] = ()) -> None:
        self.policy = agent.policy
        self.started = started
        """The run's first event: who the caller is (the result cache keys on it)."""
        self.provenance = ProvenanceTracker(
            config=(agent.instructions,),
            allowlisted=None if agent.policy is None else agent.policy.allowlisted,
        )
        self.last_assessment: Assessment | None = None
        self._kill_switch = False  # whether a switch covered the call last decided
        self._assessed: Mapping[str, Any] | None = None  # the arguments last_assessment is of
        for event in history:
            self.observe(event)
        self._context: dict[str, Any] = {
            "agent_name": agent.name,
            "agent_version": agent.version,
            "trust_tier": agent.trust_tier,
            "tenant": started.tenant,
            "principal": started.principal,
            "roles": frozenset(started.roles),
            "environment": started.environment,
            "principal_tenant": started.principal_tenant,
        }

    def observe(self, event: Event) -> None:
        """Feed one event of the run, in order (the loop calls it for every event)."""
        if self.policy is not None:  # without a policy nothing is decided: skip the indexing
            self.provenance.observe(event)

    def assess(self, tool: Tool, arguments: Mapping[str, Any]) -> Assessment:
        """Where a proposed call's data came from, as of the events observed so far."""
        return self.provenance.assess(arguments, _destinations(tool, arguments))

    def _input(
        self, tool: Tool, arguments: Mapping[str, Any], assessment: Assessment | None = None
    ) -> PolicyInput:
        if assessment is None and arguments is self._assessed:
            assessment = self.last_assessment  # the limiter asks again about the same call
        seen = assessment or self.assess(tool, arguments)
        return PolicyInput(
            tool=tool.name,
            effect=tool.effect,
            risk=tool.risk,
            arguments=arguments,
            destinations=_destinations(tool, arguments),
            untrusted_in_args=seen.untrusted_in_args,
            untrusted_in_context=seen.untrusted_in_context,
            destination_sources=seen.destinations,
            kill_switch=self._kill_switch,
            **self._context,
        )

    def visible(self, tools: Sequence[Tool]) -> list[Tool]:
        """Policy-first routing: the tools that policy could allow in this run's context."""
        if self.policy is None:
            return list(tools)
        return [
            t for t in tools if t.effect == "control" or self.policy.could_allow(self._input(t, {}))
        ]

    def decide(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        *,
        kill_switch: bool = False,
        what_if: Mapping[str, Any] | None = None,
    ) -> Decision | None:
        """The decision on a call, or None when the call is not governed.

        ``kill_switch``: a switch covers this run's writes now, for rules that match on it
        (the loop enforces the switch again right before the write, whatever policy says).
        ``what_if``: PolicyInput fields to set instead of what the run knows (provenance
        flags, the principal's tenant), for ``charter policy check`` and ``test``.
        """
        if self.policy is None or tool.effect == "control":
            return None
        self._kill_switch = kill_switch
        self.last_assessment = self.assess(tool, arguments)
        self._assessed = arguments
        inp = self._input(tool, arguments, self.last_assessment)
        if what_if:
            inp = dataclasses.replace(inp, **what_if)
        return self.policy.evaluate(inp)

    def last_provenance(self) -> ProvenanceRecord | None:
        """What the last decision knew about provenance, for its ``policy_evaluated`` event."""
        return None if self.last_assessment is None else self.last_assessment.record()


def decision_event(
    call_id: str,
    tool: str,
    decision: Decision,
    *,
    provenance: ProvenanceRecord | None = None,
    kill_switch: bool = False,
    limits: tuple[str, ...] = (),
    counters: tuple[CounterReading, ...] = (),
) -> PolicyEvaluated:
    """The ``policy_evaluated`` event of a decision, with what it was decided on."""
    return PolicyEvaluated(
        call_id=call_id,
        tool=tool,
        outcome=decision.outcome,
        reason=decision.reason,
        rule_ids=decision.rule_ids,
        policy_hash=decision.policy_hash,
        rewritten=decision.rewritten,
        arguments=dict(decision.arguments) if decision.rewritten else None,
        approval=None if decision.approval is None else decision.to_dict()["approval"],
        error=decision.error,
        provenance=provenance,
        kill_switch=kill_switch,
        limits=limits,
        counters=counters,
    )


def _destinations(tool: Tool, arguments: Mapping[str, Any]) -> dict[str, Any]:
    destinations = {}
    for path in tool.destinations:
        value = _get(arguments, path)
        if value is not None:
            destinations[path] = value
    return destinations


def _get(arguments: Mapping[str, Any], path: str) -> Any:
    value: Any = arguments
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
