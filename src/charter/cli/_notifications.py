"""``charter notifications``: the outbound notification deliveries of ``charter serve``
(list, and retry the failed ones). See ``server/_notify.py``."""

from __future__ import annotations

from typing import Literal

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
from charter.store import Delivery


@click.group("notifications")
def notifications_group() -> None:
    """Outbound notifications (charter serve --config, notifications:): list, retry."""


def _row(d: Delivery) -> tuple[str, ...]:
    answer = d.last_error or ("" if d.last_status is None else str(d.last_status))
    return (
        d.delivery_id, d.status, d.kind, d.run_id, d.endpoint, str(d.attempts),
        clock_time(d.created_at), answer,
    )  # fmt: skip


@notifications_group.command("list")
@click.option("--failed", is_flag=True, help="Only the failed ones (the dead letter).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@db_option
@json_option
@debug_option
def notifications_list(failed: bool, limit: int, db_url: str, as_json: bool, debug: bool) -> None:
    """Deliveries, newest first: pending, delivered or failed, with the last answer."""
    status: Literal["failed"] | None = "failed" if failed else None
    found = with_runtime(
        db_url,
        lambda rt: rt.operations.notifications.deliveries(status=status, limit=limit),
        read_only=True,
    )
    if as_json:
        echo_json([d.to_dict() for d in found])
    elif not found:
        click.echo("no failed deliveries" if failed else "no notification deliveries")
    else:
        headers = ["delivery_id", "status", "kind", "run_id", "endpoint", "attempts", "created"]
        table([*headers, "last answer"], [_row(d) for d in found])


@notifications_group.command("retry")
@click.argument("delivery_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every failed delivery.")
@actor_option
@db_option
@json_option
@debug_option
def notifications_retry(
    delivery_ids: tuple[str, ...],
    all_failed: bool,
    actor: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Make failed deliveries (DELIVERY_IDS, or --all-failed) due now, with fresh attempts; a
    running charter serve sends them (recorded in the audit log)."""
    if bool(delivery_ids) == all_failed:
        raise click.UsageError("name delivery ids or pass --all-failed (not both)")
    ids = None if all_failed else delivery_ids
    retried = with_runtime(
        db_url,
        lambda rt: rt.operations.notifications.retry_deliveries(ids, actor=operator(actor)),
    )
    if as_json:
        echo_json({"retried": retried})
    else:
        click.echo(f"{len(retried)} deliver{'y' if len(retried) == 1 else 'ies'} due again")
