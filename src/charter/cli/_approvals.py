"""``charter approvals`` (list, show, grant, deny) and ``charter roles`` (who may decide)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

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
from charter.errors import ConfigError
from charter.store import ApprovalRecord, RoleGrant

T = TypeVar("T")
STATUSES = ("pending", "granted", "denied", "expired", "withdrawn", "all")


@click.group("approvals")
def approvals_group() -> None:
    """Calls held for a human decision: list, show, grant, deny."""


@approvals_group.command("list")
@click.option("--tenant", default=None, help="Only this tenant's requests.")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    default="pending",
    show_default=True,
    help="Which requests.",
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@db_option
@json_option
@debug_option
def approvals_list(
    tenant: str | None, status: str, limit: int, db_url: str, as_json: bool, debug: bool
) -> None:
    """Approval requests, oldest first."""
    wanted = None if status == "all" else status
    found = with_runtime(
        db_url,
        lambda rt: rt.approvals(tenant=tenant, status=wanted, limit=limit),
        read_only=True,
    )
    if as_json:
        echo_json([a.to_dict() for a in found])
        return
    if not found:
        click.echo(f"no {'' if wanted is None else wanted + ' '}approval requests")
        return
    table(
        ["approval_id", "tenant", "tool", "arguments", "role", "requested_by", "status", "expires"],
        [
            (
                a.approval_id,
                a.tenant,
                a.tool,
                _clip(json.dumps(a.arguments, sort_keys=True), 40),
                a.role,
                a.requested_by,
                a.status,
                _expiry(a),
            )
            for a in found
        ],
    )


@approvals_group.command("show")
@click.argument("approval_id")
@db_option
@json_option
@debug_option
def approvals_show(approval_id: str, db_url: str, as_json: bool, debug: bool) -> None:
    """One request in full: the exact call, why it is held, what it would change."""
    record = with_runtime(db_url, lambda rt: rt.approval(approval_id), read_only=True)
    if as_json:
        echo_json(record.to_dict())
        return
    _describe(record)


@approvals_group.command("grant")
@click.argument("approval_id")
@click.option("--as", "principal", required=True, help="Who decides (must hold the role).")
@click.option("--note", default=None, help="Why; recorded with the decision.")
@click.option(
    "--arguments-hash",
    default=None,
    help="The hash `approvals show` printed: refuse if the call is not the one reviewed.",
)
@db_option
@json_option
@debug_option
def approvals_grant(
    approval_id: str,
    principal: str,
    note: str | None,
    arguments_hash: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Let a held call run, once. The run resumes at once if a worker is running."""
    record = with_runtime(
        db_url,
        lambda rt: rt.grant(approval_id, by=principal, note=note, arguments_hash=arguments_hash),
    )
    _decided(record, as_json)


@approvals_group.command("deny")
@click.argument("approval_id")
@click.option("--as", "principal", required=True, help="Who decides (must hold the role).")
@click.option("--reason", required=True, help="Why; the model is told, and it is recorded.")
@db_option
@json_option
@debug_option
def approvals_deny(
    approval_id: str, principal: str, reason: str, db_url: str, as_json: bool, debug: bool
) -> None:
    """Refuse a held call; the run goes on without it (the model gets the reason)."""
    record = with_runtime(db_url, lambda rt: rt.deny(approval_id, by=principal, reason=reason))
    _decided(record, as_json)


def _decided(record: ApprovalRecord, as_json: bool) -> None:
    if as_json:
        echo_json(record.to_dict())
    else:
        click.echo(
            f"{record.approval_id} {record.status} by {record.decided_by}:"
            f" {record.tool} in run {record.run_id}"
        )


def _describe(a: ApprovalRecord) -> None:
    lines = [
        ("approval", a.approval_id),
        (
            "status",
            a.status + (f" by {a.decided_by} at {_at(a.decided_at)}" if a.decided_by else ""),
        ),
        ("run", f"{a.run_id} (agent {a.agent_name}, tenant {a.tenant})"),
        ("requested by", f"{a.requested_by} at {_at(a.requested_at)}"),
        ("call", f"{a.tool} (risk {a.risk})"),
        ("arguments", json.dumps(a.arguments, sort_keys=True, indent=2)),
        ("arguments hash", a.arguments_hash),
        ("held by", f"{', '.join(a.rule_ids) or 'policy'}: {a.reason}"),
        ("who decides", f"role {a.role} (tier {a.tier}); not {a.requested_by}"),
        ("expires", f"{_at(a.expires_at)} ({_expiry(a)}); then {a.on_expiry}"),
    ]
    if a.note:
        lines.append(("note", a.note))
    for label, value in lines:
        click.echo(f"{label + ':':<16}{value}")
    click.echo("changes:" if a.changes else "changes:       the tool cannot tell (no preview)")
    for change in a.changes or ():
        old, new = json.dumps(change.get("old")), json.dumps(change.get("new"))
        click.echo(f"  {change.get('field')}: {old} → {new}")


def _expiry(a: ApprovalRecord) -> str:
    if a.status != "pending":
        return "-"
    left = a.expires_at - wall_clock()
    if left <= 0:
        return "expired"
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= seconds:
            return f"in {left / seconds:.0f}{unit}"
    return f"in {left:.0f}s"


def _at(at: float | None) -> str:
    return "-" if at is None else clock_time(at)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- roles ---------------------------------------------------------------------------------------


@click.group("roles")
def roles_group() -> None:
    """Which principals hold which roles (who may decide approvals)."""


def _set_role(
    db_url: str,
    principal: str,
    role: str,
    change: tuple[str | None, bool, str | None],
    on: bool,
) -> list[RoleGrant]:
    tenant, all_tenants, actor = change
    scope, who = _grant_scope(tenant, all_tenants), operator(actor)
    return with_runtime(
        db_url,
        lambda rt: rt.operations.set_role(
            principal=principal, role=role, tenant=scope, on=on, actor=who
        ),
    )


def _grant_scope(tenant: str | None, all_tenants: bool) -> str:
    """The grant's tenant, said explicitly: ``--tenant T`` or ``--all-tenants`` (stored ``*``)."""
    if tenant is not None and all_tenants:
        raise ConfigError("give --tenant or --all-tenants, not both")
    if all_tenants:
        return "*"
    if tenant is None:
        raise ConfigError(
            "say which tenant the role is for",
            hint="--tenant TENANT, or --all-tenants for a grant that covers every tenant",
        )
    if tenant.strip() == "*":
        raise ConfigError("--tenant '*' is not a tenant", hint="use --all-tenants for every tenant")
    return tenant


def _role_change_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """PRINCIPAL ROLE (--tenant T | --all-tenants) and the shared options."""
    for decorate in (
        debug_option,
        json_option,
        db_option,
        actor_option,
        click.option(
            "--all-tenants", is_flag=True, help="The grant covers every tenant (stored as *)."
        ),
        click.option("--tenant", default=None, help="The tenant the grant is for."),
        click.argument("role"),
        click.argument("principal"),
    ):
        fn = decorate(fn)
    return fn


@roles_group.command("add")
@_role_change_options
def roles_add(
    principal: str,
    role: str,
    tenant: str | None,
    all_tenants: bool,
    actor: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Give PRINCIPAL the ROLE in one tenant (--tenant) or in every tenant (--all-tenants)."""
    change = (tenant, all_tenants, actor)
    _show_roles(_set_role(db_url, principal, role, change, True), as_json)


@roles_group.command("remove")
@_role_change_options
def roles_remove(
    principal: str,
    role: str,
    tenant: str | None,
    all_tenants: bool,
    actor: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Take the ROLE away from PRINCIPAL (the grant for exactly this tenant, or the * grant)."""
    change = (tenant, all_tenants, actor)
    _show_roles(_set_role(db_url, principal, role, change, False), as_json)


@roles_group.command("list")
@click.option("--principal", default=None, help="Only this principal's roles.")
@db_option
@json_option
@debug_option
def roles_list(principal: str | None, db_url: str, as_json: bool, debug: bool) -> None:
    """Every role grant."""
    _show_roles(
        with_runtime(db_url, lambda rt: rt.operations.roles(principal=principal), read_only=True),
        as_json,
    )


def _show_roles(grants: list[RoleGrant], as_json: bool) -> None:
    if as_json:
        echo_json([g.to_dict() for g in grants])
    elif not grants:
        click.echo("no roles granted")
    else:
        table(
            ["principal", "role", "tenant", "since"],
            [(g.principal, g.role, g.tenant, clock_time(g.granted_at)) for g in grants],
        )
