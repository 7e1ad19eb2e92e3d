"""How events are laid out in a store (schema 11), shared by the SQLite and PostgreSQL stores.

A run's events live in ``event_log``, keyed by ``(run_no, seq)``: ``run_no`` is the run's
small integer number in this database (a column of ``runs``), the type is a small code
(``event_types``, mirrored from :data:`EVENT_TYPES`), the hash is its 32 raw bytes. Everything
above the store keeps seeing what it saw before (run ids, type names, hashes as 64 hex
characters), and so do export files and the read-only ``events`` view people query by hand.
The hash values and what they cover are unchanged: only their storage is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from charter.errors import StoreError
from charter.events import Event

EVENT_TYPES: tuple[str, ...] = (
    "run_started",
    "message_received",
    "model_responded",
    "model_call_failed",
    "model_degraded",
    "tool_call_proposed",
    "policy_evaluated",
    "tool_call_rejected",
    "tool_call_started",
    "tool_call_succeeded",
    "tool_call_failed",
    "tool_outcome_unknown",
    "tool_call_reconciled",
    "tool_call_overdue",
    "tool_call_blocked",
    "approval_requested",
    "approval_decided",
    "run_waiting",
    "run_resumed",
    "budget_exceeded",
    "run_finished",
)
"""Event type codes: a type's code is its position here plus one. Append new types at the end,
never reorder: the codes are stored. Every write-mode open copies the list into the database's
``event_types`` table (what the ``events`` view joins)."""

CODES: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPES, start=1)}

COLUMNS = "seq, type_code, schema_version, at, payload, hash"
"""The stored columns of an event after its run's number, in this order."""


def code(type_: str) -> int:
    try:
        return CODES[type_]
    except KeyError:
        raise StoreError(f"event type {type_!r} has no storage code") from None


def type_name(code_: int) -> str:
    if 1 <= code_ <= len(EVENT_TYPES):
        return EVENT_TYPES[code_ - 1]
    raise StoreError(
        f"the database holds an event of type code {code_}, unknown to this Charter",
        hint="it was written by a newer Charter: upgrade Charter to read it",
    )


def stored(
    seq: int, type_: str, version: int, at: float, payload: str, hash_: str
) -> tuple[int, int, int, float, str, bytes]:
    """An event as a row of :data:`COLUMNS` (type as its code, hash as raw bytes)."""
    return (seq, code(type_), version, at, payload, bytes.fromhex(hash_))


def stored_events(events: Iterable[Event]) -> list[tuple[Any, ...]]:
    """Rows for :func:`insert_sql`: the run's id (its number is looked up), then the columns."""
    return [
        (e.run_id, *stored(e.seq, e.type, e.schema_version, e.at, e.payload, e.hash))
        for e in events
    ]


def shown(row: tuple[Any, ...]) -> tuple[int, str, int, float, str, str]:
    """A stored row of :data:`COLUMNS` as the store's callers see it (type name, hex hash)."""
    seq, code_, version, at, payload, hash_ = row
    return (int(seq), type_name(int(code_)), int(version), float(at), str(payload), hash_.hex())


def insert_sql(p: str) -> str:
    """Insert one event by run id; ``p`` is the driver's placeholder (``?`` or ``%s``)."""
    return (
        f"INSERT INTO event_log (run_no, {COLUMNS})"
        f" VALUES ((SELECT run_no FROM runs WHERE run_id = {p}), {p}, {p}, {p}, {p}, {p}, {p})"
    )


def select_sql(p: str) -> str:
    """A run's events from a sequence number on, in order (run id and seq as parameters)."""
    return (
        f"SELECT {COLUMNS} FROM event_log"
        f" WHERE run_no = (SELECT run_no FROM runs WHERE run_id = {p}) AND seq >= {p} ORDER BY seq"
    )


def replace_payload_sql(p: str) -> str:
    """Retention's compare-and-set of one payload: (new, run id, seq, old)."""
    return (
        f"UPDATE event_log SET payload = {p}"
        f" WHERE run_no = (SELECT run_no FROM runs WHERE run_id = {p}) AND seq = {p}"
        f" AND payload = {p}"
    )


def type_rows() -> list[tuple[int, str]]:
    return [(c, name) for name, c in CODES.items()]


def check_types(found: Iterable[tuple[int, str]]) -> None:
    """Refuse a database whose ``event_types`` gives a known code another meaning."""
    for code_, name in found:
        if code_ in range(1, len(EVENT_TYPES) + 1) and EVENT_TYPES[code_ - 1] != name:
            raise StoreError(
                f"the database's event type code {code_} means {name!r},"
                f" this Charter's means {EVENT_TYPES[code_ - 1]!r}",
                hint="the database was written by an incompatible Charter build",
            )


def unhex(text: str) -> bytes:
    """``charter_unhex``, the SQL function SQLite's schema-11 migration converts hashes with."""
    return bytes.fromhex(text)
