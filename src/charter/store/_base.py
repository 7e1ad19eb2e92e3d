"""The storage contract every backend implements, and the values that cross it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from charter.events import Event, RunStatus
from charter.stats import StatsReport
from charter.store._audit import AuditEntry, AuditKey, AuditRecord
from charter.store._notifications import NotificationOutbox
from charter.store._schedules import ScheduleStorage
from charter.store._tokens import ApiToken


@dataclass(frozen=True, slots=True)
class RunHead:
    """Where a run stands, without its state: what a live view polls (``Store.run_heads``)."""

    run_id: str
    tenant: str
    agent_name: str
    status: RunStatus
    last_seq: int
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run's row: identity, operational status, lease, and its durable state."""

    run_id: str
    agent_name: str
    agent_version: str
    agent_hash: str
    tenant: str
    principal: str
    status: RunStatus
    waiting_for: str | None
    ready_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    lease_epoch: int
    last_seq: int
    last_hash: str
    state: dict[str, Any]
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create, with its first events (run started, the input message)."""

    run_id: str
    agent_name: str
    agent_version: str
    agent_hash: str
    agent_spec: str
    tenant: str
    principal: str
    events: tuple[Event, ...]
    state: str
    created_at: float
    idempotency_key: str | None = None
    """The client's key for this start (unique per tenant), if it gave one."""
    request_digest: str | None = None
    """What the keyed start asked for (``Runtime.start``), to refuse a key reused for another."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A run a worker now holds. ``epoch`` fences every commit it makes."""

    run_id: str
    epoch: int
    previous_status: RunStatus
    waiting_for: str | None


@dataclass(frozen=True, slots=True)
class Commit:
    """One step's events and the run's new durable state, appended atomically.

    The append succeeds only if the run's last sequence number is still ``expected_seq`` and
    its lease epoch still ``epoch`` (fencing: a worker that lost its lease cannot commit).
    ``ready_at``/``waiting_for`` say when the run is runnable next; ``release`` drops the lease.
    """

    run_id: str
    worker_id: str
    epoch: int
    expected_seq: int
    events: tuple[Event, ...]
    state: str
    status: RunStatus
    ready_at: float | None
    waiting_for: str | None = None
    release: bool = False
    consumed_inbox: tuple[int, ...] = field(default_factory=tuple)
    approvals: tuple[ApprovalRecord, ...] = field(default_factory=tuple)
    """Approval requests to file with this step (their ``approval_requested`` events are in it)."""
    awaiting: tuple[str, ...] = field(default_factory=tuple)
    """Approval ids a parking run waits for: one decided already makes it runnable at once."""
    cancelled: str | None = None
    """The cancel request this commit honours (its ``run_finished`` records it): consumed, and
    the run's pending approvals withdrawn, in the same transaction."""


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """An approval request as the store keeps it: the held call, who may decide, the decision.

    ``status`` moves once, by compare-and-set, from ``pending`` to ``granted``, ``denied`` or
    ``expired``; the run reads the decision from here and records it in its log. A cancelled
    run's pending requests become ``withdrawn`` (recorded in its ``run_finished``).
    """

    approval_id: str
    run_id: str
    call_id: str
    tenant: str
    agent_name: str
    tool: str
    arguments: dict[str, Any]
    arguments_hash: str
    risk: str
    reason: str
    rule_ids: tuple[str, ...]
    requested_by: str
    tier: str
    role: str
    changes: tuple[dict[str, Any], ...] | None
    requested_at: float
    expires_at: float
    on_expiry: str
    status: str = "pending"
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["rule_ids"] = list(self.rule_ids)
        out["changes"] = None if self.changes is None else list(self.changes)
        return out

    def row(self) -> tuple[Any, ...]:
        """The values in ``APPROVAL_COLUMNS`` order, JSON fields as text."""
        values = [getattr(self, name) for name in self.__slots__]
        values[6] = json.dumps(self.arguments)
        values[10] = json.dumps(list(self.rule_ids))
        values[14] = None if self.changes is None else json.dumps(list(self.changes))
        return tuple(values)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ApprovalRecord:
        values = list(row)
        values[6] = json.loads(values[6])
        values[10] = tuple(json.loads(values[10]))
        values[14] = None if values[14] is None else tuple(json.loads(values[14]))
        return cls(*values)


APPROVAL_COLUMNS = ", ".join(ApprovalRecord.__slots__)


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """``principal`` holds ``role`` in ``tenant`` (``*``: in every tenant)."""

    principal: str
    role: str
    tenant: str
    granted_at: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class InboxMessage:
    inbox_id: int
    text: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A request to cancel a run (``Runtime.cancel``): one per run, honoured at the run's next
    step boundary, consumed in the commit that finishes the run ``cancelled``."""

    request_id: str
    run_id: str
    reason: str
    requested_by: str
    requested_at: float
    consumed_at: float | None = None
    already_requested: bool = False
    """Set on the answer to a request that found an earlier one for the run (that one is it)."""

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


CANCEL_COLUMNS = "request_id, run_id, reason, requested_by, requested_at, consumed_at"


@dataclass(frozen=True, slots=True)
class MemoryItem:
    tenant: str
    key: str
    value: Any
    provenance: dict[str, Any]
    created_at: float
    expires_at: float | None


KillSwitchAction = Literal["wait", "escalate", "reject"]
EventRow = tuple[int, str, int, float, str, str]
"""(seq, type, schema_version, at, payload, hash) as stored."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process as it announces itself; ``leases`` is filled in by ``list_workers``."""

    worker_id: str
    host: str
    pid: int
    concurrency: int
    started_at: float
    heartbeat_at: float = 0.0
    leases: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """Writes are switched off for ``tenant`` and ``agent`` (``*``: every one) since ``since``.

    ``action`` is what a blocked write does to its run: ``wait`` (park until the switch is
    off), ``escalate`` (hand the run to a human) or ``reject`` (tell the model and go on).
    """

    tenant: str
    agent: str
    since: float
    reason: str
    action: KillSwitchAction = "wait"

    def covers(self, tenant: str, agent: str) -> bool:
        return self.tenant in ("*", tenant) and self.agent in ("*", agent)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class RunExport:
    """Everything a store holds about one run, exactly as stored (for ``charter db copy``)."""

    record: RunRecord
    agent_spec: str
    events: tuple[EventRow, ...]
    inbox: tuple[tuple[int, str, float, float | None], ...]
    """(inbox_id, text, sent_at, consumed_at)"""
    approvals: tuple[ApprovalRecord, ...] = ()
    state_text: str | None = None
    """The run's state exactly as stored (JSON text), so a copy keeps it byte for byte."""


@dataclass(frozen=True, slots=True)
class PayloadRow:
    """An event payload a retention job may remove (``Store.expired_payloads``)."""

    run_id: str
    seq: int
    type: str
    at: float
    payload: str
    tenant: str
    schema_version: int
    """The event's schema version: retention writes the marker that version verifies by."""


class RunLog(Protocol):
    """Runs and their event logs, commits fenced by sequence number and lease, the inbox."""

    url: str

    async def close(self) -> None: ...

    # -- agents and runs --------------------------------------------------------------------
    async def create_run(self, run: NewRun) -> None: ...
    async def get_agent_spec(self, agent_hash: str) -> str: ...
    async def run_for_key(self, tenant: str, key: str) -> tuple[str, str] | None:
        """``(run_id, request_digest)`` of the run started with this idempotency key."""
        ...

    async def get_run(self, run_id: str) -> RunRecord: ...
    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        limit: int = 100,
        tenant: str | None = None,
        agent: str | None = None,
        since: float | None = None,
        before: tuple[float, str] | None = None,
        principal: str | None = None,
        model: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first (``created_at``, then ``run_id``), matching every filter given;
        ``since``: created at or after; ``before``: after the ``(created_at, run_id)`` of the
        previous page's last run; ``principal``: canonical; ``model``: as
        :meth:`runs_with_model`."""
        ...

    async def run_heads(
        self, run_ids: Sequence[str], *, created_since: float | None = None
    ) -> list[RunHead]:
        """The named runs (unknown ids left out), and with ``created_since`` also every run
        created at or after it: one indexed read however many runs a live view follows."""
        ...

    async def run_ids(self) -> list[str]: ...
    async def run_counts(self) -> dict[str, int]:
        """Runs by status."""
        ...

    # -- events -----------------------------------------------------------------------------
    async def load_events(self, run_id: str, *, after_seq: int = 0) -> list[Event]: ...
    async def event_rows(self, run_id: str) -> list[EventRow]: ...
    async def commit(self, commit: Commit) -> CancelRequest | None:
        """Append a step (``ConflictError`` if the run moved on). Returns the run's request to
        cancel that is still pending after it, if any: the shell honours it at the next step
        boundary without reading again."""
        ...

    # -- inbox ------------------------------------------------------------------------------
    async def send(self, run_id: str, text: str) -> int: ...
    async def pending_messages(self, run_id: str) -> list[InboxMessage]: ...

    # -- cancellation -----------------------------------------------------------------------
    async def request_cancel(
        self, run_id: str, *, request_id: str, reason: str, actor: str
    ) -> CancelRequest:
        """Record a request to cancel a run that has not finished (``RunStateError`` if it
        has), audited with ``actor``, and make the run runnable so that a worker honours it.
        A run that has a request already keeps it: that one is returned, marked
        ``already_requested``, and nothing is written."""
        ...

    async def cancel_request(self, run_id: str) -> CancelRequest | None:
        """The run's request to cancel that no commit has honoured yet, if any."""
        ...


class Leases(Protocol):
    """Who works which run: claims, lease renewal and release, wake-ups, worker heartbeats."""

    # -- leases -----------------------------------------------------------------------------
    async def claim(
        self, worker_id: str, *, lease_s: float, limit: int, run_id: str | None = None
    ) -> list[Claim]: ...
    async def renew(
        self, worker_id: str, leases: dict[str, int], *, lease_s: float
    ) -> set[str]: ...
    async def release(self, worker_id: str, run_id: str, epoch: int) -> None: ...
    async def next_ready_at(self) -> float | None: ...
    async def work_outlook(self) -> tuple[int, int]: ...

    async def wait_for_work(self, timeout_s: float) -> None:
        """Return when work may have appeared (a wake-up from another process), or after
        ``timeout_s`` seconds. Backends without notifications just sleep."""
        ...

    # -- workers ----------------------------------------------------------------------------
    async def heartbeat_worker(self, info: WorkerInfo) -> None: ...
    async def remove_worker(self, worker_id: str) -> None: ...
    async def list_workers(self) -> list[WorkerInfo]: ...


class Governance(Protocol):
    """What decisions read and write outside a run's log: kill switches, approvals, roles,
    counters (rate limits, spending)."""

    # -- kill switch ------------------------------------------------------------------------
    async def set_kill_switch(
        self,
        *,
        tenant: str,
        agent: str,
        on: bool,
        reason: str,
        action: KillSwitchAction = "wait",
        actor: str | None = None,
    ) -> None:
        """Switch writes off (or on again) for a tenant and agent; ``*`` means all.

        Switching off wakes the runs that wait for a switch; each checks again. The audit log
        records the change with its ``actor``, in the same transaction.
        """
        ...

    async def kill_switches(self) -> list[KillSwitch]: ...

    # -- approvals and roles ----------------------------------------------------------------
    async def approvals(
        self,
        *,
        tenant: str | None = None,
        status: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ApprovalRecord]:
        """Approval requests, oldest first."""
        ...

    async def get_approval(self, approval_id: str) -> ApprovalRecord: ...

    async def decide_approval(
        self,
        approval_id: str,
        *,
        decision: Literal["granted", "denied", "expired"],
        by: str | None,
        note: str | None,
    ) -> tuple[ApprovalRecord, bool]:
        """Compare-and-set ``pending`` → ``decision``; wake the run if it waits for it.

        Returns the record as it stands after the attempt and whether this call decided it.
        A grant or denial of a request past its expiry marks it ``expired`` instead (and
        returns False); ``expired`` succeeds only once the request is past its expiry.
        """
        ...

    async def set_role(
        self, *, principal: str, role: str, tenant: str, on: bool, actor: str | None = None
    ) -> None:
        """Grant or take away a role; a change is audited with its ``actor``."""
        ...

    async def role_grants(self, *, principal: str | None = None) -> list[RoleGrant]: ...

    # -- API tokens (store/_tokens.py) ------------------------------------------------------
    async def insert_token(self, token: ApiToken, *, actor: str | None) -> None:
        """Store a new token (its hash, never its secret), audited with ``actor``."""
        ...

    async def find_token(self, token_hash: str) -> ApiToken | None: ...
    async def api_tokens(self) -> list[ApiToken]:
        """Every token, oldest first, revoked and expired ones too."""
        ...

    async def revoke_token(self, token_id: str, *, at: float, actor: str | None) -> ApiToken:
        """Mark a token revoked at ``at`` (audited once, with ``actor``; revoking it again
        changes nothing); NotFoundError for an unknown id."""
        ...

    # -- counters (rate limits, spending) ---------------------------------------------------
    async def take(
        self, key: str, *, window_s: float, limit: float, amount: float = 1.0
    ) -> float | None:
        """Add ``amount`` to counter ``key`` in the current fixed window unless the total would
        pass ``limit``: return the new total, or None (and change nothing). Atomic: however
        many workers take at once, the total never passes the limit. The window is
        ``floor(now / window_s) * window_s`` by the store's clock (the database's on
        PostgreSQL)."""
        ...

    async def add(self, key: str, *, window_s: float, amount: float) -> float:
        """Add ``amount`` (which may be negative) to counter ``key`` in the current window,
        unconditionally; return the new total."""
        ...

    async def counter(self, key: str, *, window_s: float) -> float:
        """Counter ``key``'s total in the current window (0 when nothing was counted)."""
        ...


class CacheStorage(Protocol):
    """Model-response and read-tool result caches."""

    # -- caches (model responses, read-tool results) and model usage -------------------------
    async def cache_get(self, key: str, *, now: float) -> str | None:
        """The value cached under ``key`` unless it expired by ``now`` (the caller's clock)."""
        ...

    async def cache_put(self, key: str, value: str, *, kind: str, now: float, ttl_s: float) -> None:
        """Cache ``value`` under ``key`` until ``now + ttl_s`` (replacing an older value);
        ``kind`` is ``model`` or ``tool``. Also drops a few expired entries."""
        ...


class MemoryStorage(Protocol):
    """Key-value memory per tenant (:class:`charter.memory.StoreMemory` sits on it)."""

    # -- memory -----------------------------------------------------------------------------
    async def remember(self, item: MemoryItem) -> None: ...
    async def recall(self, tenant: str, key: str) -> MemoryItem | None: ...
    async def memory_items(self) -> list[MemoryItem]: ...


class AuditLog(Protocol):
    """The audit log (``store/_audit.py``): one hash chain over the whole database."""

    audit_key: AuditKey | None

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append records of actions that have no transaction of their own here."""
        ...

    async def audit_records(self, *, after_seq: int = 0) -> list[AuditRecord]: ...
    async def adopt_audit_log(self, records: Sequence[AuditRecord]) -> int:
        """``db copy``: take the source's audit log (see ``store/_audit.py`` ``adoption``)."""
        ...


class Admin(Protocol):
    """Statistics, schema, whole-table copies and retention: operators' work, not runs'."""

    # -- statistics -------------------------------------------------------------------------
    async def stats(
        self, *, since: float | None = None, agent: str | None = None, tenant: str | None = None
    ) -> StatsReport:
        """Figures over the runs created since ``since`` (of one agent, one tenant), computed
        from their event logs in the database; see :mod:`charter.stats` for the definitions."""
        ...

    # -- schema and copying -----------------------------------------------------------------
    async def schema_version(self) -> int: ...
    def latest_schema_version(self) -> int: ...
    async def export_run(self, run_id: str) -> RunExport: ...
    async def table_names(self) -> list[str]:
        """Every table of the schema, as the database lists them (``charter db copy``)."""
        ...

    async def table_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]: ...
    async def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> int:
        """Insert the rows whose key is not there yet; return how many were new."""
        ...

    # -- retention (payloads of finished runs only) -----------------------------------------
    async def expired_payloads(
        self,
        *,
        types: Sequence[str],
        before: float,
        tenant: str | None = None,
        skip_tenants: Sequence[str] = (),
        limit: int = 1000,
    ) -> list[PayloadRow]:
        """Payloads of these event types, older than ``before``, of finished runs."""
        ...

    async def replace_payloads(self, changes: Sequence[tuple[str, int, str, str]]) -> int:
        """Set ``(run_id, seq, old, new)`` payloads where the old one is still there."""
        ...

    async def import_run(self, export: RunExport) -> None: ...

    async def runs_with_model(
        self, model: str, *, status: RunStatus | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """The runs (in ``status``), newest first, in which ``model`` answered or was called:
        a model event names it as its ``model`` (served id) or ``model_version`` (sha256)."""
        ...


class EngineStore(RunLog, Leases, Governance, CacheStorage, Protocol):
    """What workers and the run loop use: the run log, leases, governance state, caches."""


class Store(
    EngineStore, MemoryStorage, AuditLog, Admin, ScheduleStorage, NotificationOutbox, Protocol
):
    """Durable storage for runs, their event logs, inboxes, leases, governance state, caches,
    memory and the audit log: every role a backend plays (``charter.testing.store_conformance``
    checks them)."""
