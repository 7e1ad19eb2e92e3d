"""The policy engine between a proposed call and its execution, for one run.

The model only proposes; a :class:`Governor` asks the agent's policy set about each proposal
with the run's context (agent, tenant, principal and roles, environment, trust tier) and
returns the decision the loop records as ``policy_evaluated``. Control tools (ask, sleep)
are runtime primitives with no external effect and are not governed. Without a policy set
every call is allowed and nothing is recorded.

Not yet known to the engine, and so passed to policy as unknown: the provenance of argument
values (counted as untrusted) and the principal's own tenant. The kill switch is enforced by
the loop itself, right before each write (``RunDriver._write``), whatever the policy says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from charter.agents import Agent
from charter.events import PolicyEvaluated, RunStarted
from charter.policy import Decision, PolicyInput
from charter.tools import Tool


class Governor:
    def __init__(self, agent: Agent, started: RunStarted) -> None:
        self.policy = agent.policy
        self._context: dict[str, Any] = {
            "agent_name": agent.name,
            "agent_version": agent.version,
            "trust_tier": agent.trust_tier,
            "tenant": started.tenant,
            "principal": started.principal,
            "roles": frozenset(started.roles),
            "environment": started.environment,
        }

    def _input(self, tool: Tool, arguments: Mapping[str, Any]) -> PolicyInput:
        destinations = {}
        for path in tool.destinations:
            value = _get(arguments, path)
            if value is not None:
                destinations[path] = value
        return PolicyInput(
            tool=tool.name,
            effect=tool.effect,
            risk=tool.risk,
            arguments=arguments,
            destinations=destinations,
            **self._context,
        )

    def visible(self, tools: Sequence[Tool]) -> list[Tool]:
        """Policy-first routing: the tools that policy could allow in this run's context."""
        if self.policy is None:
            return list(tools)
        return [
            t for t in tools if t.effect == "control" or self.policy.could_allow(self._input(t, {}))
        ]

    def decide(self, tool: Tool, arguments: Mapping[str, Any]) -> Decision | None:
        """The decision on a call, or None when the call is not governed."""
        if self.policy is None or tool.effect == "control":
            return None
        return self.policy.evaluate(self._input(tool, arguments))


def decision_event(call_id: str, tool: str, decision: Decision) -> PolicyEvaluated:
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
    )


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
