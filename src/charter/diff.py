"""Two runs side by side (``charter diff``): totals, then each step's calls, decisions, results.

Built from the event logs alone, so any two runs compare: a rerun and its original, two agent
versions on the same input, yesterday's run and today's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from charter.events import (
    Event,
    ModelCallFailed,
    ModelResponded,
    PolicyEvaluated,
    RunFinished,
    RunStarted,
    RunStatus,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallSucceeded,
)


@dataclass
class StepView:
    """One model step of a run: what the model said or called, what policy and tools did."""

    model: str = ""
    calls: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0

    def rows(self) -> dict[str, list[str]]:
        return {"model": [self.model], "calls": self.calls, "decisions": self.decisions,
                "outcomes": self.outcomes}  # fmt: skip


@dataclass
class RunSummary:
    run_id: str
    agent: str = ""
    rerun_of: str | None = None
    status: RunStatus = "running"
    reason: str = ""
    steps: int = 0
    tool_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    by_step: dict[int, StepView] = field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "rerun_of": self.rerun_of or "-",
            "status": self.status,
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "outcome": self.reason,
        }


@dataclass(frozen=True)
class RunDiff:
    a: RunSummary
    b: RunSummary

    def to_dict(self) -> dict[str, Any]:
        steps = sorted(set(self.a.by_step) | set(self.b.by_step))
        return {
            "a": self.a.totals(),
            "b": self.b.totals(),
            "steps": [
                {
                    "step": n,
                    "a": _view(self.a.by_step.get(n)),
                    "b": _view(self.b.by_step.get(n)),
                }
                for n in steps
            ],
        }


def _view(view: StepView | None) -> dict[str, Any] | None:
    return None if view is None else {**view.rows(), "tokens": view.tokens,
                                      "cost_usd": round(view.cost_usd, 6)}  # fmt: skip


def summarize_run(events: Sequence[Event]) -> RunSummary:
    summary = RunSummary(run_id=events[0].run_id if events else "?")
    step = 0
    for e in events:
        b = e.body
        view = summary.by_step.setdefault(step, StepView()) if step else None
        if isinstance(b, RunStarted):
            summary.agent = f"{b.agent_name} v{b.agent_version}"
            summary.rerun_of = b.rerun_of
        elif isinstance(b, ModelResponded | ModelCallFailed):
            step = b.step
            summary.steps = max(summary.steps, step)
            view = summary.by_step.setdefault(step, StepView())
            view.tokens += b.usage.total  # a failed try of the step and its answer: both
            view.cost_usd += b.cost_usd
            summary.tokens += b.usage.total
            summary.cost_usd += b.cost_usd
            if isinstance(b, ModelCallFailed):
                view.model = f"{b.model}: failed {b.error.code}"
                continue
            said = "calls tools" if b.tool_calls else f"answers {_clip(b.content or '')}"
            view.model = f"{b.model}: {said}"
        elif view is None:
            pass
        elif isinstance(b, ToolCallProposed):
            summary.tool_calls += 1
            args = json.dumps(b.arguments, sort_keys=True) if b.arguments is not None else "?"
            view.calls.append(f"{b.tool} {_clip(args, 60)}")
        elif isinstance(b, PolicyEvaluated):
            rules = ",".join(b.rule_ids) or "default"
            view.decisions.append(f"{b.tool}: {b.outcome} ({rules})")
        elif isinstance(b, ToolCallSucceeded | ToolCallFailed | ToolCallRejected):
            view.outcomes.append(_outcome(b))
            if not isinstance(b, ToolCallRejected):
                summary.cost_usd += b.cost_usd
        if isinstance(b, RunFinished):
            summary.status = b.status
            summary.reason = _clip(b.output or b.reason or "")
    return summary


def _outcome(b: ToolCallSucceeded | ToolCallFailed | ToolCallRejected) -> str:
    if isinstance(b, ToolCallSucceeded):
        text = f"{b.tool} ok"
    elif isinstance(b, ToolCallFailed):
        text = f"{b.tool} failed {b.error.code}"
    else:
        text = f"{b.tool} rejected {b.error.code}"
    served = getattr(b, "simulated", None)
    return text + (f" [simulated: {served}]" if served else "")


def diff_runs(a: Sequence[Event], b: Sequence[Event]) -> RunDiff:
    return RunDiff(summarize_run(a), summarize_run(b))


def render_diff(diff: RunDiff, *, width: int = 44) -> list[str]:
    """Lines for the terminal: a label, run A's column, run B's; ``!`` marks a difference."""
    lines = [_row(" ", "", diff.a.run_id, diff.b.run_id, width)]
    ta, tb = diff.a.totals(), diff.b.totals()
    for name in ta:
        if name == "run_id":
            continue
        a, b = str(ta[name]), str(tb[name])
        lines.append(_row("!" if a != b else " ", name, a, b, width))
    for n in sorted(set(diff.a.by_step) | set(diff.b.by_step)):
        va, vb = diff.a.by_step.get(n), diff.b.by_step.get(n)
        lines.append(f"-- step {n}")
        ra = va.rows() if va else {}
        rb = vb.rows() if vb else {}
        for name in ("model", "calls", "decisions", "outcomes"):
            xa, xb = ra.get(name, []), rb.get(name, [])
            if not xa and not xb and name != "model":
                continue
            mark = "!" if xa != xb else " "
            for k in range(max(len(xa), len(xb), 1)):
                a = xa[k] if k < len(xa) else ("" if va else "(no step)")
                b = xb[k] if k < len(xb) else ("" if vb else "(no step)")
                lines.append(_row(mark, name if k == 0 else "", a, b, width))
    return lines


def _row(mark: str, label: str, a: str, b: str, width: int) -> str:
    return f"{mark} {label:<10} {_clip(a, width):<{width}}  {_clip(b, width)}".rstrip()


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
