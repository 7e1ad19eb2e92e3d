"""The commands. Each opens a Runtime on ``--db``, calls the library, and renders the answer."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from charter.agents import load_agent
from charter.cli._approvals import approvals_group, roles_group
from charter.cli._audit import audit_group
from charter.cli._evals import eval_command, gate_command
from charter.cli._notifications import notifications_group
from charter.cli._ops import db_group, killswitch_group, workers_group
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
from charter.cli._policy import policy_group
from charter.cli._render import (
    RUN_HEADERS,
    clock_time,
    echo_json,
    run_detail,
    run_line,
    table,
)
from charter.cli._replay import diff_command, replay_command, rerun_command
from charter.cli._retention import retention_group
from charter.cli._schedules import schedules_group, tick_option
from charter.cli._serve import serve_command, tokens_group
from charter.cli._stats import stats_command
from charter.cli._timeline import render_events, render_timeline
from charter.events import FINAL_STATUSES, RunStatus
from charter.runtime import Runtime, tool_registry
from charter.worker import FAULT_POINTS, Faults, WorkerOptions, WorkerReport, run_worker

T = TypeVar("T")
STATUSES = get_args(RunStatus)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(package_name="charter")
def cli() -> None:
    """Charter runs AI agents as durable, governed jobs.

    Runs survive crashes and resume at the step that died; write calls happen exactly once;
    every run leaves a hash-chained event log you can audit.
    """


# -- starting and working runs ------------------------------------------------------------------


def run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--principal-tenant",
        default=None,
        help="The tenant the principal belongs to (policy's tenant_matches_principal);"
        " unknown when not given.",
    )(fn)
    fn = click.option(
        "--principal", default="anonymous", show_default=True, help="On whose behalf the run acts."
    )(fn)
    fn = click.option(
        "--environment",
        envvar="CHARTER_ENVIRONMENT",
        default="dev",
        show_default=True,
        help="Where the run acts (prod, staging, ...); recorded, and matched by policy rules.",
    )(fn)
    fn = click.option(
        "--role", "roles", multiple=True, help="A role of the principal (repeatable)."
    )(fn)
    fn = click.option("--tenant", default="default", show_default=True, help="Tenant id.")(fn)
    fn = max_input_option(input_file_option(fn))
    fn = click.option(
        "--input", "text", default=None, help="The task, as the first message (or --input-file)."
    )(fn)
    return click.argument("agent_file", type=click.Path(dir_okay=False, path_type=Path))(fn)


@cli.command("run")
@run_options
@db_option
@json_option
@debug_option
def run_cmd(
    agent_file: Path,
    text: str | None,
    input_file: str | None,
    max_input_bytes: int,
    tenant: str,
    roles: tuple[str, ...],
    environment: str,
    principal: str,
    principal_tenant: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Start a run and work it until it finishes or waits.

    Exit code 0 when the run succeeded or is waiting, 1 when it failed or was escalated.
    """
    text = given_text(text, input_file, flag="--input", max_bytes=max_input_bytes)
    agent = load_agent(agent_file)

    async def work(rt: Runtime) -> Any:
        return await rt.run(
            agent,
            text,
            tenant=tenant,
            principal=principal,
            principal_tenant=principal_tenant,
            roles=roles,
        )

    record = with_runtime(db_url, work, environment=environment, max_input_bytes=max_input_bytes)
    if as_json:
        echo_json(record.to_dict())
    else:
        state = record.state
        detail = state.get("output") or state.get("reason") or record.waiting_for or ""
        click.echo(f"{record.run_id} {record.status}" + (f": {detail}" if detail else ""))
    if record.status in FINAL_STATUSES and record.status != "succeeded":
        sys.exit(1)


@cli.command("start")
@run_options
@click.option(
    "--idempotency-key",
    metavar="KEY",
    default=None,
    help="Your key for this start (unique per tenant): a retry with the same key and request"
    " prints the same run id; with a different request it fails (exit 11).",
)
@db_option
@json_option
@debug_option
def start_cmd(
    idempotency_key: str | None,
    agent_file: Path,
    text: str | None,
    input_file: str | None,
    max_input_bytes: int,
    tenant: str,
    roles: tuple[str, ...],
    environment: str,
    principal: str,
    principal_tenant: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Enqueue a run for a worker; print its run id."""
    text = given_text(text, input_file, flag="--input", max_bytes=max_input_bytes)
    agent = load_agent(agent_file)

    async def work(rt: Runtime) -> Any:
        run_id = await rt.start(
            agent,
            text,
            tenant=tenant,
            principal=principal,
            principal_tenant=principal_tenant,
            roles=roles,
            idempotency_key=idempotency_key,
        )
        return await rt.get_run(run_id)  # a retried keyed start: the run as it is now

    record = with_runtime(db_url, work, environment=environment, max_input_bytes=max_input_bytes)
    if as_json:
        echo_json({"run_id": record.run_id, "status": record.status})
    else:
        click.echo(record.run_id)


@cli.command("worker")
@click.option("--until-idle", is_flag=True, help="Exit 0 once nothing is runnable.")
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Runs worked at once.",
)
@click.option(
    "--lease-seconds",
    "lease_s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a claim lasts without a heartbeat.",
)
@click.option(
    "--poll-seconds",
    "poll_s",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Seconds between looks for work when idle.",
)
@click.option(
    "--retry-for",
    "retry_for_s",
    type=click.FloatRange(0),
    default=None,
    help="Stop if the database stays unusable this many seconds [default: retry for ever].",
)
@click.option(
    "--tool-slots-per-tenant",
    default=16,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Tool attempts of one tenant run at once (hung ones included).",
)
@click.option(
    "--fault-point",
    default=None,
    hidden=True,
    help=f"Testing: SIGKILL this worker at NAME[:N], one of {', '.join(FAULT_POINTS)}.",
)
@tick_option
@click.option("--fault-delay", "fault_delay_s", default=0.05, hidden=True, type=float)
@click.option("--fault-action", default="kill", hidden=True, type=click.Choice(["kill", "stop"]))
@db_option
@debug_option
def worker_cmd(
    until_idle: bool,
    concurrency: int,
    lease_s: float,
    poll_s: float,
    retry_for_s: float | None,
    tool_slots_per_tenant: int,
    fault_point: str | None,
    fault_delay_s: float,
    fault_action: str,
    tick_s: float,
    db_url: str,
    debug: bool,
) -> None:
    """Claim and work runs until stopped (Ctrl-C or SIGTERM), or until idle."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options = WorkerOptions(
        concurrency=concurrency,
        lease_s=lease_s,
        poll_s=poll_s,
        faults=Faults.parse(fault_point, during_delay_s=fault_delay_s, action=fault_action),
        give_up_after_s=retry_for_s,
        tool_slots_per_tenant=tool_slots_per_tenant,
    )

    async def work() -> WorkerReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ticks = None if until_idle or tick_s == 0 else tick_s
        return await run_worker(db_url, options, until_idle=until_idle, stop=stop, tick_s=ticks)

    report = asyncio.run(work())
    click.echo(f"worked {len(report.worked)} run(s); {len(report.errors)} error(s)", err=True)
    if report.errors:
        sys.exit(1)


@cli.command("send")
@click.argument("run_id")
@click.argument("text", required=False)
@input_file_option
@max_input_option
@db_option
@debug_option
def send_cmd(
    run_id: str,
    text: str | None,
    input_file: str | None,
    max_input_bytes: int,
    db_url: str,
    debug: bool,
) -> None:
    """Deliver a message (TEXT, or --input-file) to a run's inbox; a run waiting for one
    becomes runnable."""
    message = given_text(text, input_file, flag="TEXT", max_bytes=max_input_bytes)
    inbox_id = with_runtime(
        db_url, lambda rt: rt.send(run_id, message), max_input_bytes=max_input_bytes
    )
    click.echo(f"message {inbox_id} delivered to {run_id}")


# -- reading ----------------------------------------------------------------------------------


@cli.group("runs")
def runs_group() -> None:
    """List and inspect runs."""


@runs_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs in this status.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.option(
    "--model",
    metavar="M",
    help="Only runs that used this model: its exact served id or a GGUF file's sha256.",
)
@db_option
@json_option
@debug_option
def runs_list(
    status: RunStatus | None,
    limit: int,
    model: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Runs, newest first."""
    records = with_runtime(
        db_url,
        lambda rt: rt.list_runs(status=status, limit=limit, model=model),
        read_only=True,
    )
    if as_json:
        echo_json([r.to_dict() for r in records])
    elif not records:
        where = (f" with status {status}" if status else "") + (f" using {model}" if model else "")
        click.echo("no runs" + where)
    else:
        table(RUN_HEADERS, [run_line(r) for r in records])


@runs_group.command("show")
@click.argument("run_id")
@db_option
@json_option
@debug_option
def runs_show(run_id: str, db_url: str, as_json: bool, debug: bool) -> None:
    """One run: status, agent, counters, outcome, then its timeline step by step.

    Each step shows its model, tokens, cost and latency; under it, each tool call with its
    policy decision, approval, outcome (duration, attempts, cost); then the run's totals.
    """
    if as_json:
        echo_json(with_runtime(db_url, lambda rt: rt.get_run(run_id), read_only=True).to_dict())
        return

    record, events = with_runtime(db_url, lambda rt: rt.inspect(run_id), read_only=True)
    run_detail(record)
    click.echo()
    render_timeline(events)


@runs_group.command("cancel")
@click.argument("run_id")
@click.option("--reason", required=True, metavar="TEXT", help="Why the run is cancelled.")
@actor_option
@db_option
@json_option
@debug_option
def runs_cancel(
    run_id: str, reason: str, actor: str | None, db_url: str, as_json: bool, debug: bool
) -> None:
    """Cancel a run: durable at once, honoured by a worker at the run's next step boundary.

    A write whose outcome is unknown is settled first (by its key, its reconcile hook, or a
    human); calls held for approval are withdrawn; the run finishes cancelled with who asked,
    why and when in its log. Asking again is harmless: it answers with the first request.
    A finished run cannot be cancelled (exit 6).
    """
    request = with_runtime(
        db_url, lambda rt: rt.cancel(run_id, reason=reason, actor=operator(actor))
    )
    if as_json:
        echo_json(request.to_dict())
        return
    if request.already_requested:
        by = f"by {request.requested_by} at {clock_time(request.requested_at)}"
        click.echo(f"cancel of {run_id} was already requested {by}: {request.reason}")
        if request.consumed_at is not None:
            click.echo(f"the run was cancelled at {clock_time(request.consumed_at)}")
    else:
        click.echo(f"cancel of {run_id} requested ({request.request_id}); a worker ends the run")
        click.echo("at its next step boundary: charter runs show " + run_id)


@cli.command("events")
@click.argument("run_id")
@db_option
@json_option
@debug_option
def events_cmd(run_id: str, db_url: str, as_json: bool, debug: bool) -> None:
    """A run's log: every event with its sequence number, time, type and summary.

    Summaries carry the details: tokens, cost and latency of model calls, policy decisions
    with their rules, approvals, and each call's duration, attempts and cost.
    """
    events = with_runtime(db_url, lambda rt: rt.events(run_id), read_only=True)
    if as_json:
        echo_json([e.to_dict() for e in events])
    else:
        render_events(events)


@cli.group("tools")
def tools_group() -> None:
    """The capabilities registry."""


@tools_group.command("list")
@click.option(
    "--agent",
    "agent_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="List this agent's tools (repeatable); default: agents of stored runs.",
)
@db_option
@json_option
@debug_option
def tools_list(agent_files: tuple[Path, ...], db_url: str, as_json: bool, debug: bool) -> None:
    """Every tool with its effect, risk, owner, idempotency and input schema."""
    if agent_files:  # the agents' own tools: no database needed
        tools = tool_registry([load_agent(p) for p in agent_files])
    else:
        found = with_runtime(db_url, lambda rt: rt.capabilities(None), read_only=True)
        for line in found.unavailable:
            click.echo(f"warning: not listed: {line}", err=True)
        tools = found.tools
    if as_json:
        echo_json([t.describe() for t in tools])
        return
    if not tools:
        click.echo("no tools: pass --agent AGENT.yaml, or start a run first")
        return
    table(
        [
            "name",
            "version",
            "effect",
            "risk",
            "owner",
            "idempotent",
            "reconcile",
            "timeout",
            "arguments",
        ],
        [
            (
                t.name,
                t.version,
                t.effect,
                t.risk,
                t.owner,
                "yes" if t.idempotent else "no",
                "yes" if t.reconcile else "no",
                f"{t.timeout_s:g}s",
                ", ".join(t.input_schema.get("properties", {})),
            )
            for t in tools
        ],
    )


cli.add_command(workers_group)
cli.add_command(db_group)
cli.add_command(notifications_group)
cli.add_command(policy_group)
cli.add_command(audit_group)
cli.add_command(killswitch_group)
cli.add_command(approvals_group)
cli.add_command(roles_group)
cli.add_command(stats_command)
cli.add_command(retention_group)
cli.add_command(replay_command)
cli.add_command(rerun_command)
cli.add_command(diff_command)
cli.add_command(eval_command)
cli.add_command(gate_command)
cli.add_command(tokens_group)
cli.add_command(serve_command)
cli.add_command(schedules_group)


@cli.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("charter-demo"),
    show_default=True,
    help="Where the demo keeps its databases (recreated).",
)
@click.option("--db", "db_url", default=None, help="Database URL [default: WORKDIR/charter.db].")
@click.option(
    "--model",
    type=click.Choice(["scripted", "local"]),
    default="scripted",
    show_default=True,
    help="scripted: the reproducible story; local: a real 0.5B model on this machine "
    "(scripts/get-local-model fetches it), structural checks, no crash scene.",
)
@debug_option
def demo_cmd(workdir: Path, db_url: str | None, model: str, debug: bool) -> None:
    """The support-desk demo: tickets, a crash mid-refund, resume, and the audit."""
    from charter.demo.local import run_local_demo
    from charter.demo.run import run_demo

    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("*.db*"):
        old.unlink()
    run = run_local_demo if model == "local" else run_demo
    code = run(workdir.resolve(), echo=click.echo, db_url=db_url)
    if code == 0:  # where to look next: the same runs in the web console
        url = db_url or f"sqlite:///{workdir.resolve() / 'charter.db'}"
        click.echo("\nsee these runs in a browser (the web console of charter serve):")
        click.echo(f"  charter tokens create you@example.com --tenant acme --db {url}")
        click.echo(f"  charter serve --db {url}")
        click.echo("  then open http://127.0.0.1:8000/ and log in with the token")
    sys.exit(code)
