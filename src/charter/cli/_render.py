"""Rendering for the terminal: tables, timelines, JSON, and errors."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click

from charter.errors import CharterError
from charter.store import RunRecord


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


def clock_time(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


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
