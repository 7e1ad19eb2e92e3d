"""Options every command shares: one name per concept (``--db``, ``--json``, ``--debug``)."""

from __future__ import annotations

import click

from charter.store import DEFAULT_URL

db_option = click.option(
    "--db",
    "db_url",
    envvar="CHARTER_DB",
    default=DEFAULT_URL,
    show_default=True,
    help="Database URL (also CHARTER_DB).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
