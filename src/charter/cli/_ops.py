"""Operator commands: workers and the database (migrate, status, copy)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from charter.cli._options import (
    actor_option,
    db_option,
    debug_option,
    json_option,
    operator,
    with_runtime,
)
from charter.cli._render import clock_time, echo_json, table
from charter.clock import wall_clock
from charter.operations import DatabaseStatus
from charter.store import KillSwitchAction


@click.group("workers")
def workers_group() -> None:
    """Live workers, their leases and heartbeats."""


@workers_group.command("list")
@db_option
@json_option
@debug_option
def workers_list(db_url: str, as_json: bool, debug: bool) -> None:
    """Workers that announced themselves, with their leases and last heartbeat."""
    workers = with_runtime(db_url, lambda rt: rt.operations.workers(), read_only=True)
    if as_json:
        echo_json([w.to_dict() for w in workers])
        return
    if not workers:
        click.echo("no live workers")
        return
    now = wall_clock()
    table(
        ["worker_id", "host", "pid", "leases", "concurrency", "started", "heartbeat"],
        [
            (
                w.worker_id,
                w.host,
                w.pid,
                w.leases,
                w.concurrency,
                clock_time(w.started_at),
                f"{now - w.heartbeat_at:.1f}s ago",
            )
            for w in workers
        ],
    )


@click.group("db")
def db_group() -> None:
    """The database: schema migrations, status, and copying to another database."""


def _status(db_url: str, *, read_only: bool) -> DatabaseStatus:
    return with_runtime(db_url, lambda rt: rt.operations.status(), read_only=read_only)


def _show_status(status: DatabaseStatus, as_json: bool) -> None:
    if as_json:
        echo_json(status.to_dict())
        return
    click.echo(f"database  {status.url}")
    click.echo(
        f"schema    version {status.schema_version} (this Charter knows up to "
        f"{status.latest_schema_version})"
    )
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.runs.items())) or "none"
    click.echo(f"runs      {sum(status.runs.values())}: {counts}")
    click.echo(f"workers   {status.workers} announced")


@db_group.command("migrate")
@db_option
@json_option
@debug_option
def db_migrate(db_url: str, as_json: bool, debug: bool) -> None:
    """Create the schema or bring it up to this version of Charter.

    Commands that write migrate a database too; this command does it on purpose, and
    reports. Commands that only read never create or migrate one.
    """
    _show_status(_status(db_url, read_only=False), as_json)


@db_group.command("status")
@db_option
@json_option
@debug_option
def db_status(db_url: str, as_json: bool, debug: bool) -> None:
    """Schema version, runs by status, announced workers (reads only)."""
    _show_status(_status(db_url, read_only=True), as_json)


@db_group.command("copy")
@click.option("--from", "source_url", required=True, help="Database URL to copy from.")
@click.option("--to", "target_url", required=True, help="Database URL to copy into.")
@json_option
@debug_option
def db_copy(source_url: str, target_url: str, as_json: bool, debug: bool) -> None:
    """Copy every table that holds state to another database, verifying each run's chain.

    Kill switches and role grants go first (writes stay off on the copy during an incident),
    then the runs, then approvals, counters, caches, memory and every other table. Live
    worker heartbeats and the schema history are not copied. Stop the workers first. Rows
    already in the target are kept, so an interrupted copy can be run again.
    """

    with contextlib.ExitStack() as shown:
        bars: list[Any] = []

        def progress(done: int, total: int) -> None:
            if not bars:
                bar = click.progressbar(length=total, label="copying runs", file=sys.stderr)
                bars.append(shown.enter_context(bar))
            if done:
                bars[0].update(1)

        report = with_runtime(
            source_url,
            lambda rt: rt.operations.copy_to(target_url, progress=progress),
            read_only=True,
        )
    if as_json:
        echo_json(vars(report))
    else:
        rows = ", ".join(f"{table} {n}" for table, n in report.tables.items())
        click.echo(
            f"copied {report.runs} run(s) and {report.events} event(s), every chain verified;"
            f" {report.skipped} already there; new rows: {rows or 'none'}"
        )


@click.group("killswitch")
def killswitch_group() -> None:
    """Switch every write call off at once (reads go on), for all, a tenant or an agent."""


def _switch(
    db_url: str,
    tenant: str,
    agent: str,
    on: bool,
    reason: str,
    actor: str | None,
    action: KillSwitchAction = "wait",
) -> list[Any]:
    return with_runtime(
        db_url,
        lambda rt: rt.operations.set_kill_switch(
            tenant=tenant, agent=agent, on=on, reason=reason, action=action, actor=operator(actor)
        ),
    )


def _show_switches(switches: list[Any], as_json: bool) -> None:
    if as_json:
        echo_json([s.to_dict() for s in switches])
    elif not switches:
        click.echo("no kill switch is on: writes are allowed (as policy decides)")
    else:
        table(
            ["tenant", "agent", "since", "action", "reason"],
            [(s.tenant, s.agent, clock_time(s.since), s.action, s.reason) for s in switches],
        )


def _scope_options(fn: Any) -> Any:
    fn = click.option("--agent", default="*", show_default=True, help="Agent name, or * for all.")(
        fn
    )
    return click.option("--tenant", default="*", show_default=True, help="Tenant, or * for all.")(
        fn
    )


@killswitch_group.command("on")
@_scope_options
@click.option("--reason", default="", help="Why; shown to the model and in the log.")
@click.option(
    "--action",
    type=click.Choice(["wait", "escalate", "reject"]),
    default="wait",
    show_default=True,
    help="What a blocked write does to its run: wait until the switch is off, escalate to"
    " a human, or reject the call (the model is told and goes on).",
)
@actor_option
@db_option
@json_option
@debug_option
def killswitch_on(
    tenant: str,
    agent: str,
    reason: str,
    action: KillSwitchAction,
    actor: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Block every write call now, in runs already in flight too; blocked calls are recorded.

    Reads go on. Switching off wakes the runs that wait.
    """
    _show_switches(_switch(db_url, tenant, agent, True, reason, actor, action), as_json)


@killswitch_group.command("off")
@_scope_options
@actor_option
@db_option
@json_option
@debug_option
def killswitch_off(
    tenant: str, agent: str, actor: str | None, db_url: str, as_json: bool, debug: bool
) -> None:
    """Lift the switch set for exactly this tenant and agent (the audit log keeps its
    history: charter audit log --kind killswitch_on)."""
    _show_switches(_switch(db_url, tenant, agent, False, "", actor), as_json)


@killswitch_group.command("status")
@db_option
@json_option
@debug_option
def killswitch_status(db_url: str, as_json: bool, debug: bool) -> None:
    """The switches that are on."""
    switches = with_runtime(db_url, lambda rt: rt.operations.kill_switches(), read_only=True)
    _show_switches(switches, as_json)
