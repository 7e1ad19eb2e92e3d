"""Governance outside a run: the decision the engine would make on one call.

``charter policy check`` and ``charter policy test`` ask it; a run asks the same governor
(``charter._engine.governance``) inside the loop, with the run's history for provenance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from charter._engine.governance import Governor
from charter.agents import Agent
from charter.events import RunStarted
from charter.policy import Decision
from charter.tools import Tool

__all__ = ["decide_call"]


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
