"""The bodies the API takes and gives (pydantic models: they make the OpenAPI schema)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, Field

from charter.errors import InputError
from charter.store import RunRecord


class StartRun(BaseModel):
    agent: str = Field(description="The name of an agent the server was started with (--agent).")
    input: str = Field(description="The run's input text.")


class RunStarted(BaseModel):
    run_id: str


class NewMessage(BaseModel):
    text: str = Field(description="The message for the run's inbox.")


class MessageSent(BaseModel):
    run_id: str
    message_id: int


class RunList(BaseModel):
    runs: list[dict[str, Any]]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


def run_view(record: RunRecord) -> dict[str, Any]:
    return record.to_dict()


def cursor_of(record: RunRecord) -> str:
    """The position after ``record`` in the newest-first list (opaque to clients)."""
    text = f"{record.created_at!r}|{record.run_id}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def parse_cursor(cursor: str) -> tuple[float, str]:
    try:
        at, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return float(at), run_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InputError(
            f"cursor {cursor!r} is not one this server gave",
            hint="pass the next_cursor of the previous page unchanged",
        ) from None
