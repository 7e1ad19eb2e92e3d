"""``charter schedules``: runs started on a cron expression (:mod:`charter.schedules`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from charter.agents import load_agent
from charter.cli._options import (
    actor_option,
    db_option,
    debug_option,
    given_text,
    input_file_option,
    json_option,
    max_input_option,
    operator,
    with_runtime,
)
from charter.cli._render import clock_time, echo_json, table
from charter.schedules import DEFAULT_TICK_S, MAX_CATCH_UP, MISSED
from charter.store import Schedule

tick_option = click.option(
    "--tick-interval",
    "tick_s",
    default=DEFAULT_TICK_S,
    show_default=True,
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="How often to start due schedule ticks (0: never).",
)


@click.group("schedules")
def schedules_group() -> None:
    """Runs started on a cron expression (UTC), one run per tick however many workers and
    servers tick: add, list, show, pause, resume, remove."""


def _row(s: Schedule) -> tuple[str, ...]:
    state = "paused" if s.paused_at is not None else "active"
    last = "-" if s.last_tick_at is None else f"{clock_time(s.last_tick_at)} {s.last_run_id}"
    return (
        s.name,
        s.cron,
        s.agent_name,
        s.tenant,
        s.missed,
        state,
        clock_time(s.next_tick_at),
        last,
    )


def _show(s: Schedule, as_json: bool) -> None:
    if as_json:
        echo_json(s.to_dict())
        return
    for key, value in s.to_dict().items():
        if key.endswith("_at") and value is not None:
            value = clock_time(value)
        click.echo(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


@schedules_group.command("add")
@click.argument("name")
@click.option("--cron", required=True, help='Five fields, UTC, e.g. "*/15 * * * *".')
@click.option("--agent", "agent_file", required=True, metavar="FILE", help="The agent file.")
@click.option("--input", "text", default=None, help="Each run's input (or --input-file).")
@input_file_option
@max_input_option
@click.option("--tenant", default="default", show_default=True, help="The runs' tenant.")
@click.option("--principal", default="anonymous", show_default=True, help="The runs' principal.")
@click.option("--role", "roles", multiple=True, help="A role of the principal (repeatable).")
@click.option(
    "--missed",
    type=click.Choice(MISSED),
    default="skip",
    show_default=True,
    help=f"After downtime: skip (only the latest missed tick) or catch-up (each, at most"
    f" {MAX_CATCH_UP}).",
)
@actor_option
@db_option
@json_option
@debug_option
def schedules_add(
    name: str, cron: str, agent_file: str, text: str | None, input_file: str | None,
    max_input_bytes: int, tenant: str, principal: str, roles: tuple[str, ...], missed: Any,
    actor: str | None, db_url: str, as_json: bool, debug: bool,
) -> None:  # fmt: skip
    """Start a run of --agent with --input on every tick of --cron. The agent's spec is
    stored in the database, so any worker resolves it."""
    text = given_text(text, input_file, flag="--input", max_bytes=max_input_bytes)
    agent = load_agent(Path(agent_file))
    made = with_runtime(
        db_url,
        lambda rt: rt.schedules.add(
            name,
            cron=cron,
            agent=agent,
            input=text,
            tenant=tenant,
            principal=principal,
            roles=roles,
            missed=missed,
            actor=operator(actor),
        ),
        max_input_bytes=max_input_bytes,
    )
    if as_json:
        echo_json(made.to_dict())
    else:
        click.echo(f"schedule {made.name}: first tick {clock_time(made.next_tick_at)}")


@schedules_group.command("list")
@db_option
@json_option
@debug_option
def schedules_list(db_url: str, as_json: bool, debug: bool) -> None:
    """Every schedule, by name."""
    found = with_runtime(db_url, lambda rt: rt.schedules.all(), read_only=True)
    if as_json:
        echo_json([s.to_dict() for s in found])
    elif not found:
        click.echo('no schedules; add one with: charter schedules add NAME --cron "..." ...')
    else:
        head = ["name", "cron", "agent", "tenant", "missed", "state", "next tick", "last run"]
        table(head, [_row(s) for s in found])


@schedules_group.command("show")
@click.argument("name")
@db_option
@json_option
@debug_option
def schedules_show(name: str, db_url: str, as_json: bool, debug: bool) -> None:
    """One schedule in full, with its last tick, run and error."""
    _show(with_runtime(db_url, lambda rt: rt.schedules.get(name), read_only=True), as_json)


def _change(verb: str, help_text: str) -> None:
    @schedules_group.command(verb, help=help_text)
    @click.argument("name")
    @actor_option
    @db_option
    @json_option
    @debug_option
    def command(name: str, actor: str | None, db_url: str, as_json: bool, debug: bool) -> None:
        done = with_runtime(
            db_url, lambda rt: getattr(rt.schedules, verb)(name, actor=operator(actor))
        )
        if as_json:
            echo_json(done.to_dict())
        else:
            click.echo(f"removed {name}" if verb == "remove" else f"schedule {name}: {verb}d")


_change("pause", "Start no runs of NAME until resumed (recorded in the audit log).")
_change("resume", "Start NAME's runs again, from its next tick (paused ticks are not owed).")
_change("remove", "Delete NAME; its runs stay (recorded in the audit log).")
