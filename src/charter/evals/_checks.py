"""A case's expectations checked against the run's events and the simulated world's state.

Everything is read from the log (what the model proposed, what policy decided, what ran) and
from the world (:class:`~charter.evals._world.World`: the external systems' own records of
what actually happened), never from the runtime's memory. Each failed expectation is one
short line naming what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from charter.evals._suite import Expect
from charter.evals._world import World
from charter.events import (
    Event,
    PolicyEvaluated,
    RunStatus,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallStarted,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the run did, by call id."""

    proposed: dict[str, str]
    """call id -> tool."""
    executed: dict[str, str]
    arguments: dict[str, dict[str, Any]]
    failed: frozenset[str]
    retried: frozenset[str]
    reconciled: frozenset[str]
    late: frozenset[str]
    denials: int
    """Proposals the policy denied: the run's policy violations."""


def observe(events: Sequence[Event]) -> Observed:
    proposed: dict[str, str] = {}
    executed: dict[str, str] = {}
    arguments: dict[str, dict[str, Any]] = {}
    failed: set[str] = set()
    retried: set[str] = set()
    reconciled: set[str] = set()
    late: set[str] = set()
    denials = 0
    for event in events:
        body = event.body
        if isinstance(body, ToolCallProposed):
            proposed[body.call_id] = body.tool
            arguments[body.call_id] = dict(body.arguments or {})
        elif isinstance(body, PolicyEvaluated):
            denials += body.outcome == "deny"
            if body.arguments is not None:
                arguments[body.call_id] = dict(body.arguments)
        elif isinstance(body, ToolCallStarted | ToolCallSucceeded | ToolCallFailed):
            executed[body.call_id] = body.tool
            if isinstance(body, ToolCallSucceeded | ToolCallFailed) and body.late:
                late.add(body.tool)
            if isinstance(body, ToolCallFailed):
                failed.add(body.tool)
            elif isinstance(body, ToolCallSucceeded) and body.attempts > 1:
                retried.add(body.tool)
        if isinstance(body, ToolOutcomeUnknown) and body.resolution == "reconcile":
            reconciled.add(body.tool)
    return Observed(
        proposed=proposed,
        executed=executed,
        arguments=arguments,
        failed=frozenset(failed),
        retried=frozenset(retried),
        reconciled=frozenset(reconciled),
        late=frozenset(late),
        denials=denials,
    )


def check(
    expect: Expect,
    *,
    status: RunStatus,
    state: dict[str, Any],
    events: Sequence[Event],
    world: World,
    final_state: Any = None,
) -> list[str]:
    """Every expectation that does not hold, as one line each (empty: the case passed).

    ``final_state``: ``expect.final_state`` parsed by the world's ``final_state_model``."""
    seen = observe(events)
    problems: list[str] = []
    if expect.statuses() and status not in expect.statuses():
        problems.append(f"status {status}, expected {' or '.join(expect.statuses())}")
    problems += _calls(expect, seen)
    problems += _ran(expect, seen)
    if expect.no_policy_violation and seen.denials:
        problems.append(f"{seen.denials} proposal(s) denied by policy, expected none")
    problems += _ceilings(expect, state)
    if expect.exactly_once:
        problems += world.duplicates()
    if final_state is not None:
        problems += world.check(final_state)
    return problems


def _calls(expect: Expect, seen: Observed) -> list[str]:
    ran = set(seen.executed.values())
    problems = [f"{t} was not called" for t in expect.called if t not in ran]
    problems += [f"{t} was called, expected not" for t in expect.not_called if t in ran]
    for tool in expect.blocked:
        if tool in ran:
            problems.append(f"{tool} executed, expected blocked")
        elif tool not in seen.proposed.values():
            problems.append(f"{tool} was never proposed, so nothing was blocked")
    for call_id, fate in expect.calls.items():
        tool = seen.proposed.get(call_id, "?")
        if fate == "blocked" and call_id in seen.executed:
            problems.append(f"{call_id} ({tool}) executed, expected blocked")
        elif fate == "executed" and call_id not in seen.executed:
            problems.append(f"{call_id} ({tool}) did not execute")
    for want in expect.args:
        ran_with = [seen.arguments.get(c, {}) for c, t in seen.executed.items() if t == want.tool]
        if not any(_matches(want.args, got) for got in ran_with):
            problems.append(f"no {want.tool} call ran with {want.args} (ran with {ran_with})")
    return problems


def _ran(expect: Expect, seen: Observed) -> list[str]:
    problems = [f"{t} did not fail" for t in expect.failed if t not in seen.failed]
    problems += [f"{t} was not retried" for t in expect.retried if t not in seen.retried]
    problems += [f"{t} was not reconciled" for t in expect.reconciled if t not in seen.reconciled]
    problems += [f"{t} did not end late" for t in expect.late if t not in seen.late]
    return problems


def _ceilings(expect: Expect, state: dict[str, Any]) -> list[str]:
    problems = []
    cost = float(state.get("cost_usd", 0.0))
    if expect.max_cost_usd is not None and cost > expect.max_cost_usd:
        problems.append(f"cost ${cost:.4f} over the ceiling ${expect.max_cost_usd:.4f}")
    for name, ceiling in (("step", expect.max_steps), ("tool_calls", expect.max_tool_calls)):
        used = int(state.get(name, 0))
        if ceiling is not None and used > ceiling:
            problems.append(f"{name} {used} over the ceiling {ceiling}")
    return problems


def _matches(want: dict[str, Any], got: dict[str, Any]) -> bool:
    return all(k in got and got[k] == v for k, v in want.items())
