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

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from charter.events import (
    Event,
    ModelCallFailed,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallSucceeded,
)
from charter.timeline._describe import (
    Tone,
    call_of,
    call_text,
    clip,
    clock_time,
    describe,
    join,
    marks,
    ms,
    span,
    tone,
    usd,
)

__all__ = [
    "Line",
    "Timeline",
    "Tone",
    "Totals",
    "build",
    "call_of",
    "call_text",
    "clip",
    "clock_time",
    "describe",
    "marks",
    "ms",
    "span",
    "tone",
    "usd",
]


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
        return join(
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
