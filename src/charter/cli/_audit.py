"""``charter audit``: verify a database's history, anchor it, read the audit log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from charter.audit import AUDIT_LOG, load_anchor
from charter.cli._options import db_option, debug_option, json_option, with_runtime
from charter.cli._render import clock_time, echo_json, table


@click.group("audit")
def audit_group() -> None:
    """Check that the history in a database is whole: event chains, run rows, the audit log.

    With an audit key (CHARTER_AUDIT_KEY, or a file named by CHARTER_AUDIT_KEY_FILE) every
    process that writes seals the audit log, so that cutting a run short, deleting one or
    rewinding its row is detected; without one, `audit verify` says what it cannot see.
    """


@audit_group.command("verify")
@click.argument("run_id", required=False)
@click.option("--all", "all_runs", is_flag=True, help="Verify every run.")
@click.option(
    "--anchor",
    "anchor_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also check against an anchor file (charter audit anchor --out).",
)
@db_option
@json_option
@debug_option
def audit_verify(
    run_id: str | None,
    all_runs: bool,
    anchor_file: Path | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Recompute hash chains, check run rows against their logs and the audit log (and its
    seals with a key); exit 1 and name the first bad record of each run if anything was
    altered."""
    if bool(run_id) == all_runs:
        raise click.UsageError("give a RUN_ID or --all")
    anchored = load_anchor(anchor_file) if anchor_file else None
    report = with_runtime(db_url, lambda rt: rt.audit(run_id, anchored=anchored), read_only=True)
    if as_json:
        echo_json(report.to_dict())
    else:
        for b in report.breaks:
            where = f" at {'record' if b.run_id == AUDIT_LOG else 'event'} {b.seq}" if b.seq else ""
            click.echo(f"BROKEN {b.run_id}{where}: {b.reason}")
        if report.ok:
            sealed = f", sealed with key {report.key_id}" if report.key_id else ""
            click.echo(
                f"ok: {report.runs} run(s) and {report.records} audit record(s) verify{sealed}"
            )
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
    if not report.ok:
        sys.exit(1)


@audit_group.command("anchor")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the anchor (JSON); keep it outside the database, write-once.",
)
@db_option
@json_option
@debug_option
def audit_anchor(out: Path, db_url: str, as_json: bool, debug: bool) -> None:
    """Export the sealed heads (the audit log's last record, each run's last recorded head),
    after checking that the database verifies; `audit verify --anchor FILE` checks later
    that nothing before them was cut or rewritten."""
    anchored = with_runtime(db_url, lambda rt: rt.anchor(out), read_only=True)
    head = anchored["audit_log"]
    if as_json:
        echo_json({"out": str(out), "audit_log": head, "runs": len(anchored["runs"])})
    else:
        click.echo(
            f"anchored audit record {head['seq']} and {len(anchored['runs'])} run head(s) in {out}"
        )


@audit_group.command("log")
@click.option("--run", "run_id", default=None, help="Only the records of this run.")
@click.option(
    "--kind",
    default=None,
    help="Only this kind (run_created, run_head, agent_seen, role_granted, role_removed,"
    " killswitch_on, killswitch_off, approval_decided, cancel_requested, retention_applied,"
    " token_created, token_revoked, api_action, api_refused).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the last N.")
@db_option
@json_option
@debug_option
def audit_log(
    run_id: str | None, kind: str | None, limit: int | None, db_url: str, as_json: bool,
    debug: bool,
) -> None:  # fmt: skip
    """The audit log: run creations, sealed heads, agents seen and operator actions with
    their actors, oldest first."""
    records = with_runtime(
        db_url, lambda rt: rt.audit_log(run_id=run_id, kind=kind, limit=limit), read_only=True
    )
    if as_json:
        echo_json([r.to_dict() for r in records])
        return
    if not records:
        click.echo("no audit records match")
        return
    table(
        ["seq", "at", "kind", "run", "actor", "detail", "sealed"],
        [
            (
                r.seq, clock_time(r.at), r.kind, r.run_id or "", r.actor or "",
                _detail(r.data), "yes" if r.mac else "no",
            )
            for r in records
        ],
    )  # fmt: skip


def _detail(data: dict[str, Any]) -> str:
    shown = {k: v for k, v in data.items() if k != "hash"}
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
