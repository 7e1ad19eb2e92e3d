"""The decider: what a run does next, from its folded state and the answers the shell brought.

Pure: no ``await``, no clock, no I/O, no store, model or tool package (a test imports this
module with those blocked). Every answer from outside that a decision uses comes in as an
argument (a clock reading, a kill switch, an approval, a tool's outcome, a reconcile verdict)
and goes out as a field of the events it returns, so that a replay which feeds the recorded
answers back gets the same events. The effect shell (:mod:`charter._engine.loop`) performs the
effects, gathers the answers and appends the events.

A step, as the shell drives it::

    state ──next_effect──▶ events + Effect ──shell──▶ answer ──decider──▶ events ──commit──▶ state

* :func:`next_effect` chooses among the effects: park (commit and let the run go), settle a
  write's unknown outcome, take the humans' decisions on held calls, run the pending calls, or
  ask the model; a request to cancel (once no write's outcome is unknown) or the budget check
  on the way may finish the run instead.
* The ``after_*`` functions turn one answer into events (and, for an unknown outcome, the next
  effect: call the write again with its key, or ask its reconcile hook).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from charter._engine.state import OUTAGE_CODES, PendingCall, RunState
from charter.events import (
    ApprovalDecided,
    BudgetExceeded,
    CancelSeen,
    ErrorInfo,
    EventBody,
    KillSwitchSeen,
    RunFinished,
    RunWaiting,
    ToolCallBlocked,
    ToolCallFailed,
    ToolCallReconciled,
    ToolCallRejected,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
    arguments_hash,
)

# -- effects: what the shell does next ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Park:
    """Commit what is appended and let the run go: it finished, or it waits."""


@dataclass(frozen=True, slots=True)
class Settle:
    """A write's intent is committed and its outcome unknown: apply the rule (:func:`settle`)."""

    call: PendingCall


@dataclass(frozen=True, slots=True)
class TakeDecisions:
    """Every call left is held for a human: read the approvals' decisions."""

    calls: tuple[PendingCall, ...]


@dataclass(frozen=True, slots=True)
class RunCalls:
    """Run the pending calls: reads together, then writes in order, then control calls."""


@dataclass(frozen=True, slots=True)
class AskModel:
    """Check the day's spending caps, then ask the model for the next step."""


Effect = Park | Settle | TakeDecisions | RunCalls | AskModel


@dataclass(frozen=True, slots=True)
class Decision:
    """Events to append, then the effect to perform (None: commit them and decide again)."""

    events: tuple[EventBody, ...] = ()
    effect: Effect | None = None


# -- answers: what the shell brings back -------------------------------------------------------

UnknownCause = Literal["timeout", "connection", "crashed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to a tool call."""

    ok: bool
    output: Any = None
    error: ErrorInfo | None = None
    attempts: int = 1
    duration_ms: float = 0.0
    unknown: bool = False
    """A write whose effect may or may not have happened (its attempt has ended)."""
    cause: UnknownCause | None = None
    """Why an unknown outcome is unknown."""
    late: bool = False
    """The result came from an attempt that ran past its timeout and was waited for."""
    simulated: Literal["recording", "simulator"] | None = None
    """Served instead of calling the tool (a rerun): from a recording or a simulator."""
    cached: bool = False
    """Served from the result cache (a ``cacheable`` read tool): no call was made."""
    cache_key: str | None = None
    """The result cache's key it was served under (with ``cached``)."""


CIRCUIT_OPEN = "circuit_open"
"""The error code of a call the tool's open circuit refused: no attempt was made."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A reconcile hook's answer: did the write happen, and is its key fenced."""

    applied: bool | None
    fenced: bool = False
    output: Any = None
    problem: str | None = None
    """Why the hook gave no usable answer (it raised, timed out, returned something else)."""


class Contract(Protocol):
    """What the decider reads of a tool (:class:`charter.tools.Tool` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def idempotent(self) -> bool: ...
    @property
    def reconcile(self) -> object: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def untrusted_output(self) -> bool: ...


class Limits(Protocol):
    """The run's budgets (:class:`charter.agents.Budgets` has them)."""

    @property
    def max_steps(self) -> int: ...
    @property
    def max_tool_calls(self) -> int: ...
    @property
    def max_tokens_total(self) -> int | None: ...
    @property
    def max_cost_usd(self) -> float | None: ...
    @property
    def timeout_s(self) -> float | None: ...


TIME_BUDGET = "timeout_seconds"
"""The time budget's name in ``budget_exceeded`` events: the agent field's name before it was
``timeout_s``, kept because logs already hold it (replay compares these events)."""


# -- the next effect ---------------------------------------------------------------------------


def next_effect(
    state: RunState,
    budgets: Limits,
    *,
    active_s: float,
    now: float | None,
    cancel: CancelSeen | None = None,
) -> Decision:
    """What the run does next. ``active_s`` is its work time by the clock reading ``now`` (the
    shell reads the clock only when the run has a time budget: None otherwise); ``cancel`` is
    the request to cancel the run that the shell found pending, if any."""
    if state.finished or state.status == "waiting":
        return Decision(effect=Park())
    started = [p for p in state.pending if p.stage == "started"]
    if started:
        return Decision(effect=Settle(started[0]))
    if cancel is not None:
        return Decision(events=cancelled(state, cancel))
    held = tuple(p for p in state.pending if p.stage == "held")
    if held and len(held) == len(state.pending):
        return Decision(effect=TakeDecisions(held))
    exhausted = over_budget(state, budgets, active_s=active_s, now=now)
    if exhausted:
        return Decision(events=exhausted)
    return Decision(effect=RunCalls() if state.pending else AskModel())


def cancelled(state: RunState, request: CancelSeen) -> tuple[EventBody, ...]:
    """A run cancelled at a step boundary: no write's outcome is unknown any more (those are
    settled first), calls not started are dropped, and the approvals of held calls are
    withdrawn; the request is recorded with the run's end."""
    withdrawn = tuple(p.approval_id for p in state.pending if p.stage == "held" and p.approval_id)
    seen = request.model_copy(update={"withdrawn": withdrawn})
    reason = f"cancelled by {request.requested_by}: {request.reason}"
    return (RunFinished(status="cancelled", reason=reason, cancel=seen),)


def active_s(state: RunState, *, claimed_at: float, now: float) -> float:
    """Work time so far: the committed total plus the time since this worker's last event."""
    since = max(state.last_at, claimed_at)
    return state.active_s + max(0.0, now - since)


def over_budget(
    state: RunState, budgets: Limits, *, active_s: float, now: float | None
) -> tuple[EventBody, ...]:
    """The events that escalate a run whose budget is exhausted; none while it is within.

    A time budget is decided on the clock reading ``now``, recorded as ``measured_at``.
    """
    b, s = budgets, state
    exhausted: tuple[str, float, float] | None = None
    measured_at: float | None = None
    if s.tool_calls > b.max_tool_calls:
        exhausted = ("max_tool_calls", b.max_tool_calls, s.tool_calls)
    elif not s.pending and s.step >= b.max_steps:
        exhausted = ("max_steps", b.max_steps, s.step)
    elif not s.pending and b.max_tokens_total and s.tokens >= b.max_tokens_total:
        exhausted = ("max_tokens_total", b.max_tokens_total, s.tokens)
    elif b.max_cost_usd is not None and s.cost_usd >= b.max_cost_usd:
        exhausted = ("max_cost_usd", b.max_cost_usd, round(s.cost_usd, 9))
    elif b.timeout_s and now is not None and active_s >= b.timeout_s:
        exhausted = (TIME_BUDGET, b.timeout_s, round(active_s, 3))
        measured_at = now
    if exhausted is None:
        return ()
    name, limit, used = exhausted
    return (
        BudgetExceeded(budget=name, limit=limit, used=used, measured_at=measured_at),
        RunFinished(
            status="escalated", reason=f"budget {name} exhausted: used {used:g} of {limit:g}"
        ),
    )


def over_cap(exceeded: BudgetExceeded, reason: str) -> tuple[EventBody, ...]:
    """A daily spending cap reached before a model step (the counter's figure is recorded)."""
    return (exceeded, RunFinished(status="escalated", reason=reason))


def parking(state: RunState, ready_at: float) -> tuple[float | None, bool]:
    """When the run is next ready to be claimed (None: only a message wakes it) and whether
    this commit lets it go."""
    parked = state.finished or state.status == "waiting"
    if state.finished or state.waiting_for == "message":
        return None, parked
    if state.waiting_for in ("timer", "approval", "kill_switch"):
        return state.wake_at, parked
    return ready_at, parked


# -- the model's answer ------------------------------------------------------------------------

OUTAGE_WAIT_CAP_S = 3600.0


def after_model_failure(
    state: RunState,
    *,
    code: str,
    retryable: bool,
    message: str,
    outage_waits: int,
    outage_wait_s: float,
    now: float,
) -> tuple[EventBody, ...]:
    """After ``model_call_failed`` (already folded into ``state``): wait an outage out on a
    timer (a few times in a row), else escalate (retryable) or fail."""
    outages = state.model_outages  # counts the failure just recorded
    if code in OUTAGE_CODES and outages <= outage_waits:
        delay = min(OUTAGE_WAIT_CAP_S, outage_wait_s * 2 ** (outages - 1))
        return (RunWaiting(waiting_for="timer", wake_at=now + delay),)
    waited = f" (after waiting {outages - 1} time(s))" if outages > 1 else ""
    status = "escalated" if retryable else "failed"
    return (RunFinished(status=status, reason=f"model call failed{waited}: {message}"),)


def after_answer(content: str | None, *, new_messages: int) -> tuple[EventBody, ...]:
    """An answer without tool calls finishes the run, unless new messages came in meanwhile
    (they get an answer first)."""
    if new_messages:
        return ()
    return (RunFinished(status="succeeded", output=content),)


# -- tool calls --------------------------------------------------------------------------------


def idempotency_key(run_id: str, step: int, call_id: str) -> str:
    """Stable across retries and crashes: derived from run, step and call, never from time."""
    return f"{run_id}:{step}:{call_id}"


def fencing_token(epoch: int, rounds: int) -> int:
    """Grows with every claim of the run (its lease epoch) and every settlement of the call.

    An attempt made after an unknown outcome always carries a higher token than any earlier
    attempt of the same call, whichever worker made that one.
    """
    return (epoch << 20) | rounds


def mismatch(call: PendingCall) -> ToolCallRejected | None:
    """A granted call whose arguments are not the ones the grant is bound to never runs."""
    if call.approved_hash is None or call.approved_hash == arguments_hash(call.arguments):
        return None
    message = "the arguments differ from the ones approved; the call was not executed"
    return _rejected(call, "approval_mismatch", message)


def after_outcome(call: PendingCall, tool: Contract | None, outcome: Outcome) -> EventBody:
    """A tool call's result, charged at the tool's price for each attempt made."""
    cost = _tool_cost(tool, outcome)
    if outcome.ok:
        return ToolCallSucceeded(
            call_id=call.call_id,
            tool=call.tool,
            output=outcome.output,
            attempts=outcome.attempts,
            duration_ms=round(outcome.duration_ms, 3),
            cost_usd=cost,
            untrusted=tool.untrusted_output if tool is not None else False,
            simulated=outcome.simulated,
            cached=outcome.cached,
            cache_key=outcome.cache_key,
            late=outcome.late,
        )
    assert outcome.error is not None
    return ToolCallFailed(
        call_id=call.call_id,
        tool=call.tool,
        error=outcome.error,
        attempts=outcome.attempts,
        duration_ms=round(outcome.duration_ms, 3),
        cost_usd=cost,
        simulated=outcome.simulated,
        late=outcome.late,
    )


def _tool_cost(tool: Contract | None, outcome: Outcome) -> float:
    """The tool's price for each attempt made (a circuit-open refusal made no call)."""
    if tool is None or not tool.cost_usd or outcome.cached:
        return 0.0
    made = outcome.attempts
    if outcome.error is not None and outcome.error.code == CIRCUIT_OPEN:
        made -= 1
    return round(tool.cost_usd * made, 12)


KILL_SWITCH_RECHECK_S = 60.0
"""A run waiting for a kill switch also checks again this often (switching off wakes it)."""

SwitchAction = Literal["wait", "escalate", "reject"]


def switch_message(switch: KillSwitchSeen) -> str:
    """What the log and the model are told about a write a kill switch stopped (prose: the
    switch itself is recorded as ``KillSwitchSeen``)."""
    where = f"tenant {switch.tenant}, agent {switch.agent}"
    return f"writes are switched off ({where}): {switch.reason or 'kill switch'}"


def blocked(
    call: PendingCall, switch: KillSwitchSeen, action: SwitchAction, *, now: float
) -> tuple[EventBody, ...]:
    """A write the kill switch stopped: the model is told, the run escalates, or it waits
    (the call stays pending; switching off wakes the run, which checks again)."""
    message = switch_message(switch)
    if action == "reject":
        error = ErrorInfo(code="kill_switch", message=message)
        return (ToolCallRejected(call_id=call.call_id, tool=call.tool, error=error, switch=switch),)
    stopped = ToolCallBlocked(
        call_id=call.call_id, tool=call.tool, reason=message, action=action, switch=switch
    )
    if action == "escalate":
        reason = f"write call {call.call_id} ({call.tool}) blocked: {message}"
        return (stopped, RunFinished(status="escalated", reason=reason))
    wake_at = now + KILL_SWITCH_RECHECK_S
    return (stopped, RunWaiting(waiting_for="kill_switch", call_id=call.call_id, wake_at=wake_at))


def control(call: PendingCall, *, now: float) -> tuple[EventBody, ...]:
    """A control call (``sleep``, ``ask_user``): recorded, and the run waits."""
    if call.tool == "sleep":
        wake_at = now + float(call.arguments.get("seconds", 0))  # type: ignore[arg-type]
        output: dict[str, Any] = {"wake_at": wake_at}
        return (
            ToolCallSucceeded(call_id=call.call_id, tool=call.tool, output=output),
            RunWaiting(waiting_for="timer", call_id=call.call_id, wake_at=wake_at),
        )
    output = {"status": "asked; the reply will follow as a user message"}
    return (
        ToolCallSucceeded(call_id=call.call_id, tool=call.tool, output=output),
        RunWaiting(waiting_for="message", call_id=call.call_id),
    )


# -- approvals ---------------------------------------------------------------------------------


def after_decision(
    call: PendingCall, decided: ApprovalDecided, *, role: str, on_expiry: str
) -> tuple[EventBody, ...]:
    """The events that take a human's decision (or an expiry) on a held call into the log."""
    if decided.decision == "granted":
        return (decided,)
    if decided.decision == "denied":
        why = f": {decided.note}" if decided.note else ""
        message = f"{decided.decided_by} ({role}) denied this {call.tool} call{why}"
        return (decided, _rejected(call, "approval_denied", message))
    message = f"nobody with role {role} decided this {call.tool} call before it expired"
    if on_expiry == "escalate":
        reason = f"approval {decided.approval_id} expired: {message}; a human must take over"
        return (decided, RunFinished(status="escalated", reason=reason))
    return (decided, _rejected(call, "approval_expired", message))


APPROVAL_WAKE_MARGIN_S = 1.0
"""A run waiting for approvals wakes no sooner than this: a worker's clock may run ahead of
the store's."""


def await_decisions(call: PendingCall, expiries: list[float], *, now: float) -> RunWaiting:
    """Wait for the undecided approvals: wake at the first expiry (a decision wakes the run
    sooner)."""
    wake_at = max(min(expiries), now + APPROVAL_WAKE_MARGIN_S)
    return RunWaiting(waiting_for="approval", call_id=call.call_id, wake_at=wake_at)


def _rejected(call: PendingCall, code: str, message: str) -> ToolCallRejected:
    return ToolCallRejected(
        call_id=call.call_id, tool=call.tool, error=ErrorInfo(code=code, message=message)
    )


# -- unknown outcomes of writes (the rule: docs/architecture.md, _engine/unknown.py) -----------

MAX_RECALLS = 3
"""Unknown outcomes of one idempotent write settled by calling it again before escalating."""

Resolution = Literal["recall", "reconcile", "escalate"]
RecordedCause = Literal["recovery", "timeout", "connection"]


@dataclass(frozen=True, slots=True)
class Recall:
    """Call the write again with its key (it is idempotent, or its key is fenced)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Ask the write's reconcile hook whether it happened."""

    call_id: str


def recorded_cause(cause: RecordedCause | UnknownCause) -> RecordedCause:
    """The cause as ``tool_outcome_unknown`` records it (a crashed tool process: connection)."""
    return "connection" if cause == "crashed" else cause


def settle(
    call: PendingCall, tool: Contract, *, cause: RecordedCause | UnknownCause, epoch: int
) -> tuple[tuple[EventBody, ...], Recall | Reconcile | None]:
    """The rule for a write whose outcome is unknown and no attempt of which still runs: call
    it again with the same key if it is idempotent (up to ``MAX_RECALLS`` times); else ask its
    reconcile hook; else escalate. Never guess."""
    key = call.idempotency_key or ""
    why = recorded_cause(cause)
    if tool.idempotent:
        if call.rounds >= MAX_RECALLS:
            times = f"it was called {call.rounds + 1} times with its key without an answer"
            return (_unknown(call, key, "escalate", why, epoch), _escalate(call, times)), None
        return (_unknown(call, key, "recall", why, epoch),), Recall(call.call_id)
    if tool.reconcile is None:
        why_not = "it is not idempotent and has no reconcile hook"
        return (_unknown(call, key, "escalate", why, epoch), _escalate(call, why_not)), None
    return (_unknown(call, key, "reconcile", why, epoch),), Reconcile(call.call_id)


def after_reconcile(
    call: PendingCall, tool: Contract, verdict: Verdict, *, epoch: int
) -> tuple[tuple[EventBody, ...], Recall | None]:
    """The hook's verdict on record, and what follows: "applied" settles the call; "not
    applied" is acted on (the call made again) only when the hook fenced the key."""
    key = call.idempotency_key or ""
    reconciled = ToolCallReconciled(
        call_id=call.call_id,
        tool=call.tool,
        idempotency_key=key,
        applied=verdict.applied,
        fenced=verdict.fenced,
        fencing_token=fencing_token(epoch, call.rounds),
        error=verdict.problem,
    )
    if verdict.applied is True:
        landed = ToolCallSucceeded(
            call_id=call.call_id,
            tool=call.tool,
            output=verdict.output,
            via="reconcile",
            cost_usd=tool.cost_usd,  # the call that landed was never charged
            untrusted=tool.untrusted_output,
        )
        return (reconciled, landed), None
    if verdict.applied is False and verdict.fenced:
        return (reconciled,), Recall(call.call_id)
    if verdict.applied is False:
        why = (
            "reconcile found no effect but cannot fence the key against an earlier attempt"
            " that may still land"
        )
        return (reconciled, _escalate(call, why)), None
    return (reconciled, _escalate(call, "reconcile could not tell whether it happened")), None


def unknown_after_reconcile(
    call: PendingCall, *, cause: RecordedCause | UnknownCause, epoch: int
) -> tuple[EventBody, ...]:
    """A fenced call made again after reconciliation whose outcome is unknown again."""
    key = call.idempotency_key or ""
    return (
        _unknown(call, key, "escalate", recorded_cause(cause), epoch),
        _escalate(call, "its outcome is unknown again after reconciliation"),
    )


def _unknown(
    call: PendingCall, key: str, resolution: Resolution, cause: RecordedCause, epoch: int
) -> ToolOutcomeUnknown:
    return ToolOutcomeUnknown(
        call_id=call.call_id,
        tool=call.tool,
        idempotency_key=key,
        resolution=resolution,
        fencing_token=fencing_token(epoch, call.rounds + 1),
        cause=cause,
    )


def _escalate(call: PendingCall, why: str) -> RunFinished:
    reason = (
        f"outcome of write call {call.call_id} ({call.tool}, idempotency key"
        f" {call.idempotency_key}) is unknown and {why}; a human must check"
    )
    return RunFinished(status="escalated", reason=reason)
