"""The audit log: one hash chain over the whole database (table ``audit_log``, schema 10).

Each run's events form their own chain; this one records what a run's chain cannot say about
itself: that the run was created (``run_created``), where its head stood each time it parked
or finished (``run_head``), which agent specs and policies the runtime saw (``agent_seen``),
and every operator action with its actor (``role_granted``, ``role_removed``,
``killswitch_on``, ``killswitch_off``, ``approval_decided``, ``cancel_requested``,
``retention_applied``, ``token_created``, ``token_revoked``: see ``store/_tokens.py``;
``schedule_added``, ``schedule_paused``, ``schedule_resumed``, ``schedule_removed``:
``store/_schedules.py``; ``hook_refused``: ``charter/webhooks.py``;
``notifications_retried``: ``store/_notifications.py``), and what ``charter serve`` was asked
by whom (``api_action``, ``api_refused``: see ``server/_access.py``).

A record is appended in the same transaction as what it records. Its hash covers its
sequence number, time, kind, run, actor, detail and the previous record's hash:
``sha256(seq | kind | at | run_id | actor | sha256(detail) | prev)``. With an audit key (an
:class:`AuditKey`, never stored in the database) each record also carries
``HMAC-SHA256(key, hash)``: whoever can write the database but lacks the key can append or
rewrite records only by leaving unsealed or wrongly sealed ones, which ``audit verify``
reports. Appends are serialised: SQLite has one writer; PostgreSQL takes a transaction-level
advisory lock, as the last statement of the transaction.

The first record (``genesis``) is written when the table is created; it lists the runs that
existed before the audit log did, so every later run must have its ``run_created`` record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter.errors import ConfigError, StoreError
from charter.events import FINAL_STATUSES, GENESIS_HASH, Event, RunStatus

if TYPE_CHECKING:
    from charter.store._base import ApprovalRecord

KEY_ENV, KEY_FILE_ENV = "CHARTER_AUDIT_KEY", "CHARTER_AUDIT_KEY_FILE"
MIN_KEY_BYTES = 16
APPEND_LOCK = 0x43484152_41554454  # "CHARAUDT": PostgreSQL advisory lock of the chain's tail
COLUMNS = "seq, at, kind, run_id, actor, detail, prev_hash, hash, key_id, mac"
SEALED_STATUSES = FINAL_STATUSES | {"waiting"}
"""A commit that leaves its run in one of these seals the run's head in the audit log."""


class AuditKey:
    """The secret that seals audit records (HMAC-SHA256). Its id, not the key, is stored."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise ConfigError(
                f"the audit key has {len(secret)} bytes; it needs at least {MIN_KEY_BYTES}",
                hint="make one with: python -c 'import secrets; print(secrets.token_hex(32))'",
            )
        self._secret = secret
        self.key_id = hashlib.sha256(b"charter-audit-key-id|" + secret).hexdigest()[:16]

    def mac(self, record_hash: str) -> str:
        return hmac.new(self._secret, record_hash.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuditKey | None:
        """The key ``CHARTER_AUDIT_KEY`` holds, or the file ``CHARTER_AUDIT_KEY_FILE`` names
        (one trailing newline dropped); None when neither is set."""
        env = os.environ if environ is None else environ
        text, path = env.get(KEY_ENV), env.get(KEY_FILE_ENV)
        if text and path:
            raise ConfigError(f"set {KEY_ENV} or {KEY_FILE_ENV}, not both")
        if text:
            return cls(text.encode())
        if not path:
            return None
        try:
            secret = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{KEY_FILE_ENV} names {path}, which cannot be read: {exc.strerror}",
                hint="point it at a file that holds the audit key",
            ) from None
        return cls(secret.removesuffix(b"\n"))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Something to record: what happened, to which run, by whom."""

    kind: str
    run_id: str | None = None
    actor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit log row as stored."""

    seq: int
    at: float
    kind: str
    run_id: str | None
    actor: str | None
    detail: str
    """Canonical JSON (sorted keys)."""
    prev_hash: str
    hash: str
    key_id: str | None
    mac: str | None

    @property
    def data(self) -> dict[str, Any]:
        value = json.loads(self.detail)
        return value if isinstance(value, dict) else {}

    def recompute(self, prev: str) -> str:
        """The hash this record should have after ``prev``."""
        return record_hash(
            seq=self.seq, at=self.at, kind=self.kind, run_id=self.run_id, actor=self.actor,
            detail=self.detail, prev=prev,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["detail"] = self.data
        return out


def canonical(detail: Mapping[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(
    *, seq: int, at: float, kind: str, run_id: str | None, actor: str | None, detail: str, prev: str
) -> str:
    digest = hashlib.sha256(detail.encode()).hexdigest()
    material = f"{seq}|{kind}|{at!r}|{run_id or ''}|{actor or ''}|{digest}|{prev}"
    return hashlib.sha256(material.encode()).hexdigest()


def seal(entry: AuditEntry, *, seq: int, at: float, prev: str, key: AuditKey | None) -> AuditRecord:
    detail = canonical(entry.detail)
    digest = record_hash(
        seq=seq, at=at, kind=entry.kind, run_id=entry.run_id, actor=entry.actor,
        detail=detail, prev=prev,
    )  # fmt: skip
    return AuditRecord(
        seq, at, entry.kind, entry.run_id, entry.actor, detail, prev, digest,
        key.key_id if key else None, key.mac(digest) if key else None,
    )  # fmt: skip


# -- what the store records ---------------------------------------------------------------------


def created(run_id: str, tenant: str, principal: str, agent_hash: str, head: Event) -> AuditEntry:
    detail = {"tenant": tenant, "agent_hash": agent_hash, "seq": head.seq, "hash": head.hash}
    return AuditEntry("run_created", run_id, principal, detail)


def agent_seen(agent_hash: str, spec: str) -> AuditEntry:
    """A new agent spec that the runtime stored for the first time: a new agent, version,
    prompt, tool set or policy (the policy is part of the spec; its digest is recorded)."""
    data = json.loads(spec)
    data = data if isinstance(data, dict) else {}
    policy = data.get("policy")
    detail = {
        "agent_hash": agent_hash,
        "agent": data.get("name"),
        "version": data.get("version"),
        "policy": policy.get("name") if isinstance(policy, dict) else None,
        "policy_digest": None
        if policy is None
        else hashlib.sha256(canonical(policy).encode()).hexdigest(),
    }
    return AuditEntry("agent_seen", None, None, detail)


def head(run_id: str, status: RunStatus, events: Sequence[Event]) -> list[AuditEntry]:
    """The ``run_head`` a commit leaves, if it parks or finishes the run."""
    if status not in SEALED_STATUSES or not events:
        return []
    last = events[-1]
    return [
        AuditEntry("run_head", run_id, None, {"seq": last.seq, "hash": last.hash, "status": status})
    ]


def kill_switch(
    on: bool, actor: str | None, tenant: str, agent: str, reason: str, action: str
) -> AuditEntry:
    detail: dict[str, Any] = {"tenant": tenant, "agent": agent}
    if on:
        detail.update(reason=reason, action=action)
    return AuditEntry("killswitch_on" if on else "killswitch_off", None, actor, detail)


def cancel_requested(run_id: str, actor: str, request_id: str, reason: str) -> AuditEntry:
    detail = {"request_id": request_id, "reason": reason}
    return AuditEntry("cancel_requested", run_id, actor, detail)


def role(on: bool, actor: str | None, principal: str, role_name: str, tenant: str) -> AuditEntry:
    detail = {"principal": principal, "role": role_name, "tenant": tenant}
    return AuditEntry("role_granted" if on else "role_removed", None, actor, detail)


# -- appending ----------------------------------------------------------------------------------

_LAST = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
INSERT = f"INSERT INTO audit_log ({COLUMNS}) VALUES ({', '.join(['{p}'] * 10)})"


def _chain(
    entries: Sequence[AuditEntry], last: tuple[int, str] | None, now: float, key: AuditKey | None
) -> list[tuple[Any, ...]]:
    seq, prev = last if last is not None else (0, GENESIS_HASH)
    rows = []
    for entry in entries:
        seq += 1
        record = seal(entry, seq=seq, at=now, prev=prev, key=key)
        prev = record.hash
        rows.append(tuple(getattr(record, name) for name in record.__slots__))
    return rows


def sqlite_append(
    conn: sqlite3.Connection, entries: Sequence[AuditEntry], now: float, key: AuditKey | None
) -> None:
    """Append inside the caller's transaction (SQLite has a single writer)."""
    if entries:
        last = conn.execute(_LAST).fetchone()
        conn.executemany(INSERT.format(p="?"), _chain(entries, last, now, key))


async def postgres_append(
    cur: Any, entries: Sequence[AuditEntry], now: float, key: AuditKey | None
) -> None:
    """Append as the last statements of the caller's transaction: the advisory lock is held
    until it commits, so concurrent appends queue on the chain's tail, never fork it."""
    if entries:
        await cur.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
        await cur.execute(_LAST)
        last = await cur.fetchone()
        await cur.executemany(INSERT.format(p="%s"), _chain(entries, last, now, key))


def genesis(legacy_runs: Sequence[str]) -> AuditEntry:
    """The first record: the runs that existed before the audit log (they have no
    ``run_created`` record)."""
    return AuditEntry("genesis", None, None, {"legacy_runs": sorted(legacy_runs)})


def from_row(row: Sequence[Any]) -> AuditRecord:
    seq, at, kind, run_id, actor, detail, prev, digest, key_id, mac = row
    return AuditRecord(int(seq), float(at), kind, run_id, actor, detail, prev, digest, key_id, mac)


SELECT = f"SELECT {COLUMNS} FROM audit_log WHERE seq > {{p}} ORDER BY seq"


def decided(record: ApprovalRecord) -> AuditEntry:
    """An approval's decision (an :class:`~charter.store.ApprovalRecord` just decided)."""
    detail = {
        "approval_id": record.approval_id,
        "decision": record.status,
        "tool": record.tool,
        "tenant": record.tenant,
        "arguments_hash": record.arguments_hash,
    }
    return AuditEntry("approval_decided", record.run_id, record.decided_by, detail)


def adoption(ours: Sequence[AuditRecord], theirs: Sequence[AuditRecord]) -> list[tuple[Any, ...]]:
    """The rows of ``theirs`` (a source's audit log) to write into a destination that holds
    ``ours``: all of them when ours is a fresh genesis (which they replace), the rest when
    ours is a prefix of theirs (a copy run again)."""
    if list(ours) == list(theirs[: len(ours)]):
        keep = len(ours)
    elif len(ours) == 1 and ours[0].kind == "genesis" and not ours[0].data.get("legacy_runs"):
        keep = 0
    else:
        raise StoreError(
            "the destination has an audit log of its own; a copy would fork it",
            hint="copy into an empty database",
        )
    return [tuple(getattr(r, name) for name in r.__slots__) for r in theirs[keep:]]
