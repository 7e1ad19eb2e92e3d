"""``charter retention apply``: drop expired payloads (see :mod:`charter.retention`)."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli._options import (
    actor_option,
    db_option,
    debug_option,
    json_option,
    operator,
    with_runtime,
)
from charter.cli._render import echo_json
from charter.errors import ConfigError
from charter.retention import RetentionPolicy


@click.group("retention")
def retention_group() -> None:
    """Payload retention: TTLs per tenant and kind; the skeleton and hash chain stay."""


@retention_group.command("apply")
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    default=None,
    help="A retention YAML file (retention: {default: {...}, tenants: {...}}).",
)
@click.option(
    "--ttl",
    "ttls",
    multiple=True,
    metavar="[TENANT:]KIND=TTL",
    help="A TTL (kinds: prompts, tool_payloads, decisions; 7d, 12h, forever); "
    "repeatable, overrides the file.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@actor_option
@db_option
@json_option
@debug_option
def retention_apply(
    config: Path | None, ttls: tuple[str, ...], dry_run: bool, actor: str | None, db_url: str,
    as_json: bool, debug: bool,
) -> None:  # fmt: skip
    """Remove the payloads of finished runs older than their TTL."""
    policy = (RetentionPolicy.load(config) if config else RetentionPolicy()).override(ttls)
    if policy.empty:
        raise ConfigError("no TTL given: pass --config FILE or --ttl KIND=TTL")
    report = with_runtime(
        db_url,
        lambda rt: rt.operations.apply_retention(policy, dry_run=dry_run, actor=operator(actor)),
    )
    if as_json:
        echo_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {report.total} payload(s)")
    for key, count in sorted(report.removed.items()):
        click.echo(f"  {key}: {count}")
