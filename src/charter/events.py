"""Events: the append-only, typed, hash-chained record of what happened in a run.

An event is a plain value: a body (one pydantic model per fact, past tense, versioned) in an
envelope (run id, sequence number, time, hashes). Bodies serialise to JSON, never pickle.

The chain: ``hash = sha256(run_id | seq | type | schema_version | at | digest | prev)``. The
payload enters through its digest (:func:`content_digest`), which covers every field the event
shows; a field retention may remove enters through its own digest, so retention can drop it
and the chain still verifies (schema 2; schema-1 events keep their old rule).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from charter._digests import (  # re-exported: the chain's digests live there
    REMOVABLE as REMOVABLE,
    REMOVED as REMOVED,
    REMOVED_KEY as REMOVED_KEY,
    SCHEMA_VERSION as SCHEMA_VERSION,
    content_digest as content_digest,
    find_leaves as find_leaves,
    leaf_digest as leaf_digest,
    parse_payload as parse_payload,
    payload_digest as payload_digest,
    removal as removal,
    stored_digest as stored_digest,
)

GENESIS_HASH = "0" * 64

RunStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "escalated", "cancelled"]
CallEffect = Literal["read", "write", "control", "unknown"]
"""A proposed call's effect: its tool's (``charter.tools.Effect``), or unknown (no such tool)."""
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "escalated", "cancelled"})


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Redactable(_Body):
    redacted: tuple[str, ...] = ()
    """Paths of the values the agent's logging settings redacted or dropped before this event
    was written (``charter.redaction``): ``text``, ``output.customer.email``."""


class Usage(_Body):
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class RejectedAnswer(_Body):
    """An attempt the model server answered but whose answer was not usable.

    Its tokens and cost count against the run's budgets like any other answer's.
    """

    attempt: int
    """Which call of the step (1 is the first)."""
    code: str
    """Why it was refused: ``model_empty_answer``, ``model_truncated``, ``model_bad_response``."""
    finish_reason: str | None = None
    """Why the server says it stopped, as it said it (``stop``, ``length``, ``max_tokens``)."""
    usage: Usage = Usage()
    cost_usd: float = 0.0


class ErrorInfo(_Body):
    """A structured error as the model and the log see it."""

    code: str
    message: str
    retryable: bool = False


class ProposedCall(_Body):
    """A tool call as the model proposed it; ``arguments`` is the raw JSON text."""

    call_id: str
    name: str
    arguments: str


class Trigger(_Body):
    """What started a run other than a direct call, with the outside answers its start used
    (``charter.schedules``, ``POST /v1/hooks/{name}``)."""

    kind: Literal["schedule", "webhook"]
    name: str
    """The schedule's or the hook's name."""
    tick_at: float | None = None
    """A schedule's run: the cron tick (unix seconds, UTC) this run is for."""
    read_at: float | None = None
    """The clock reading the start was decided on: the ticker's (which ticks were due) or the
    server's (the webhook timestamp's tolerance window)."""
    delivery_id: str | None = None
    """A webhook's run: the sender's delivery id (its redeliveries return this run)."""
    signed_at: float | None = None
    """A webhook's run: the signed timestamp of the delivery that started it."""


class RunStarted(_Body):
    type: Literal["run_started"] = "run_started"
    agent_name: str
    agent_version: str
    agent_hash: str
    tenant: str
    principal: str
    input: str
    roles: tuple[str, ...] = ()
    environment: str = "dev"
    principal_tenant: str | None = None
    """The tenant the principal belongs to, as whoever authenticated them said (policy's
    ``tenant_matches_principal``); None when not given."""
    rerun_of: str | None = None
    """The run this one re-runs with another model, prompt or agent (``charter rerun``): its
    tool results are served from that run's recording or a simulator, never from real tools."""
    idempotency_key: str | None = None
    """The client's key for this start (``Runtime.start(idempotency_key=)``), if it gave one:
    a retried start with it returned this run instead of starting another."""
    instructions_hash: str | None = None
    """sha256 of the agent's instructions, the prompt every model call of the run is given
    (schema 3: recorded here once; schema 2 wrote it on every ``model_responded``)."""
    trigger: Trigger | None = None
    """A schedule's tick or a webhook delivery that started the run; None: started directly."""


class MessageReceived(_Redactable):
    type: Literal["message_received"] = "message_received"
    text: str
    source: Literal["input", "principal"] = "principal"
    inbox_id: int | None = None


class ModelResponded(_Redactable):
    type: Literal["model_responded"] = "model_responded"
    step: int
    provider: str
    model: str
    prompt_hash: str | None = None
    """Schema 2 only: the instructions' hash, the same on every response of a run. Schema 3
    records it once, as ``run_started.instructions_hash``, and leaves it out here."""
    content: str | None = None
    tool_calls: tuple[ProposedCall, ...] = ()
    usage: Usage = Usage()
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    """The response's price: its tokens at the agent's model prices (``ModelSpec``)."""
    step_kind: str | None = None
    """The step's kind, as the agent's ``step_kinds`` chose it (None: the agent routes none)."""
    route: str | None = None
    """The route that answered: the kind's name, ``KIND.fallback``, or ``model`` (the agent's
    own model)."""
    endpoint: str | None = None
    """Where the model runs: the URL of an OpenAI-compatible endpoint, a local GGUF file."""
    model_version: str | None = None
    """The model's exact version when its name does not say it (a GGUF file's sha256)."""
    parameters: dict[str, Any] = {}
    """The sampling parameters of the call (temperature, max_output_tokens)."""
    cached: bool = False
    """Answered from the response cache: no call was made (usage, cost and latency are 0)."""
    cache_key: str | None = None
    """The response cache's key the answer was found under (set with ``cached``)."""
    finish_reason: str | None = None
    """Why the server says the accepted answer stopped (``stop``, ``tool_calls``...)."""
    attempts: int = 1
    """Calls made in this step: the accepted one and those before it (failed or rejected)."""
    rejected: tuple[RejectedAnswer, ...] = ()
    """The attempts of this step that were answered but not usable. ``usage`` and
    ``cost_usd`` above are the step's: the accepted answer's plus these."""
    ignored_text: str | None = None
    """``tool_calling: json``: text the server wrote after the answer's JSON object, ignored."""


class ModelCallFailed(_Body):
    type: Literal["model_call_failed"] = "model_call_failed"
    step: int
    provider: str
    model: str
    error: ErrorInfo
    attempts: int
    step_kind: str | None = None
    route: str | None = None
    endpoint: str | None = None
    finish_reason: str | None = None
    """Why the server says the last answer stopped, when the last attempt was answered."""
    rejected: tuple[RejectedAnswer, ...] = ()
    """The attempts that were answered but not usable (empty, cut off, unparseable)."""
    usage: Usage = Usage()
    """The tokens of the ``rejected`` answers: they count against the budgets."""
    cost_usd: float = 0.0
    excerpt: str | None = None
    """The start of the last unusable answer (the model's text: the agent's logging settings
    and retention apply to it as to ``model_responded.content``)."""


class ModelDegraded(_Body):
    """A route's cheaper fallback answers from now on: the run neared a budget.

    Recorded once per route, at the first step the fallback answers.
    """

    type: Literal["model_degraded"] = "model_degraded"
    step_kind: str
    route: str
    from_model: str
    to_provider: str
    to_model: str
    budget: str
    used: float
    limit: float


class ToolCallProposed(_Body):
    type: Literal["tool_call_proposed"] = "tool_call_proposed"
    step: int
    call_id: str
    tool: str
    effect: CallEffect
    arguments: dict[str, Any] | None = None
    tool_version: str | None = None
    """The version of the tool the call went to (None: an unknown tool, or an older log)."""


class ProvenanceRecord(_Body):
    """Where the data in a proposed call came from, as the decision saw it.

    ``arguments`` maps argument paths (``to``, ``items.0.sku``) to the kinds of source their
    values were found in (``principal``, ``tool_output``, ``retrieved``...; ``model`` when found
    nowhere); ``untrusted_tools`` names the tools whose untrusted results the run had seen.
    """

    untrusted_in_args: bool = False
    untrusted_in_context: bool = False
    arguments: dict[str, tuple[str, ...]] = {}
    destinations: dict[str, tuple[str, ...]] = {}
    untrusted_tools: tuple[str, ...] = ()


class CounterReading(_Body):
    """A shared counter as a decision read it, and the cap the decision held it against.

    ``counter`` names it: a rate limit's label (``refunds-per-hour[tenant=acme,tool=refund]``)
    or a daily spending cap (``per_agent_per_day_usd``). ``total``: the counter after this call
    took its slot (a rate limit), or the money spent today (a spending cap); None: the store
    refused the slot, as it would have passed ``cap``.
    """

    counter: str
    total: float | None
    cap: float


class KillSwitchSeen(_Body):
    """The kill switch a decision found covering the run: its scope and why it was set."""

    tenant: str
    agent: str
    reason: str = ""


class PolicyEvaluated(_Body):
    """The policy engine's decision on a proposed call, before anything runs."""

    type: Literal["policy_evaluated"] = "policy_evaluated"
    call_id: str
    tool: str
    outcome: Literal["allow", "deny", "require_approval"]
    reason: str
    rule_ids: tuple[str, ...] = ()
    policy_hash: str
    rewritten: bool = False
    arguments: dict[str, Any] | None = None
    """The arguments to execute, when a rule rewrote them."""
    approval: dict[str, Any] | None = None
    error: str | None = None
    limits: tuple[str, ...] = ()
    """The rate limits the call was counted against, with their scope
    (``refunds-per-hour[tenant=acme,tool=refund]``); a limit that denied it is in rule_ids."""
    provenance: ProvenanceRecord | None = None
    """The provenance of the call's data that the decision used."""
    kill_switch: bool = False
    """A kill switch covered the run's writes when this write was decided (what rules that
    match on ``kill_switch`` saw)."""
    counters: tuple[CounterReading, ...] = ()
    """The shared counters the decision read, in the order it read them: each daily spending
    cap checked for a call that costs money, then each timed rate limit it took a slot from.
    (``run`` windows are counted from the run's own log, not read.)"""


class ToolCallRejected(_Body):
    """The proposal did not fit a contract; the error goes back to the model."""

    type: Literal["tool_call_rejected"] = "tool_call_rejected"
    call_id: str
    tool: str
    error: ErrorInfo
    switch: KillSwitchSeen | None = None
    """The kill switch that rejected the write (``error.code`` ``kill_switch``)."""


class ToolCallStarted(_Body):
    """The intent of a write call, committed before the call executes."""

    type: Literal["tool_call_started"] = "tool_call_started"
    call_id: str
    tool: str
    idempotency_key: str
    fencing_token: int = 0
    """The first attempt's fencing token (``ToolContext.fencing_token``; 0 in older logs)."""
    execution: Literal["thread", "process", "async"] | None = None
    """Where the attempt runs: a thread of the worker, a child process it can kill, or the
    worker's event loop (an async tool); None in older logs."""


class ToolCallSucceeded(_Redactable):
    type: Literal["tool_call_succeeded"] = "tool_call_succeeded"
    call_id: str
    tool: str
    output: Any = None
    attempts: int = 1
    duration_ms: float = 0.0
    via: Literal["call", "reconcile"] = "call"
    late: bool = False
    """The attempt that gave this result ran past its timeout (``tool_call_overdue``) and was
    waited for: the effect happened after the deadline."""
    untrusted: bool = False
    """The tool's contract marks its output untrusted (text others wrote: pages, tickets)."""
    cost_usd: float = 0.0
    """The tool's ``cost_usd`` for each attempt made."""
    simulated: Literal["recording", "simulator"] | None = None
    """Set in a rerun: the result was served from the original's recording or a simulator;
    the tool itself did not run."""
    cached: bool = False
    """Served from the result cache (a ``cacheable`` read tool): no call was made."""
    cache_key: str | None = None
    """The result cache's key the output was found under (set with ``cached``)."""


class ToolCallFailed(_Redactable):
    type: Literal["tool_call_failed"] = "tool_call_failed"
    call_id: str
    tool: str
    error: ErrorInfo
    attempts: int = 1
    duration_ms: float = 0.0
    cost_usd: float = 0.0
    """The tool's ``cost_usd`` for each attempt made (a failed call may still be billed)."""
    simulated: Literal["recording", "simulator"] | None = None
    """Set in a rerun: the failure was served from a recording or a simulator."""
    late: bool = False
    """The attempt that failed ran past its timeout and was waited for."""


class ToolOutcomeUnknown(_Body):
    """A write's intent was committed but not its result: the process died in between, or an
    attempt was stopped at its timeout (a killed child process, a cancelled coroutine)."""

    type: Literal["tool_outcome_unknown"] = "tool_outcome_unknown"
    call_id: str
    tool: str
    idempotency_key: str
    resolution: Literal["recall", "reconcile", "escalate"]
    fencing_token: int = 0
    """The token of the settling attempt (and of the fence a reconcile raises): higher than
    every earlier attempt's of this call."""
    cause: Literal["recovery", "timeout", "connection"] = "recovery"
    """Why the outcome is unknown: a worker died (``recovery``), the attempt was stopped at
    its timeout, or the connection broke after the request may have left."""


class ToolCallReconciled(_Body):
    """What the tool's ``reconcile`` hook answered about an unknown outcome.

    ``applied`` None: it could not tell. ``fenced``: the hook guarantees that an attempt with
    this idempotency key and a fencing token below ``fencing_token`` will now be refused, so
    "not applied" can be trusted and the call made again; without it the run escalates.
    """

    type: Literal["tool_call_reconciled"] = "tool_call_reconciled"
    call_id: str
    tool: str
    idempotency_key: str
    applied: bool | None
    fenced: bool = False
    fencing_token: int = 0
    error: str | None = None
    """Why the hook gave no usable answer (it raised, timed out or returned another type)."""


class ToolCallOverdue(_Body):
    """An attempt ran past its timeout and could not be stopped (a sync tool in a thread).

    A write's run waits for the attempt to end and records its (late) result; a read's
    attempt is abandoned and retried. The worker also logs it as a stuck tool.
    """

    type: Literal["tool_call_overdue"] = "tool_call_overdue"
    call_id: str
    tool: str
    attempt: int
    timeout_s: float
    execution: Literal["thread", "process", "async"]
    waiting: bool
    """True: the run waits for the attempt (a write); False: it was abandoned (a read)."""


class ToolCallBlocked(_Body):
    """A kill switch stopped a write right before it ran; the run waits or escalates.

    (A switch set to ``reject`` records ``tool_call_rejected`` instead: the model is told.)
    """

    type: Literal["tool_call_blocked"] = "tool_call_blocked"
    call_id: str
    tool: str
    reason: str
    action: Literal["wait", "escalate"]
    switch: KillSwitchSeen | None = None
    """The switch that blocked it (None in older logs, where only ``reason`` said it)."""


class FieldChange(_Body):
    """One field a write would change, for an approver to read: ``old`` → ``new``."""

    field: str
    old: Any = None
    new: Any = None


class ApprovalRequested(_Body):
    """A call policy holds for a human: the exact call, why, who may decide, and until when."""

    type: Literal["approval_requested"] = "approval_requested"
    approval_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    arguments_hash: str
    risk: str
    reason: str
    rule_ids: tuple[str, ...] = ()
    requested_by: str
    tier: str
    role: str
    expires_at: float
    on_expiry: Literal["deny", "escalate"] = "deny"
    changes: tuple[FieldChange, ...] | None = None
    """What the call would change (old → new), when the tool can tell; None when it cannot."""


class ApprovalDecided(_Body):
    """A human's decision on a held call, or its expiry, as the run took it from the store."""

    type: Literal["approval_decided"] = "approval_decided"
    approval_id: str
    call_id: str
    decision: Literal["granted", "denied", "expired"]
    decided_by: str | None = None
    decided_at: float
    note: str | None = None
    arguments_hash: str


class RunWaiting(_Body):
    type: Literal["run_waiting"] = "run_waiting"
    waiting_for: Literal["message", "timer", "approval", "kill_switch"]
    call_id: str | None = None
    wake_at: float | None = None


class RunResumed(_Body):
    type: Literal["run_resumed"] = "run_resumed"
    reason: Literal["message", "timer", "recovery", "approval", "kill_switch"]
    worker: str


class BudgetExceeded(_Body):
    type: Literal["budget_exceeded"] = "budget_exceeded"
    budget: str
    limit: float
    used: float
    measured_at: float | None = None
    """``timeout_seconds`` (the agent's ``timeout_s``): the clock reading the work time ``used``
    was measured at (None in older logs, and for the other budgets, counted from the log)."""


class CancelSeen(_Body):
    """The request to cancel that a run honoured (``Runtime.cancel``), as the store held it."""

    request_id: str
    requested_by: str
    reason: str
    requested_at: float
    withdrawn: tuple[str, ...] = ()
    """The approval requests of held calls withdrawn with it (no longer grantable)."""


class RunFinished(_Redactable):
    type: Literal["run_finished"] = "run_finished"
    status: Literal["succeeded", "failed", "escalated", "cancelled"]
    output: str | None = None
    reason: str | None = None
    abandoned: bool = False
    """Written from outside the run's loop, which failed (a worker error, a rerun's unrecorded
    call): the step the loop was in was never committed. A replay stops there."""
    cancel: CancelSeen | None = None
    """``cancelled`` by a request: who asked, why, when, and the request's id."""


EventBody = Annotated[
    RunStarted
    | MessageReceived
    | ModelResponded
    | ModelCallFailed
    | ModelDegraded
    | ToolCallProposed
    | PolicyEvaluated
    | ToolCallRejected
    | ToolCallStarted
    | ToolCallSucceeded
    | ToolCallFailed
    | ToolOutcomeUnknown
    | ToolCallReconciled
    | ToolCallOverdue
    | ToolCallBlocked
    | ApprovalRequested
    | ApprovalDecided
    | RunWaiting
    | RunResumed
    | BudgetExceeded
    | RunFinished,
    Field(discriminator="type"),
]
BODY_TYPES: tuple[type[_Body], ...] = (
    RunStarted,
    MessageReceived,
    ModelResponded,
    ModelCallFailed,
    ModelDegraded,
    ToolCallProposed,
    PolicyEvaluated,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallSucceeded,
    ToolCallFailed,
    ToolOutcomeUnknown,
    ToolCallReconciled,
    ToolCallOverdue,
    ToolCallBlocked,
    ApprovalRequested,
    ApprovalDecided,
    RunWaiting,
    RunResumed,
    BudgetExceeded,
    RunFinished,
)
_BY_TYPE: dict[str, type[_Body]] = {t.model_fields["type"].default: t for t in BODY_TYPES}


def parse_body(payload: str, type: str) -> EventBody:
    """Parse a stored payload back into the body of the recorded ``type``.

    Payloads are written without their type and without fields at their defaults (the type
    is a column of its own; defaults are restored here), which keeps the log small.
    """
    try:
        body_type = _BY_TYPE[type]
    except KeyError:
        raise ValueError(f"unknown event type {type!r}") from None
    if REMOVED_KEY in payload:  # a retention marker: the skeleton is what is left
        payload = json.dumps({k: v for k, v in json.loads(payload).items() if k != REMOVED_KEY})
    return body_type.model_validate_json(payload)  # type: ignore[return-value]


def arguments_hash(arguments: Any) -> str:
    """The sha256 of a call's arguments as canonical JSON: what an approval is bound to."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def chain_hash(
    *, run_id: str, seq: int, type: str, schema_version: int, at: float, digest: str, prev: str
) -> str:
    material = f"{run_id}|{seq}|{type}|{schema_version}|{at!r}|{digest}|{prev}"
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Event:
    """One committed fact about a run, in its chain."""

    run_id: str
    seq: int
    at: float
    body: EventBody
    payload: str
    prev_hash: str
    hash: str
    schema_version: int = SCHEMA_VERSION

    @property
    def type(self) -> str:
        return self.body.type

    @classmethod
    def seal(cls, *, run_id: str, seq: int, at: float, body: EventBody, prev_hash: str) -> Event:
        """Serialise ``body`` and link it to the chain after ``prev_hash``."""
        payload = body.model_dump_json(exclude_defaults=True)
        digest = content_digest(body.type, payload)
        return cls(
            run_id=run_id,
            seq=seq,
            at=at,
            body=body,
            payload=payload,
            prev_hash=prev_hash,
            hash=chain_hash(
                run_id=run_id,
                seq=seq,
                type=body.type,
                schema_version=SCHEMA_VERSION,
                at=at,
                digest=digest,
                prev=prev_hash,
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        data = {
            "run_id": self.run_id,
            "seq": self.seq,
            "type": self.type,
            "at": self.at,
            "schema_version": self.schema_version,
            "body": self.body.model_dump(mode="json"),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
        marker = removal(self.payload)
        if marker is not None:
            data["removed"] = marker  # retention dropped fields; their digests stay
        return data


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where verification of a run's chain failed first, and why."""

    run_id: str
    seq: int
    reason: str


def verify_chain(
    rows: list[tuple[int, str, int, float, str, str]], run_id: str
) -> ChainBreak | None:
    """Verify stored rows ``(seq, type, schema_version, at, payload, hash)`` in order.

    Each hash covers the previous one, so the chain is recomputed from the genesis hash.
    Returns the first break, or None when the whole chain holds.
    """
    prev = GENESIS_HASH
    expected_seq = 1
    for seq, type_, schema_version, at, payload, stored in rows:
        if seq != expected_seq:
            return ChainBreak(run_id, expected_seq, f"event {expected_seq} is missing")
        try:
            digest = content_digest(type_, payload, schema_version)
        except ValueError as exc:  # not JSON, or a retention marker that does not fit
            return ChainBreak(run_id, seq, str(exc))
        computed = chain_hash(
            run_id=run_id,
            seq=seq,
            type=type_,
            schema_version=schema_version,
            at=at,
            digest=digest,
            prev=prev,
        )
        if computed != stored:
            return ChainBreak(run_id, seq, "hash does not match the event's content")
        try:
            parse_body(payload, type_)
        except ValueError:
            return ChainBreak(run_id, seq, f"payload is not a valid {type_} event")
        prev = stored
        expected_seq += 1
    return None


def summarize(body: EventBody) -> str:
    """A one-line human summary for timelines."""
    return _SUMMARIES[type(body)](body)


def _model_summary(b: ModelResponded) -> str:
    calls = ", ".join(c.name for c in b.tool_calls)
    what = f"calls {calls}" if calls else f"answers {_clip(b.content or '')}"
    kind = f" [{b.step_kind}]" if b.step_kind else ""
    size = "cached" if b.cached else f"{b.usage.total} tokens"
    return f"step {b.step}{kind} {b.model}: {what} ({size})"


_SUMMARIES: dict[type[Any], Callable[[Any], str]] = {
    RunStarted: lambda b: f"{b.agent_name} v{b.agent_version} for {b.tenant}/{b.principal}",
    MessageReceived: lambda b: f"{b.source}: {_clip(b.text)}",
    ModelResponded: _model_summary,
    ModelCallFailed: lambda b: f"step {b.step} {b.model} failed: {b.error.message}",
    ModelDegraded: lambda b: (
        f"{b.step_kind}: {b.from_model} -> {b.to_model} ({b.budget} {b.used:g} of {b.limit:g})"
    ),
    ToolCallProposed: lambda b: f"{b.tool} ({b.effect}) {_clip(str(b.arguments))}",
    PolicyEvaluated: lambda b: (
        f"{b.tool}: {b.outcome} by {', '.join(b.rule_ids) or 'default'}"
        f"{' (rewritten)' if b.rewritten else ''}: {_clip(b.reason)}"
    ),
    ToolCallRejected: lambda b: f"{b.tool}: {b.error.code}: {_clip(b.error.message)}",
    ToolCallFailed: lambda b: f"{b.tool}: {b.error.code}: {_clip(b.error.message)}",
    ToolCallStarted: lambda b: f"{b.tool} intent, key {b.idempotency_key}",
    ToolCallSucceeded: lambda b: (
        f"{b.tool} -> {_clip(str(b.output))} (via {'cache' if b.cached else b.via})"
        + (" late" if b.late else "")
    ),
    ToolOutcomeUnknown: lambda b: f"{b.tool} key {b.idempotency_key}: {b.resolution}",
    ToolCallReconciled: lambda b: (
        f"{b.tool} key {b.idempotency_key}: "
        + {True: "applied", False: "not applied", None: "cannot tell"}[b.applied]
        + (" (fenced)" if b.fenced else "")
    ),
    ToolCallOverdue: lambda b: (
        f"{b.tool} attempt {b.attempt} past its {b.timeout_s:g}s timeout"
        + (", waiting for it" if b.waiting else ", abandoned")
    ),
    ToolCallBlocked: lambda b: f"{b.tool} blocked ({b.action}): {_clip(b.reason)}",
    ApprovalRequested: lambda b: (
        f"{b.tool} held for {b.role} ({b.tier}) by {', '.join(b.rule_ids)}: id {b.approval_id}"
    ),
    ApprovalDecided: lambda b: f"{b.approval_id} {b.decision} by {b.decided_by or 'expiry'}",
    RunWaiting: lambda b: f"waiting for {b.waiting_for}",
    RunResumed: lambda b: f"resumed ({b.reason}) by {b.worker}",
    BudgetExceeded: lambda b: f"{b.budget}: used {b.used:g} of {b.limit:g}",
    RunFinished: lambda b: f"{b.status}: {_clip(b.output or b.reason or '')}",
}


def _clip(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
