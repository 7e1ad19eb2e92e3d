"""Governance outside a run: the decision the engine would make on one call, and tables of
expected decisions.

``charter policy check`` asks :func:`decide_case` about one call; ``charter policy test``
runs a table of :class:`PolicyCase` (:func:`load_policy_cases`, :func:`check_policy_cases`).
A run asks the same governor (``charter._engine.governance``) inside the loop, with the run's
history for provenance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from charter._engine.governance import Governor
from charter.agents import Agent
from charter.errors import ConfigError
from charter.events import RunStarted
from charter.policy import Decision
from charter.principals import canonical_principal
from charter.tools import Tool, validation_message

__all__ = [
    "PolicyCase",
    "PolicyCaseResult",
    "check_policy_cases",
    "decide_call",
    "decide_case",
    "load_policy_cases",
]


def decide_call(
    agent: Agent,
    started: RunStarted,
    tool: Tool,
    arguments: Mapping[str, Any],
    *,
    kill_switch: bool = False,
    what_if: Mapping[str, Any] | None = None,
) -> Decision | None:
    """The agent's policy decision on ``tool`` called with (validated) ``arguments`` in a run
    that ``started`` describes, or None when the call is not governed (no policy, or a control
    tool). A single call has no history: every argument value counts as the model's.

    ``kill_switch``: as if a switch covered the run's writes. ``what_if``: policy-input fields
    to set instead of what the engine finds (provenance flags, the principal's tenant).
    """
    return Governor(agent, started).decide(
        tool, arguments, kill_switch=kill_switch, what_if=what_if
    )


class PolicyCase(BaseModel):
    """One call and the decision expected on it (a row of ``charter policy test``'s table)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    tool: str
    args: dict[str, Any] = {}
    tenant: str = "default"
    principal: str = "anonymous"
    roles: list[str] = []
    environment: str = "dev"
    principal_tenant: str | None = None
    kill_switch: bool = False
    untrusted_in_args: bool | None = None
    """What-if provenance (a single call has no run history): None leaves what the engine
    finds, which is that every value came from the model."""
    untrusted_in_context: bool | None = None
    destination_sources: dict[str, list[str]] | None = None
    expect: str
    """allow, deny or require_approval (``charter policy check`` asks with ``?``)."""
    rule: str | None = None
    """The rule expected to decide (the last of the decision's rule ids)."""


def decide_case(agent: Agent, case: PolicyCase) -> Decision:
    """The agent's policy decision on the case's call; ConfigError when the agent has no
    policy, the arguments do not fit the tool, or the tool is not governed (a control tool)."""
    if agent.policy is None:
        raise ConfigError(f"agent {agent.name} has no policy", hint="add 'policy: FILE' to it")
    tool = agent.registry().get(case.tool)
    try:
        arguments = tool.validate(case.args)
    except ValidationError as exc:
        raise ConfigError(f"arguments for {tool.name}: {validation_message(exc)}") from exc
    started = RunStarted(
        agent_name=agent.name,
        agent_version=agent.version,
        agent_hash=agent.agent_hash,
        tenant=case.tenant,
        principal=canonical_principal(case.principal),
        input="",
        roles=tuple(case.roles),
        environment=case.environment,
        principal_tenant=case.principal_tenant,
    )
    what_if = {
        name: value
        for name in ("untrusted_in_args", "untrusted_in_context", "destination_sources")
        if (value := getattr(case, name)) is not None
    }
    decision = decide_call(
        agent, started, tool, arguments, kill_switch=case.kill_switch, what_if=what_if
    )
    if decision is None:
        raise ConfigError(f"{tool.name} is a control tool: policy does not govern it")
    return decision


def load_policy_cases(path: str | Path) -> list[PolicyCase]:
    """A YAML list of policy cases; one ConfigError naming the file when it is not one."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        return [PolicyCase.model_validate(c) for c in raw]
    except (OSError, yaml.YAMLError, ValidationError, TypeError) as exc:
        raise ConfigError(f"{path}: not a list of policy cases: {exc}") from exc


@dataclass(frozen=True, slots=True)
class PolicyCaseResult:
    """A case's verdict: the decision ``got`` (by rule ``by``) against the one expected."""

    case: str
    ok: bool
    expected: str
    rule: str | None
    got: str
    by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "ok": self.ok, "expected": self.expected,
                "rule": self.rule, "got": self.got, "by": self.by}  # fmt: skip


def check_policy_cases(agent: Agent, cases: Sequence[PolicyCase]) -> list[PolicyCaseResult]:
    """Each case decided and compared: the outcome, and the deciding rule when one is named."""
    results = []
    for i, case in enumerate(cases, 1):
        decision = decide_case(agent, case)
        deciding = decision.rule_ids[-1] if decision.rule_ids else None
        ok = decision.outcome == case.expect and case.rule in (None, deciding)
        results.append(
            PolicyCaseResult(case.name or f"#{i}", ok, case.expect, case.rule,
                             decision.outcome, deciding)
        )  # fmt: skip
    return results
