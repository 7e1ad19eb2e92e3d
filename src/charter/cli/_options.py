"""Options every command shares: one name per concept (``--db``, ``--json``, ``--debug``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from charter.errors import InputError
from charter.inputs import DEFAULT_MAX_INPUT_BYTES, MAX_INPUT_ENV, check_text, read_text_file
from charter.principals import canonical_principal, local_operator
from charter.redaction import redact_url
from charter.runtime import Runtime
from charter.store import DEFAULT_URL

T = TypeVar("T")


class _DbOption(click.Option):
    """``--db`` whose help shows the database in effect: ``$CHARTER_DB`` (password hidden)
    when it is set, else the default."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from_env = os.environ.get("CHARTER_DB")
        self.show_default = not from_env
        self.help = "Database URL (also CHARTER_DB)." + (
            f"  [in effect: {redact_url(from_env)} (from CHARTER_DB)]" if from_env else ""
        )
        return super().get_help_record(ctx)


db_option = click.option(
    "--db",
    "db_url",
    cls=_DbOption,
    envvar="CHARTER_DB",
    default=DEFAULT_URL,
    show_default=True,
    help="Database URL (also CHARTER_DB).",
)
actor_option = click.option(
    "--as",
    "actor",
    default=None,
    metavar="PRINCIPAL",
    help="Who acts, as the audit log records it (default: local:<your login>).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
max_input_option = click.option(
    "--max-input-bytes",
    envvar=MAX_INPUT_ENV,
    type=click.IntRange(1),
    default=DEFAULT_MAX_INPUT_BYTES,
    show_default=True,
    help=f"The largest input or message taken, in UTF-8 bytes (also {MAX_INPUT_ENV}).",
)
input_file_option = click.option(
    "--input-file",
    metavar="PATH",
    default=None,
    help="Read the text from this UTF-8 file; - reads standard input.",
)


def given_text(text: str | None, input_file: str | None, *, flag: str, max_bytes: int) -> str:
    """The text given by ``flag`` or ``--input-file`` (exactly one), checked: InputError."""
    if text is not None and input_file is not None:
        raise InputError(f"give {flag} or --input-file, not both")
    if input_file is not None:
        what = "the input from stdin" if input_file == "-" else f"--input-file {input_file}"
        return read_text_file(input_file, what=what, max_bytes=max_bytes)
    if text is None:
        raise InputError(
            f"no text: give {flag} TEXT or --input-file PATH", hint="--input-file - reads stdin"
        )
    return check_text(text, what=flag, max_bytes=max_bytes)


def operator(actor: str | None) -> str:
    """The actor ``--as`` names (canonically), or ``local:<login>``."""
    return canonical_principal(actor) if actor is not None else local_operator()


def with_runtime(
    db_url: str,
    work: Callable[[Runtime], Awaitable[T]],
    *,
    environment: str = "dev",
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    read_only: bool = False,
) -> T:
    """Open a runtime on ``--db``, do ``work``, close. Commands that only read pass
    ``read_only``: they never create, migrate, lock or write the database."""

    async def main() -> T:
        rt = Runtime.open(
            db_url, environment=environment, max_input_bytes=max_input_bytes, read_only=read_only
        )
        async with rt:
            return await work(rt)

    return asyncio.run(main())
