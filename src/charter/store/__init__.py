"""Storage: the ``Store`` contract and its backends, opened from URLs.

SQLite, embedded: ``sqlite:///charter.db`` (relative path), ``sqlite:////var/lib/charter.db``
(absolute); ``?synchronous=NORMAL`` trades the last commits on power loss for speed (default
FULL).

PostgreSQL, for workers on several machines: ``postgresql://user:password@host:5432/dbname``
(``postgres://`` too; any libpq parameter may follow as a query, e.g. ``?sslmode=require``).
The database must exist; Charter creates and migrates its tables on first use by a command
that writes. Commands that only read open the store with ``mode="read"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from charter.errors import ConfigError
from charter.redaction import redact_url
from charter.store._audit import AuditEntry, AuditKey, AuditRecord
from charter.store._base import (
    Admin,
    ApprovalRecord,
    AuditLog,
    CacheStorage,
    CancelRequest,
    Claim,
    Commit,
    EngineStore,
    EventRow,
    Governance,
    InboxMessage,
    KillSwitch,
    KillSwitchAction,
    Leases,
    MemoryItem,
    MemoryStorage,
    NewRun,
    RoleGrant,
    RunExport,
    RunHead,
    RunLog,
    RunRecord,
    Store,
    WorkerInfo,
)
from charter.store._copy import CopyReport, copy_store
from charter.store._notifications import (
    KINDS as NOTIFICATION_KINDS,
    ClaimedDelivery,
    Delivery,
    NotificationOutbox,
    Route,
)
from charter.store._opening import Mode
from charter.store._postgres import PostgresStore
from charter.store._schedules import Advance, Missed, Schedule, ScheduleStorage
from charter.store._sqlite import SQLiteStore
from charter.store._tokens import TOKEN_PREFIX, ApiToken, token_hash

DEFAULT_URL = "sqlite:///charter.db"

__all__ = [
    "DEFAULT_URL",
    "NOTIFICATION_KINDS",
    "TOKEN_PREFIX",
    "Admin",
    "Advance",
    "ApiToken",
    "ApprovalRecord",
    "AuditEntry",
    "AuditKey",
    "AuditLog",
    "AuditRecord",
    "CacheStorage",
    "CancelRequest",
    "Claim",
    "ClaimedDelivery",
    "Commit",
    "CopyReport",
    "Delivery",
    "EngineStore",
    "EventRow",
    "Governance",
    "InboxMessage",
    "KillSwitch",
    "KillSwitchAction",
    "Leases",
    "MemoryItem",
    "MemoryStorage",
    "Missed",
    "Mode",
    "NewRun",
    "NotificationOutbox",
    "PostgresStore",
    "RoleGrant",
    "Route",
    "RunExport",
    "RunHead",
    "RunLog",
    "RunRecord",
    "SQLiteStore",
    "Schedule",
    "ScheduleStorage",
    "Store",
    "WorkerInfo",
    "copy_store",
    "open_store",
    "token_hash",
]


def open_store(
    url: str, *, mode: Mode = "write", audit_key: AuditKey | Literal["env"] | None = "env"
) -> SQLiteStore | PostgresStore:
    """Open the store a URL names: to ``write`` (the default: create and migrate it if
    needed) or to ``read`` (never create, migrate, lock or write it; a missing database or
    one without Charter's schema is a :class:`~charter.errors.StoreError`). See
    ``store/_opening.py``.

    ``audit_key`` seals what the store appends to the audit log (``store/_audit.py``); by
    default (``"env"``) it is read from ``CHARTER_AUDIT_KEY`` or the file ``CHARTER_AUDIT_KEY_FILE``
    names, and None means no key.

    A PostgreSQL store connects (and migrates or checks) on first use, inside the caller's
    event loop.
    """
    parts = urlsplit(url)
    if mode not in ("read", "write"):
        raise ConfigError(f"mode must be 'read' or 'write', not {mode!r}")
    read_only = mode == "read"
    key = AuditKey.from_env() if audit_key == "env" else audit_key
    if parts.scheme in ("postgresql", "postgres"):
        return PostgresStore(url, read_only=read_only, audit_key=key)
    if parts.scheme != "sqlite":
        raise ConfigError(
            f"unsupported database URL {redact_url(url)!r}",
            hint="use sqlite:///path/to/charter.db or postgresql://user@host:5432/dbname",
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigError(f"database URL {url!r} names no file", hint="sqlite:///charter.db")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise ConfigError(f"unknown option(s) in database URL: {', '.join(sorted(unknown))}")
    sync = options.get("synchronous", "FULL").upper()
    if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {sync!r}")
    if not Path(path).parent.exists():
        raise ConfigError(f"the directory of database {path} does not exist")
    return SQLiteStore(path, synchronous=sync, read_only=read_only, audit_key=key)  # type: ignore[arg-type]
