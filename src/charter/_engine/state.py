"""Durable run state, derived from the event log by a pure fold.

``fold(state, event)`` is the only way state changes. The store keeps the latest state beside
the events, committed in the same transaction, so that ``runs show`` and budget checks need
not read the log; a test checks that the stored state equals the fold of the stored events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from charter.events import (
    FINAL_STATUSES,
    ApprovalDecided,
    ApprovalRequested,
    CallEffect,
    Event,
    MessageReceived,
    ModelCallFailed,
    ModelResponded,
    PolicyEvaluated,
    RunFinished,
    RunResumed,
    RunStarted,
    RunStatus,
    RunWaiting,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
)


class PendingCall(BaseModel):
    """A proposed tool call whose result is not yet in the log."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    tool: str
    effect: CallEffect
    arguments: dict[str, object]
    stage: Literal["proposed", "held", "started"] = "proposed"
    """``held``: waiting for a human's approval; ``started``: a write's intent is committed."""
    idempotency_key: str | None = None
    approval_id: str | None = None
    approved_hash: str | None = None
    """The arguments hash a grant is bound to: the call runs only with exactly these."""
    rounds: int = 0
    """Unknown outcomes of this call settled so far (``tool_outcome_unknown``): each one
    raises the fencing token of the attempts that may follow."""


class RunState(BaseModel):
    """What must survive a crash: counters against the budgets, calls in flight, status."""

    model_config = ConfigDict(frozen=True)

    status: RunStatus = "queued"
    step: int = 0
    tool_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    model_outages: int = 0
    """Model steps in a row that failed because the provider was unavailable or rate-limited."""
    """The run's spending so far: model responses and tool calls at their prices."""
    limits_used: dict[str, int] = {}
    """Calls counted against each rate limit and scope (``policy_evaluated.limits``); the
    ``run`` windows are checked against these."""
    active_s: float = 0.0
    last_at: float = 0.0
    pending: tuple[PendingCall, ...] = ()
    waiting_for: Literal["message", "timer", "approval", "kill_switch"] | None = None
    wake_at: float | None = None
    output: str | None = None
    reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


def fold(state: RunState, event: Event) -> RunState:
    """The state after ``event``. Pure: the same events always give the same state."""
    body = event.body
    changes: dict[str, object] = {"last_at": event.at}
    if state.status == "running" and not isinstance(body, RunResumed):
        # Work time only: not time queued, waiting, or lost to a dead worker before recovery.
        # (The first model call after a run leaves the queue is not counted: no event marks
        # the claim.)
        changes["active_s"] = state.active_s + max(0.0, event.at - state.last_at)
    match body:
        case RunStarted():
            changes["status"] = "queued"
        case ModelResponded():
            changes["step"] = state.step + 1
            changes["tokens"] = state.tokens + body.usage.total
            changes["model_outages"] = 0
        case ModelCallFailed():
            changes["tokens"] = state.tokens + body.usage.total  # answered, unusable attempts
            if body.error.code in OUTAGE_CODES:
                changes["model_outages"] = state.model_outages + 1
        case ToolCallProposed():
            changes["tool_calls"] = state.tool_calls + 1
        case RunWaiting():
            changes.update(status="waiting", waiting_for=body.waiting_for, wake_at=body.wake_at)
        case RunResumed():
            changes.update(status="running", waiting_for=None, wake_at=None)
        case RunFinished():
            changes.update(status=body.status, output=body.output, reason=body.reason, pending=())
    pending = _pending(state, body)
    if pending is not None:
        changes["pending"] = pending
    _account(state, body, changes)
    if "status" not in changes and state.status == "queued" and not _is_input(body):
        changes["status"] = "running"
    return state.model_copy(update=changes)


OUTAGE_CODES = frozenset({"model_unavailable", "model_rate_limited"})
"""Model failures a later try may not meet: the run can wait them out."""


def _pending(state: RunState, body: object) -> tuple[PendingCall, ...] | None:
    """The calls in flight after ``body``, or None when it does not change them."""
    match body:
        case ToolCallProposed():
            call = PendingCall(
                call_id=body.call_id,
                tool=body.tool,
                effect=body.effect,
                arguments=body.arguments or {},
            )
            return (*state.pending, call)
        case PolicyEvaluated() if body.rewritten and body.arguments is not None:
            return _update_call(state, body.call_id, {"arguments": body.arguments})
        case ToolCallStarted():
            update = {"stage": "started", "idempotency_key": body.idempotency_key}
            return _update_call(state, body.call_id, update)
        case ApprovalRequested():
            update = {"stage": "held", "approval_id": body.approval_id}
            return _update_call(state, body.call_id, update)
        case ApprovalDecided() if body.decision == "granted":
            update = {"stage": "proposed", "approved_hash": body.arguments_hash}
            return _update_call(state, body.call_id, update)
        case ToolOutcomeUnknown():
            return tuple(
                p.model_copy(update={"rounds": p.rounds + 1}) if p.call_id == body.call_id else p
                for p in state.pending
            )
        case ToolCallSucceeded() | ToolCallFailed() | ToolCallRejected():
            return tuple(p for p in state.pending if p.call_id != body.call_id)
    return None


def _update_call(state: RunState, call_id: str, update: dict[str, Any]) -> tuple[PendingCall, ...]:
    return tuple(p.model_copy(update=update) if p.call_id == call_id else p for p in state.pending)


_SPENDING = (ModelResponded, ModelCallFailed, ToolCallSucceeded, ToolCallFailed)
_INPUTS = (RunStarted, MessageReceived)


def _account(state: RunState, body: object, changes: dict[str, object]) -> None:
    """Spending (model responses and tool results at their prices) and rate-limit counts."""
    if isinstance(body, _SPENDING) and body.cost_usd:
        changes["cost_usd"] = state.cost_usd + body.cost_usd
    elif isinstance(body, PolicyEvaluated) and body.limits:
        used = dict(state.limits_used)
        for label in body.limits:
            used[label] = used.get(label, 0) + 1
        changes["limits_used"] = used


def _is_input(body: object) -> bool:
    return isinstance(body, _INPUTS)


def fold_all(events: Iterable[Event], state: RunState | None = None) -> RunState:
    state = state or RunState()
    for event in events:
        state = fold(state, event)
    return state
