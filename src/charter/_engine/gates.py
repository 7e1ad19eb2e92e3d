"""The gates a proposed call passes, in order, and the verdict each one records.

1. **schema** (:func:`schema`, pure): the arguments are a JSON object, the tool exists, and the
   arguments fit its input model; ``tool_call_proposed`` records the call (with the validated
   arguments), a failure ``tool_call_rejected`` with a structured error the model sees.
2. **policy** (:meth:`charter._engine.governance.Governor.decide`, pure): the policy set on
   the call's input, provenance and, for writes, whether a kill switch covers the run (an
   answer the shell reads and the event records as ``kill_switch``).
3. **limits and spending** (:meth:`charter._engine.limits.Limiter.apply`): slots taken from
   the durable counters and the daily caps read; a refusal turns the decision into a denial.
   The figures read are recorded as ``policy_evaluated.counters``.
4. **the verdict** (:func:`verdict`, pure): a denial becomes the rejection the model sees,
   a hold for a human becomes an approval request; ``policy_evaluated`` records gates 2 and 3.

The kill switch is enforced once more right before each write, whatever policy said
(:func:`charter._engine.decider.blocked`). Without a policy only the schema gate applies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from charter.events import ErrorInfo, ProposedCall, ToolCallProposed
from charter.policy import Decision
from charter.tools import Tool, ToolRegistry, validation_message


@dataclass(frozen=True, slots=True)
class Checked:
    """A call that passed the schema gate: its tool and its validated arguments."""

    call_id: str
    tool: Tool
    arguments: dict[str, Any]


def schema(
    call: ProposedCall, tools: ToolRegistry, *, step: int
) -> tuple[ToolCallProposed, Checked | None, ErrorInfo | None]:
    """The proposal as recorded, and either the checked call or why it is rejected."""
    tool = tools.find(call.name)
    error: ErrorInfo | None = None
    arguments: Any = None
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as exc:
        error = ErrorInfo(
            code="malformed_arguments", message=f"arguments are not valid JSON: {exc}"
        )
    if error is None and not isinstance(arguments, dict):
        arguments = None
        error = ErrorInfo(code="malformed_arguments", message="arguments must be a JSON object")
    if error is None and tool is None:
        names = ", ".join(t.name for t in tools) or "none"
        error = ErrorInfo(
            code="unknown_tool", message=f"no tool named {call.name!r}; tools: {names}"
        )
    if error is None and tool is not None:
        try:
            arguments = tool.validate(arguments)
        except ValidationError as exc:
            error = ErrorInfo(code="invalid_arguments", message=validation_message(exc))
    proposed = ToolCallProposed(
        step=step,
        call_id=call.call_id,
        tool=call.name,
        effect=tool.effect if tool else "unknown",
        arguments=arguments,
        tool_version=tool.version if tool else None,
    )
    if error is not None or tool is None:
        return proposed, None, error
    return proposed, Checked(call.call_id, tool, arguments), None


def verdict(decision: Decision) -> tuple[Literal["go", "deny", "hold"], ErrorInfo | None]:
    """What a decision means for the call: it goes on, it is denied (with the error the
    model sees), or it is held for a human."""
    if decision.outcome == "deny":
        return "deny", ErrorInfo(code="policy_denied", message=decision.reason)
    if decision.outcome == "require_approval":
        return "hold", None
    return "go", None
