"""Durable counters (rate limits, daily spending), the statements both stores share.

A counter is a row per key and fixed window: ``window_start = floor(now / window_s) *
window_s`` by the store's clock (the database's on PostgreSQL, so that workers on several
machines share one window). Taking is one conditional UPSERT: the ``WHERE`` of ``DO UPDATE``
is re-checked on the row as locked (PostgreSQL) or inside the single writer (SQLite), so two
takers can never both pass the last slot. Each write first drops the key's older windows, so
the table holds about one row per key.
"""

from __future__ import annotations

import math

# Totals are floats (dollars as well as counts): a sum may miss a limit by a rounding error.
SLACK = 1e-9

DROP_OLD = "DELETE FROM counters WHERE key = ? AND window_start < ?"
TAKE = (
    "INSERT INTO counters (key, window_start, total, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key, window_start) DO UPDATE SET total = counters.total + excluded.total,"
    " updated_at = excluded.updated_at WHERE counters.total + excluded.total <= ?"
    " RETURNING total"
)
ADD = (
    "INSERT INTO counters (key, window_start, total, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (key, window_start) DO UPDATE SET total = counters.total + excluded.total,"
    " updated_at = excluded.updated_at RETURNING total"
)
READ = "SELECT total FROM counters WHERE key = ? AND window_start = ?"


def window_start(now: float, window_s: float) -> float:
    if not window_s > 0:
        raise ValueError(f"a counter's window must be positive, not {window_s!r}")
    return math.floor(now / window_s) * window_s


def pg(statement: str) -> str:
    """The statement with PostgreSQL's placeholders."""
    return statement.replace("?", "%s")
