"""One line per event: what ``charter runs show``, ``charter events`` and the API print."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, Literal

from charter.events import (
    REMOVED,
    ApprovalDecided,
    ApprovalRequested,
    BudgetExceeded,
    Event,
    EventBody,
    MessageReceived,
    ModelCallFailed,
    ModelDegraded,
    ModelResponded,
    PolicyEvaluated,
    RunFinished,
    RunResumed,
    RunStarted,
    RunWaiting,
    ToolCallBlocked,
    ToolCallFailed,
    ToolCallOverdue,
    ToolCallProposed,
    ToolCallReconciled,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
    removal,
)

_CLIP = 96
_ITEM = re.compile(r"\.\d+\.")
_SETTLED = {
    "recall": "called again with the same idempotency key",
    "reconcile": "asked the tool's reconcile whether it happened",
    "escalate": "escalated to a human",
}
_CAUSE = {
    "recovery": "its worker died",
    "timeout": "stopped at its timeout",
    "connection": "the connection broke",
}
Tone = Literal["good", "warn", "bad"]
"""How a line reads at a glance: the CLI colours it green, yellow or red; the console too."""


def clock_time(at: float) -> str:
    """``2026-12-05 15:16:22.520`` in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


# -- formatting -----------------------------------------------------------------------------------


def usd(value: float) -> str:
    """``$0.5000``, ``$0.00016``, ``$0``: enough digits for a token's price, none trailing."""
    if value == 0:
        return "$0"
    if value >= 0.01:
        return f"${value:.4f}"
    return "$" + f"{value:.8f}".rstrip("0").rstrip(".")


def ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def span(duration_s: float) -> str:
    """A wall-clock duration: ``12.345s``, ``4m05.1s``, ``2h03m``."""
    if duration_s < 60:
        return f"{duration_s:.3f}s"
    if duration_s < 3600:
        return f"{int(duration_s // 60)}m{duration_s % 60:04.1f}s"
    return f"{int(duration_s // 3600)}h{int(duration_s % 3600 // 60):02d}m"


def clip(text: str, width: int = _CLIP) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _json(value: Any) -> str:
    if value == REMOVED:
        return REMOVED
    return json.dumps(value, ensure_ascii=False, default=str)


def call_text(tool: str, arguments: dict[str, Any] | None) -> str:
    """``refund(order_id="7", amount=120)``; the arguments clipped, or marked as removed."""
    if arguments is None:
        return f"{tool}(arguments removed)"
    inner = ", ".join(f"{k}={_json(v)}" for k, v in arguments.items())
    return f"{tool}({clip(inner)})"


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


def join(*parts: str | None) -> str:
    return " · ".join(p for p in parts if p)


# -- one description per event --------------------------------------------------------------------


def _started(b: RunStarted) -> str:
    principal = b.principal + (f" of {b.principal_tenant}" if b.principal_tenant else "")
    return join(
        f"run started: {b.agent_name} v{b.agent_version} ({b.agent_hash[:12]})",
        f"tenant {b.tenant}",
        f"principal {principal}",
        f"roles {', '.join(b.roles) or 'none'}",
        f"environment {b.environment}",
        f"rerun of {b.rerun_of}" if b.rerun_of else None,
    )


def _model(b: ModelResponded) -> str:
    kind = f"kind {b.step_kind}" if b.step_kind else None
    route = f"route {b.route}" if b.route and b.route != b.step_kind else None
    if b.cached:
        figures: tuple[str | None, ...] = ("cached: no call, no cost",)
    else:
        u = b.usage
        tokens = f"{u.total} tokens ({u.input_tokens} in, {u.output_tokens} out)"
        figures = (tokens, f"cost {usd(b.cost_usd)}", f"latency {ms(b.latency_ms)}")
    names = ", ".join(c.name for c in b.tool_calls)
    what = f"calls {names}" if names else f"answers: {clip(b.content or '')}"
    return join(
        f"step {b.step}", f"{b.provider}/{b.model}", kind, route, *figures, _rejected(b), what
    )


def _rejected(b: ModelResponded | ModelCallFailed) -> str | None:
    """The answered but unusable attempts of a step, with their codes."""
    if not b.rejected:
        return None
    codes = ", ".join(f"{r.code} ({r.finish_reason})" for r in b.rejected)
    return f"{len(b.rejected)} answer(s) refused: {codes}"


def _model_failed(b: ModelCallFailed) -> str:
    u = b.usage
    spent = f"{u.total} tokens, cost {usd(b.cost_usd)}" if u.total or b.cost_usd else None
    return join(
        f"step {b.step}",
        f"{b.provider}/{b.model} call failed after {_attempts(b.attempts)}",
        spent,
        _rejected(b),
        f"{b.error.code}: {clip(b.error.message)}",
    )


def _policy(b: PolicyEvaluated) -> str:
    rules = ", ".join(b.rule_ids) or "default"
    prov = b.provenance
    untrusted = prov is not None and (prov.untrusted_in_args or prov.untrusted_in_context)
    return join(
        f"policy {b.outcome} by {rules}: {clip(b.reason)}",
        f"rewritten to {clip(_json(b.arguments))}" if b.rewritten else None,
        f"limits {', '.join(b.limits)}" if b.limits else None,
        f"error {clip(b.error)}" if b.error else None,
        "untrusted data seen" if untrusted else None,
    )


def _succeeded(b: ToolCallSucceeded) -> str:
    how = "cache" if b.cached else (f"{b.simulated} (simulated)" if b.simulated else b.via)
    return join(
        f"succeeded in {ms(b.duration_ms)}",
        _attempts(b.attempts),
        f"cost {usd(b.cost_usd)}" if b.cost_usd else None,
        f"via {how}",
        "late (after its timeout)" if b.late else None,
        "untrusted output" if b.untrusted else None,
        f"-> {clip(_json(b.output), 72)}",
    )


def _failed(b: ToolCallFailed) -> str:
    return join(
        f"failed in {ms(b.duration_ms)}",
        _attempts(b.attempts),
        f"cost {usd(b.cost_usd)}" if b.cost_usd else None,
        f"simulated ({b.simulated})" if b.simulated else None,
        "late (after its timeout)" if b.late else None,
        f"{b.error.code}: {clip(b.error.message)}",
    )


def _requested(b: ApprovalRequested) -> str:
    changes = ", ".join(f"{c.field} {_json(c.old)} -> {_json(c.new)}" for c in b.changes or ())
    return join(
        f"approval {b.approval_id} requested from role {b.role} (tier {b.tier})",
        f"by {', '.join(b.rule_ids) or 'policy'}",
        f"risk {b.risk}",
        f"expires {clock_time(b.expires_at)}, then {b.on_expiry}",
        f"changes {clip(changes)}" if changes else None,
    )


def _decided(b: ApprovalDecided) -> str:
    who = f"by {b.decided_by}" if b.decided_by else "on expiry"
    note = f'note "{clip(b.note, 72)}"' if b.note else None
    return join(f"approval {b.approval_id} {b.decision} {who} at {clock_time(b.decided_at)}", note)


def _waiting(b: RunWaiting) -> str:
    wake = f" (wakes {clock_time(b.wake_at)})" if b.wake_at is not None else ""
    return f"waiting for {b.waiting_for}{wake}"


def _finished(b: RunFinished) -> str:
    if b.cancel is not None:
        c = b.cancel
        asked = f"by {c.requested_by} at {clock_time(c.requested_at)} ({c.request_id})"
        withdrawn = f"; approvals withdrawn: {', '.join(c.withdrawn)}" if c.withdrawn else ""
        return f"run finished: cancelled {asked}: {clip(c.reason)}{withdrawn}"
    detail = b.output if b.status == "succeeded" else (b.reason or b.output)
    return f"run finished: {b.status}" + (f": {clip(detail)}" if detail else "")


_DESCRIBE: dict[type[Any], Callable[[Any], str]] = {
    RunStarted: _started,
    MessageReceived: lambda b: f"{b.source} message: {clip(b.text)}",
    ModelResponded: _model,
    ModelCallFailed: _model_failed,
    ModelDegraded: lambda b: (
        f"{b.step_kind} degraded {b.from_model} -> {b.to_provider}/{b.to_model}"
        f" ({b.budget} {b.used:g} of {b.limit:g})"
    ),
    ToolCallProposed: lambda b: join(
        call_text(b.tool, b.arguments), b.effect, f"v{b.tool_version}" if b.tool_version else None
    ),
    PolicyEvaluated: _policy,
    ToolCallRejected: lambda b: f"rejected: {b.error.code}: {clip(b.error.message)}",
    ToolCallStarted: lambda b: join(
        f"intent committed, idempotency key {b.idempotency_key}",
        f"fencing token {b.fencing_token}" if b.fencing_token else None,
        f"in a {b.execution}" if b.execution in ("thread", "process") else b.execution,
    ),
    ToolCallSucceeded: _succeeded,
    ToolCallFailed: _failed,
    ToolOutcomeUnknown: lambda b: (
        f"outcome unknown ({_CAUSE[b.cause]}, intent {b.idempotency_key}):"
        f" settled by {b.resolution}, {_SETTLED[b.resolution]}"
    ),
    ToolCallReconciled: lambda b: join(
        "reconcile: " + {True: "applied", False: "not applied", None: "cannot tell"}[b.applied],
        f"key fenced at token {b.fencing_token}" if b.fenced else "no fence",
        b.error,
    ),
    ToolCallOverdue: lambda b: (
        f"attempt {b.attempt} still running past its {b.timeout_s:g}s timeout ({b.execution}"
        " cannot be stopped): "
        + ("the run waits for it" if b.waiting else "abandoned, its end is only logged")
    ),
    ToolCallBlocked: lambda b: f"blocked by kill switch ({b.action}): {clip(b.reason)}",
    ApprovalRequested: _requested,
    ApprovalDecided: _decided,
    RunWaiting: _waiting,
    RunResumed: lambda b: f"resumed ({b.reason}) by worker {b.worker}",
    BudgetExceeded: lambda b: f"budget {b.budget} exceeded: used {b.used:g} of {b.limit:g}",
    RunFinished: _finished,
}


def marks(event: Event) -> str:
    """What is missing from the event: fields retention removed, values redaction replaced."""
    parts = []
    marker = removal(event.payload)
    if marker is not None:
        paths = dict.fromkeys(_ITEM.sub(".*.", str(f)) for f in marker.get("fields", ()))
        fields = ", ".join(paths) or "payload"
        at = marker.get("at")
        when = f" at {clock_time(float(at))}" if isinstance(at, int | float) else ""
        old = "; schema 1: the rest is not covered by the hash" if event.schema_version < 2 else ""
        parts.append(f"[removed by retention{when}: {fields}{old}]")
    redacted = getattr(event.body, "redacted", ())
    if redacted:
        parts.append(f"[redacted: {', '.join(redacted)}]")
    return " ".join(parts)


def describe(event: Event, *, more: str | None = None) -> str:
    """One line: the event's facts with its costs, latencies and decisions, and its marks."""
    text = join(_DESCRIBE[type(event.body)](event.body), more)
    extra = marks(event)
    return f"{text} {extra}" if extra else text


def call_of(body: EventBody) -> str | None:
    """The call an event belongs to, for the events a call leads to after its proposal."""
    if isinstance(body, ToolCallProposed | RunWaiting):
        return None
    return getattr(body, "call_id", None)


def tone(body: EventBody) -> Tone | None:
    match body:
        case PolicyEvaluated(outcome="allow") | ToolCallSucceeded():
            return "good"
        case PolicyEvaluated(outcome="require_approval") | ApprovalRequested() | RunWaiting():
            return "warn"
        case ApprovalDecided(decision="granted"):
            return "good"
        case RunFinished(status="succeeded"):
            return "good"
        case (
            PolicyEvaluated() | ApprovalDecided() | RunFinished() | ToolCallFailed()
            | ToolCallRejected() | ToolCallBlocked() | ModelCallFailed() | BudgetExceeded()
            | ToolOutcomeUnknown() | ToolCallOverdue()
        ):  # fmt: skip
            return "bad"
    return None
