"""The cache table and the model-usage query, the statements both stores share.

Written with SQLite's ``?`` placeholders; :func:`charter.store._counters.pg` turns them into
PostgreSQL's. Cache entries expire by the caller's clock (``now``): a worker whose clock runs
ahead sees entries expire early, never late by more than its skew.
"""

from __future__ import annotations

GET = "SELECT value FROM cache WHERE key = ? AND expires_at > ?"
PUT = (
    "INSERT INTO cache (key, kind, value, created_at, expires_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, value = excluded.value,"
    " created_at = excluded.created_at, expires_at = excluded.expires_at"
)
DROP_EXPIRED = (
    "DELETE FROM cache WHERE key IN (SELECT key FROM cache WHERE expires_at <= ? LIMIT 100)"
)
"""Each write drops up to 100 expired entries, so the table does not grow with dead rows."""

MODEL_EVENTS = "('model_responded', 'model_call_failed')"


def model_runs(dialect: str) -> str:
    """``run_id IN (...)``: the runs whose model events name a model (served id or version);
    args: model, model. With SQLite's ``?`` placeholders.

    A full scan of the model events (no index serves a JSON field); fine for an operator's
    question, not for a hot path.
    """
    if dialect == "sqlite":
        named = (
            "(json_extract(payload, '$.model') = ? OR json_extract(payload, '$.model_version') = ?)"
        )
    else:
        named = "(payload::jsonb->>'model' = ? OR payload::jsonb->>'model_version' = ?)"
    return f"run_id IN (SELECT run_id FROM events WHERE type IN {MODEL_EVENTS} AND {named})"


def runs_with_model(run_columns: str, dialect: str) -> str:
    """Runs whose model events name ``model`` (:func:`model_runs`), optionally in one
    status; args: model, model, status, status, limit."""
    status = (
        "(? IS NULL OR status = ?)" if dialect == "sqlite" else "(?::text IS NULL OR status = ?)"
    )
    return (
        f"SELECT {run_columns} FROM runs WHERE {model_runs(dialect)} AND {status}"
        " ORDER BY created_at DESC LIMIT ?"
    )
