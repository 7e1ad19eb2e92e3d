"""A run's log for the terminal: the lines of :mod:`charter.timeline`, coloured.

* :func:`render_events` — every event as a row (seq, time, type, summary), for ``charter
  events``;
* :func:`render_timeline` — the events grouped by step, each step's calls under it with their
  decision, approval and outcome, then totals, for ``charter runs show``.

Colour comes from ``click.style`` and ``click.echo`` drops it when the output is not a
terminal, so pipes and tests read clean plain text.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from charter.events import Event, ToolCallProposed
from charter.timeline import Tone, build, call_of, clock_time, describe, span, tone

__all__ = ["describe", "render_events", "render_timeline"]

_COLOUR: dict[Tone | None, str | None] = {
    "good": "green",
    "warn": "yellow",
    "bad": "red",
    None: None,
}


def render_events(events: Sequence[Event]) -> None:
    """Every event: seq, time, type and its description, aligned in columns."""
    rows = [(str(e.seq), clock_time(e.at), e.type) for e in events]
    seq_w, time_w, type_w = (max([3, *(len(r[i]) for r in rows)]) for i in range(3))
    click.echo(f"{'SEQ'.rjust(seq_w)}  {'TIME'.ljust(time_w)}  {'TYPE'.ljust(type_w)}  SUMMARY")
    tools = {e.body.call_id: e.body.tool for e in events if isinstance(e.body, ToolCallProposed)}
    for event, (seq, at, kind) in zip(events, rows, strict=True):
        text = describe(event)
        call = call_of(event.body)
        if call is not None:
            text = f"{tools.get(call) or getattr(event.body, 'tool', call)}: {text}"
        head = f"{seq.rjust(seq_w)}  {at.ljust(time_w)}  {kind.ljust(type_w)}  "
        click.echo(head + click.style(text, fg=_COLOUR[tone(event.body)]))


def render_timeline(events: Sequence[Event]) -> None:
    """The run as steps: each step's model figures, then its calls with what became of them."""
    click.echo(click.style("timeline", bold=True))
    if not events:
        click.echo("  (no events)")
        return
    timeline = build(events)
    for line in timeline.lines:
        offset = f"+{span(line.offset_s)}".rjust(10)
        indent = "    " * line.depth
        if line.seq is None:  # which call the next line continues
            click.echo(f"{' ' * len(offset)}  {indent}{click.style(line.text, dim=True)}")
            continue
        styled = click.style(line.text, fg=_COLOUR[line.tone], bold=line.bold)
        click.echo(f"{click.style(offset, dim=True)}  {indent}{styled}")
    click.echo(click.style(timeline.totals.line(), bold=True))
