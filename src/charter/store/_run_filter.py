"""The WHERE clause of ``list_runs``, for both backends (``mark``: ``?`` or ``%s``).

Runs come newest first, ordered by ``(created_at, run_id)``; ``before`` is the position of the
last run of the previous page (keyset pagination: a page never shifts when runs are added).
"""

from __future__ import annotations

from typing import Any

from charter.store._cache import model_runs


def where(
    mark: str,
    *,
    status: str | None,
    tenant: str | None,
    agent: str | None,
    since: float | None,
    before: tuple[float, str] | None,
    principal: str | None = None,
    model: str | None = None,
) -> tuple[str, list[Any]]:
    """``principal``: as stored (canonical); ``model``: a model event names it (its served
    id or a local file's sha256)."""
    parts: list[str] = []
    args: list[Any] = []
    columns = (("status", status), ("tenant", tenant), ("agent_name", agent))
    for column, value in (*columns, ("principal", principal)):
        if value is not None:
            parts.append(f"{column} = {mark}")
            args.append(value)
    if model is not None:
        dialect = "sqlite" if mark == "?" else "postgres"
        parts.append(model_runs(dialect).replace("?", mark))
        args += [model, model]
    if since is not None:
        parts.append(f"created_at >= {mark}")
        args.append(since)
    if before is not None:
        parts.append(f"(created_at < {mark} OR (created_at = {mark} AND run_id < {mark}))")
        args += [before[0], before[0], before[1]]
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


ORDER = " ORDER BY created_at DESC, run_id DESC"


STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "escalated", "cancelled")
HEAD_COLUMNS = "run_id, tenant, agent_name, status, last_seq, created_at, updated_at"


def heads(mark: str, run_ids: int, created_since: float | None) -> tuple[str, list[Any]]:
    """``Store.run_heads``'s query for ``run_ids`` ids (given as the first arguments) and a
    creation time: every status is named so that ``runs_status (status, created_at)`` serves
    the time range."""
    parts, args = [], list[Any]()
    if run_ids:
        marks = ", ".join([mark] * run_ids)
        parts.append(f"SELECT {HEAD_COLUMNS} FROM runs WHERE run_id IN ({marks})")
    if created_since is not None:
        statuses = ", ".join([mark] * len(STATUSES))
        parts.append(
            f"SELECT {HEAD_COLUMNS} FROM runs WHERE status IN ({statuses}) AND created_at >= {mark}"
        )
        args = [*STATUSES, created_since]
    return " UNION ".join(parts), args
