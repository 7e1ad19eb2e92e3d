"""The ``charter`` command: parse, call the library, render. No business logic lives here."""

from __future__ import annotations

import os
import sys

import click

from charter import telemetry
from charter.cli._app import cli
from charter.cli._render import fail

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point: errors become one clear line and an exit code, tracebacks only with --debug."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # tool references such as "examples.support.tools:x"
    debug = "--debug" in sys.argv[1:]
    try:
        telemetry.configure_from_env()  # OTLP export only when the OTEL_* variables ask
        # NO_COLOR (https://no-color.org): any non-empty value turns colour off everywhere.
        color = False if os.environ.get("NO_COLOR") else None
        cli.main(standalone_mode=False, prog_name="charter", color=color)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug:
            raise
        sys.exit(fail(exc))
