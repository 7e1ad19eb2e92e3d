"""``charter stats``: fleet figures from the event log (see :mod:`charter.stats`)."""

from __future__ import annotations

import click

from charter.cli._options import db_option, debug_option, json_option, with_runtime
from charter.cli._render import clock_time, echo_json, table
from charter.stats import LatencyStats, StatsReport, parse_since


@click.command("stats")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="Runs created in this window: 30m, 24h, 7d, 2w, or all.",
)
@click.option("--agent", default=None, help="Only runs of this agent (its name).")
@click.option("--tenant", default=None, help="Only runs of this tenant.")
@db_option
@json_option
@debug_option
def stats_command(
    since: str, agent: str | None, tenant: str | None, db_url: str, as_json: bool, debug: bool
) -> None:
    """Runs, completion and escalation, tool errors, retries, latency, tokens, cost, approvals."""
    start = parse_since(since)
    report = with_runtime(
        db_url,
        lambda rt: rt.operations.stats(since=start, agent=agent, tenant=tenant),
        read_only=True,
    )
    if as_json:
        echo_json(report.model_dump(mode="json"))
    else:
        render(report, window=since)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, fmt: str = ",.1f") -> str:
    return "-" if value is None else format(value, fmt)


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _latency(stats: LatencyStats, unit: str = "ms") -> str:
    if not stats.count:
        return "-"
    return f"p50 {_num(stats.p50)} {unit}  p95 {_num(stats.p95)} {unit}  ({stats.count:,})"


def render(report: StatsReport, *, window: str) -> None:
    """The report as aligned sections for the terminal."""
    r = report
    scope = [f"since {clock_time(r.since)}" if r.since is not None else "all time"]
    scope += [f"agent {r.agent}"] if r.agent else []
    scope += [f"tenant {r.tenant}"] if r.tenant else []
    click.echo(f"Runs created {'; '.join(scope)} (--since {window})")
    if not r.runs:
        click.echo("no runs")
        return
    statuses = ", ".join(f"{n:,} {s}" for s, n in r.by_status.items())
    reasons = ", ".join(f"{n:,} {k}" for k, n in r.escalation_reasons.items()) or "-"
    rows = [
        ("runs", f"{r.runs:,} ({statuses}); {r.in_flight:,} in flight"),
        ("completion rate", f"{_pct(r.completion_rate)} of {r.finished:,} finished"),
        ("escalation rate", _pct(r.escalation_rate)),
        ("escalation reasons", reasons),
        ("steps", f"{r.steps:,} model calls, {r.model_failures:,} failed"),
        ("retries per step", f"{_num(r.retries_per_step, '.3f')} ({r.retries:,} retries)"),
        ("model latency", _latency(r.model_latency_ms)),
        ("tool latency", _latency(r.tool_latency_ms)),
        (
            "tool calls",
            f"{r.tool_calls:,}; {_num(r.tool_calls_per_successful_run, '.2f')} per successful run",
        ),
        (
            "tokens",
            f"{r.input_tokens:,} in, {r.output_tokens:,} out; {_num(r.tokens_per_run)} per run,"
            f" {_num(r.tokens_per_successful_run)} per successful run",
        ),
        (
            "cost",
            f"{_usd(r.cost_usd)}; {_usd(r.cost_per_run_usd)} per run,"
            f" {_usd(r.cost_per_successful_run_usd)} per successful run",
        ),
    ]
    a = r.approvals
    if a.requested:
        rows.append(
            (
                "approvals",
                f"{a.requested:,} requested: {a.granted:,} granted, {a.denied:,} denied,"
                f" {a.expired:,} expired, {a.pending:,} pending"
                + (f", {a.withdrawn:,} withdrawn" if a.withdrawn else ""),
            )
        )
        rows.append(("time to decision", _latency(a.time_to_decision_s, "s")))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")
    if r.tools:
        click.echo("")
        table(
            [
                "tool",
                "version",
                "calls",
                "failed",
                "rejected",
                "error_rate",
                "retries",
                "p50_ms",
                "p95_ms",
                "cost",
            ],
            [
                (
                    t.tool,
                    t.version or "-",
                    f"{t.calls:,}",
                    f"{t.failed:,}",
                    f"{t.rejected:,}",
                    _pct(t.error_rate),
                    f"{t.retries:,}",
                    _num(t.latency_ms.p50),
                    _num(t.latency_ms.p95),
                    _usd(t.cost_usd),
                )
                for t in r.tools
            ],
        )
