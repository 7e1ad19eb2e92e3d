"""Rendering for the terminal: tables, timelines, JSON, and errors."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import click

from charter.errors import CharterError
from charter.store import RunRecord
from charter.timeline import clock_time as clock_time


def fail(exc: Exception) -> int:
    """Print one clear message for ``exc`` and return the exit code it maps to."""
    if isinstance(exc, CharterError):
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        return exc.exit_code
    click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
    click.echo("  hint: run again with --debug for the traceback", err=True)
    return 1


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded to their widest cell. Wider than the terminal (stdout is one, or
    ``$COLUMNS`` is set), the widest columns wrap; piped, a row stays on one line."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    limit = _terminal_width()
    if limit is not None:
        words = [len(h) for h in headers]  # a column narrows to its longest word, at most 24
        for row in cells:
            longest = [max((len(w) for w in c.split()), default=0) for c in row]
            words = [max(a, min(b, 24)) for a, b in zip(words, longest, strict=True)]
        widths = _fit(widths, words, limit)
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    for row in cells:
        wrapped = [_wrap(c, w) for c, w in zip(row, widths, strict=True)]
        for k in range(max(len(lines) for lines in wrapped)):
            parts = [(lines[k] if k < len(lines) else "").ljust(w)
                     for lines, w in zip(wrapped, widths, strict=True)]  # fmt: skip
            click.echo("  ".join(parts).rstrip())


def _terminal_width() -> int | None:
    """The width to fit tables to: ``$COLUMNS``, else the terminal's; None when piped."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def _fit(widths: list[int], least: list[int], limit: int) -> list[int]:
    """Narrow the widest columns (never below ``least``) until the row fits ``limit``."""
    widths = list(widths)
    floor = list(least)
    while sum(widths) + 2 * (len(widths) - 1) > limit:
        room = [k for k, w in enumerate(widths) if w > floor[k]]
        if not room:
            break  # as narrow as the headers allow
        widest = max(room, key=lambda k: widths[k])
        widths[widest] -= 1
    return widths


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def run_line(record: RunRecord) -> tuple[str, ...]:
    state = record.state
    return (
        record.run_id,
        record.status,
        f"{record.agent_name} v{record.agent_version}",
        record.tenant,
        str(state.get("step", 0)),
        str(state.get("tokens", 0)),
        clock_time(record.created_at),
    )


RUN_HEADERS = ("run_id", "status", "agent", "tenant", "steps", "tokens", "created")


def run_detail(record: RunRecord) -> None:
    state = record.state
    rows = [
        ("run_id", record.run_id),
        ("status", record.status),
        ("agent", f"{record.agent_name} v{record.agent_version} ({record.agent_hash[:12]})"),
        ("tenant", record.tenant),
        ("principal", record.principal),
        ("created", clock_time(record.created_at)),
        ("updated", clock_time(record.updated_at)),
        ("steps", state.get("step", 0)),
        ("tool calls", state.get("tool_calls", 0)),
        ("tokens", state.get("tokens", 0)),
        ("active seconds", f"{state.get('active_s', 0.0):.3f}"),
        ("events", record.last_seq),
        ("head hash", record.last_hash),
    ]
    if record.waiting_for:
        rows.append(("waiting for", record.waiting_for))
    if record.lease_owner:
        rows.append(
            ("lease", f"{record.lease_owner} until {clock_time(record.lease_expires_at or 0)}")
        )
    if state.get("output"):
        rows.append(("output", state["output"]))
    if state.get("reason"):
        rows.append(("reason", state["reason"]))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")
