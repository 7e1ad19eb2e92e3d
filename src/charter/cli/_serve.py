"""``charter serve`` and ``charter tokens``: the HTTP API and the tokens that open it."""

from __future__ import annotations

import click

from charter.agents import load_agent
from charter.cli._options import (
    actor_option,
    db_option,
    debug_option,
    json_option,
    operator,
    with_runtime,
)
from charter.cli._render import clock_time, echo_json, table
from charter.cli._schedules import tick_option
from charter.errors import ConfigError
from charter.stats import parse_duration
from charter.store import ApiToken


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for charter serve: create (shown once), list, revoke."""


def _token_row(t: ApiToken) -> tuple[str, ...]:
    state = "revoked" if t.revoked_at is not None else "active"
    expires = "never" if t.expires_at is None else clock_time(t.expires_at)
    return (t.token_id, t.principal, t.tenant, ",".join(t.roles), expires, state)


@tokens_group.command("create")
@click.argument("principal")
@click.option("--tenant", required=True, help="The one tenant the token acts in.")
@click.option("--role", "roles", multiple=True, help="A role of the principal (repeatable).")
@click.option("--expires", default=None, metavar="DURATION", help="e.g. 30d, 12h; default never.")
@actor_option
@db_option
@json_option
@debug_option
def tokens_create(
    principal: str,
    tenant: str,
    roles: tuple[str, ...],
    expires: str | None,
    actor: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """Make a token for PRINCIPAL in --tenant. The token is printed once: only its sha256 is
    stored, so it cannot be shown again (revoke it and make another if it is lost)."""
    lifetime = None if expires is None else parse_duration(expires, option="--expires")
    secret, record = with_runtime(
        db_url,
        lambda rt: rt.operations.create_token(
            principal=principal,
            tenant=tenant,
            roles=roles,
            expires_in_s=lifetime,
            actor=operator(actor),
        ),
    )
    if as_json:
        echo_json({"token": secret, **record.to_dict()})
    else:
        click.echo(secret)
        click.echo(
            f"{record.token_id}: keep the line above secret; it is not shown again", err=True
        )


@tokens_group.command("list")
@db_option
@json_option
@debug_option
def tokens_list(db_url: str, as_json: bool, debug: bool) -> None:
    """Every token, without its secret."""
    tokens = with_runtime(db_url, lambda rt: rt.operations.tokens(), read_only=True)
    if as_json:
        echo_json([t.to_dict() for t in tokens])
    elif not tokens:
        click.echo("no API tokens; make one with: charter tokens create PRINCIPAL --tenant T")
    else:
        table(
            ["token_id", "principal", "tenant", "roles", "expires", "state"],
            [_token_row(t) for t in tokens],
        )


@tokens_group.command("revoke")
@click.argument("token_id")
@actor_option
@db_option
@json_option
@debug_option
def tokens_revoke(
    token_id: str, actor: str | None, db_url: str, as_json: bool, debug: bool
) -> None:
    """Refuse TOKEN_ID from now on (recorded in the audit log)."""
    record = with_runtime(
        db_url, lambda rt: rt.operations.revoke_token(token_id, actor=operator(actor))
    )
    if as_json:
        echo_json(record.to_dict())
    else:
        click.echo(f"revoked {record.token_id} ({record.principal}, tenant {record.tenant})")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--agent",
    "agent_files",
    multiple=True,
    metavar="FILE",
    help="An agent file whose agent POST /v1/runs may start, by name (repeatable).",
)
@click.option(
    "--eval-reports",
    "eval_reports",
    default=None,
    metavar="DIR",
    type=click.Path(exists=True, file_okay=False),
    help="A directory of eval reports (charter eval --report) to serve at /v1/evals.",
)
@click.option(
    "--config",
    "config_file",
    default=None,
    metavar="FILE",
    help="The server's YAML configuration (sections: hooks, notifications, oidc).",
)
@tick_option
@db_option
@debug_option
def serve_command(
    host: str,
    port: int,
    agent_files: tuple[str, ...],
    eval_reports: str | None,
    config_file: str | None,
    tick_s: float,
    db_url: str,
    debug: bool,
) -> None:
    """Serve the HTTP API (/v1, schema at /v1/openapi.json) over --db; needs API tokens
    (charter tokens create). Runs started here are worked by charter worker processes."""
    try:
        import uvicorn

        from charter.server import create_app, load_config
    except ImportError as exc:
        raise ConfigError(
            f"charter serve needs the server extra ({exc.name} is not installed)",
            hint="pip install 'charter[server]'",
        ) from None
    agents = [load_agent(path) for path in agent_files]
    names = [a.name for a in agents]
    if len(set(names)) != len(names):
        raise ConfigError(f"two --agent files name the same agent: {sorted(names)}")
    config = None if config_file is None else load_config(config_file)
    app = create_app(
        db_url, agents=agents, eval_reports=eval_reports, config=config, tick_s=tick_s or None
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"charter serve: console at http://{shown}:{port}/ (API /v1, log in with a token:")
    click.echo("  charter tokens create PRINCIPAL --tenant T --role R); Ctrl-C stops it")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="debug" if debug else "warning",
        timeout_graceful_shutdown=3,  # live event streams never end by themselves
    )
