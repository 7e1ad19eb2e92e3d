"""A run's log as people read it: one description per event and the run grouped by step.

The terminal (``charter runs show``, ``charter events``) and the HTTP API
(``GET /v1/runs/{id}/timeline``, and the web console on it) show the same lines:

* :func:`describe` — one line per event with its costs, latencies, decisions and marks;
* :func:`build` — the run as steps (a ``model_responded`` starts one), each step's calls
  under it with their decision, approval and outcome, as :class:`Line` values (indent, text,
  :data:`Tone`), then the run's :class:`Totals`.

Plain values only: how a line is coloured or laid out is the reader's business.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
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


def _join(*parts: str | None) -> str:
    return " · ".join(p for p in parts if p)


# -- one description per event --------------------------------------------------------------------


def _started(b: RunStarted) -> str:
    principal = b.principal + (f" of {b.principal_tenant}" if b.principal_tenant else "")
    return _join(
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
    return _join(
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
    return _join(
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
    return _join(
        f"policy {b.outcome} by {rules}: {clip(b.reason)}",
        f"rewritten to {clip(_json(b.arguments))}" if b.rewritten else None,
        f"limits {', '.join(b.limits)}" if b.limits else None,
        f"error {clip(b.error)}" if b.error else None,
        "untrusted data seen" if untrusted else None,
    )


def _succeeded(b: ToolCallSucceeded) -> str:
    how = "cache" if b.cached else (f"{b.simulated} (simulated)" if b.simulated else b.via)
    return _join(
        f"succeeded in {ms(b.duration_ms)}",
        _attempts(b.attempts),
        f"cost {usd(b.cost_usd)}" if b.cost_usd else None,
        f"via {how}",
        "late (after its timeout)" if b.late else None,
        "untrusted output" if b.untrusted else None,
        f"-> {clip(_json(b.output), 72)}",
    )


def _failed(b: ToolCallFailed) -> str:
    return _join(
        f"failed in {ms(b.duration_ms)}",
        _attempts(b.attempts),
        f"cost {usd(b.cost_usd)}" if b.cost_usd else None,
        f"simulated ({b.simulated})" if b.simulated else None,
        "late (after its timeout)" if b.late else None,
        f"{b.error.code}: {clip(b.error.message)}",
    )


def _requested(b: ApprovalRequested) -> str:
    changes = ", ".join(f"{c.field} {_json(c.old)} -> {_json(c.new)}" for c in b.changes or ())
    return _join(
        f"approval {b.approval_id} requested from role {b.role} (tier {b.tier})",
        f"by {', '.join(b.rule_ids) or 'policy'}",
        f"risk {b.risk}",
        f"expires {clock_time(b.expires_at)}, then {b.on_expiry}",
        f"changes {clip(changes)}" if changes else None,
    )


def _decided(b: ApprovalDecided) -> str:
    who = f"by {b.decided_by}" if b.decided_by else "on expiry"
    note = f'note "{clip(b.note, 72)}"' if b.note else None
    return _join(f"approval {b.approval_id} {b.decision} {who} at {clock_time(b.decided_at)}", note)


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
    ToolCallProposed: lambda b: _join(
        call_text(b.tool, b.arguments), b.effect, f"v{b.tool_version}" if b.tool_version else None
    ),
    PolicyEvaluated: _policy,
    ToolCallRejected: lambda b: f"rejected: {b.error.code}: {clip(b.error.message)}",
    ToolCallStarted: lambda b: _join(
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
    ToolCallReconciled: lambda b: _join(
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
    text = _join(_DESCRIBE[type(event.body)](event.body), more)
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


# -- totals ---------------------------------------------------------------------------------------


@dataclass
class Totals:
    steps: int = 0
    tool_calls: int = 0
    failed_calls: int = 0
    retries: int = 0
    tokens: int = 0
    model_usd: float = 0.0
    tool_usd: float = 0.0
    wall_s: float = 0.0
    step_tool_usd: dict[int, float] = field(default_factory=dict)
    step_tool_ms: dict[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, events: Sequence[Event]) -> Totals:
        totals, step_of = cls(), dict[str, int]()
        for event in events:
            body = event.body
            if isinstance(body, ModelResponded | ModelCallFailed):
                totals.steps += isinstance(body, ModelResponded)
                totals.retries += body.attempts - 1  # every attempt's tokens are in usage
                totals.tokens += body.usage.total
                totals.model_usd += body.cost_usd
            elif isinstance(body, ToolCallProposed):
                totals.tool_calls += 1
                step_of[body.call_id] = body.step
            elif isinstance(body, ToolCallSucceeded | ToolCallFailed):
                totals.failed_calls += isinstance(body, ToolCallFailed)
                totals.retries += body.attempts - 1
                totals.tool_usd += body.cost_usd
                step = step_of.get(body.call_id, 0)
                totals.step_tool_usd[step] = totals.step_tool_usd.get(step, 0.0) + body.cost_usd
                totals.step_tool_ms[step] = totals.step_tool_ms.get(step, 0.0) + body.duration_ms
        if events:
            totals.wall_s = events[-1].at - events[0].at
        return totals

    def to_dict(self) -> dict[str, Any]:
        """The figures (``step_tool_*`` are the steps' shares, in the step lines)."""
        return {
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "failed_calls": self.failed_calls,
            "retries": self.retries,
            "tokens": self.tokens,
            "model_usd": self.model_usd,
            "tool_usd": self.tool_usd,
            "cost_usd": self.model_usd + self.tool_usd,
            "wall_s": self.wall_s,
            "text": self.line(),
        }

    def line(self) -> str:
        cost = usd(self.model_usd + self.tool_usd)
        failed = f", {self.failed_calls} failed" if self.failed_calls else ""
        return _join(
            f"totals: {self.steps} step" + ("" if self.steps == 1 else "s"),
            f"{self.tool_calls} tool call" + ("" if self.tool_calls == 1 else "s") + failed,
            f"{self.retries} retr" + ("y" if self.retries == 1 else "ies"),
            f"{self.tokens} tokens",
            f"cost {cost} (model {usd(self.model_usd)}, tools {usd(self.tool_usd)})",
            f"wall time {span(self.wall_s)}",
        )


# -- the run by step ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of a timeline. ``seq`` is None for a header that says which call the next
    line continues; ``depth`` is its indent (0: run and step lines, 1: calls, 2: their fate)."""

    depth: int
    text: str
    seq: int | None = None
    type: str | None = None
    at: float | None = None
    offset_s: float = 0.0
    tone: Tone | None = None
    bold: bool = False
    step: int | None = None
    call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _LINE_FIELDS}


_LINE_FIELDS = tuple(f.name for f in fields(Line))


@dataclass(frozen=True)
class Timeline:
    lines: list[Line]
    totals: Totals


@dataclass
class _Layout:
    """Where the next line goes: inside a step, under a call, and which call was last shown."""

    depth: int = 0
    step: int | None = None
    call: str | None = None
    proposals: dict[str, ToolCallProposed] = field(default_factory=dict)


def _placed(event: Event, layout: _Layout, totals: Totals) -> list[tuple[int, str]]:
    """The lines ``event`` adds to the timeline, each with its indent level; a line before
    the event's own is a "continued" header."""
    body, text = event.body, describe(event)
    if isinstance(body, ModelResponded):
        layout.depth, layout.call, layout.step = 1, None, body.step
        tools_usd = totals.step_tool_usd.get(body.step)
        if tools_usd is not None:
            tool_ms = ms(totals.step_tool_ms.get(body.step, 0.0))
            text = describe(event, more=f"tools {usd(tools_usd)} in {tool_ms}")
        return [(0, text)]
    if isinstance(body, ToolCallProposed):
        layout.proposals[body.call_id], layout.call = body, body.call_id
        return [(layout.depth, text)]
    call = call_of(body)
    if call is None:
        layout.call = None
        return [(0 if isinstance(body, RunStarted | RunFinished) else layout.depth, text)]
    lines = []
    if call != layout.call:  # back to a call after other lines: say which one
        proposal = layout.proposals.get(call)
        tool = proposal.tool if proposal else getattr(body, "tool", "call")
        lines.append((layout.depth, f"{tool} ({call}), continued:"))
        layout.call = call
    return [*lines, (layout.depth + 1, text)]


def build(events: Sequence[Event]) -> Timeline:
    """The run as steps: each step's model figures, then its calls with what became of them."""
    totals, layout, lines = Totals.of(events), _Layout(), list[Line]()
    start = events[0].at if events else 0.0
    for event in events:
        body = event.body
        *before, (depth, text) = _placed(event, layout, totals)
        offset, call = event.at - start, call_of(body) or getattr(body, "call_id", None)
        for up, header in before:
            lines.append(Line(up, header, offset_s=offset, step=layout.step, call_id=call))
        lines.append(
            Line(
                depth,
                text,
                seq=event.seq,
                type=event.type,
                at=event.at,
                offset_s=offset,
                tone=tone(body),
                bold=isinstance(body, ModelResponded | RunStarted | RunFinished),
                step=layout.step,
                call_id=call,
            )
        )
    return Timeline(lines, totals)
