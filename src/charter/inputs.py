"""Text that enters a run from outside (its input, a message): UTF-8, and bounded in size.

::

    text = read_text_file("task.txt", what="--input-file task.txt", max_bytes=1_048_576)
    check_text(text, what="the input", max_bytes=DEFAULT_MAX_INPUT_BYTES)

Both raise :class:`~charter.errors.InputError` (exit code 2), naming what was wrong and how
to fix it, before anything is stored.
"""

from __future__ import annotations

import sys
from pathlib import Path

from charter.errors import InputError

DEFAULT_MAX_INPUT_BYTES = 1_048_576
"""1 MiB: the largest input or message a run takes unless configured otherwise."""
MAX_INPUT_ENV = "CHARTER_MAX_INPUT_BYTES"
LIMIT_HINT = "raise the limit with --max-input-bytes or CHARTER_MAX_INPUT_BYTES"


def check_text(text: str, *, what: str, max_bytes: int | None) -> str:
    """``text`` when it is valid UTF-8 text within ``max_bytes`` (None: no limit)."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{what} is not UTF-8 text (an undecodable byte at character {exc.start})",
            hint="convert it to UTF-8 first, e.g. with iconv -t UTF-8",
        ) from None
    if max_bytes is not None and size > max_bytes:
        raise InputError(f"{what} is {size} bytes; the limit is {max_bytes}", hint=LIMIT_HINT)
    return text


def read_text_file(name: str, *, what: str, max_bytes: int | None) -> str:
    """The UTF-8 text of file ``name`` (``-``: standard input), within ``max_bytes``."""
    limit = None if max_bytes is None else max_bytes + 1
    try:
        if name == "-":
            data = sys.stdin.buffer.read(-1 if limit is None else limit)
        else:
            with Path(name).open("rb") as f:
                data = f.read(-1 if limit is None else limit)
    except OSError as exc:
        raise InputError(f"{what}: cannot be read: {exc.strerror}") from None
    if max_bytes is not None and len(data) > max_bytes:
        size = f"more than {max_bytes}" if name == "-" else str(Path(name).stat().st_size)
        raise InputError(f"{what} is {size} bytes; the limit is {max_bytes}", hint=LIMIT_HINT)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            hint="convert it to UTF-8 first, e.g. with iconv -t UTF-8",
        ) from None
