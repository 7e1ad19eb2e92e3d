"""The storage contract every backend implements, and the values that cross it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from charter.events import Event


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run's row: identity, operational status, lease, and its durable state."""

    run_id: str
    agent_name: str
    agent_version: str
    agent_hash: str
    tenant: str
    principal: str
    status: str
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


@dataclass(frozen=True, slots=True)
class Claim:
    """A run a worker now holds. ``epoch`` fences every commit it makes."""

    run_id: str
    epoch: int
    previous_status: str
    waiting_for: str | None


@dataclass(frozen=True, slots=True)
class Commit:
    """One step's events and the run's new durable state, appended atomically.

    The append succeeds only if the run's last sequence number is still ``expected_seq`` and
    its lease epoch still ``epoch`` (fencing: a worker that lost its lease cannot commit).
    ``ready_at``/``waiting_for`` say when the run is runnable next; ``release`` drops the lease.
    """

    run_id: str
    worker: str
    epoch: int
    expected_seq: int
    events: tuple[Event, ...]
    state: str
    status: str
    ready_at: float | None
    waiting_for: str | None = None
    release: bool = False
    consumed_inbox: tuple[int, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class InboxMessage:
    inbox_id: int
    text: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class MemoryItem:
    tenant: str
    key: str
    value: Any
    provenance: dict[str, Any]
    created_at: float
    expires_at: float | None


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
    """Writes are switched off for ``tenant`` and ``agent`` (``*``: every one) since ``since``."""

    tenant: str
    agent: str
    since: float
    reason: str

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


class Store(Protocol):
    """Durable storage for runs, their event logs, inboxes, leases and memory."""

    url: str

    async def close(self) -> None: ...

    # -- agents and runs --------------------------------------------------------------------
    async def create_run(self, run: NewRun) -> None: ...
    async def get_agent_spec(self, agent_hash: str) -> str: ...
    async def get_run(self, run_id: str) -> RunRecord: ...
    async def list_runs(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[RunRecord]: ...
    async def run_ids(self) -> list[str]: ...
    async def run_counts(self) -> dict[str, int]:
        """Runs by status."""
        ...

    # -- events -----------------------------------------------------------------------------
    async def load_events(self, run_id: str, *, after_seq: int = 0) -> list[Event]: ...
    async def event_rows(self, run_id: str) -> list[EventRow]: ...
    async def commit(self, commit: Commit) -> None: ...

    # -- inbox ------------------------------------------------------------------------------
    async def send(self, run_id: str, text: str) -> int: ...
    async def pending_messages(self, run_id: str) -> list[InboxMessage]: ...

    # -- leases -----------------------------------------------------------------------------
    async def claim(
        self, worker: str, *, lease_s: float, limit: int, run_id: str | None = None
    ) -> list[Claim]: ...
    async def renew(self, worker: str, leases: dict[str, int], *, lease_s: float) -> set[str]: ...
    async def release(self, worker: str, run_id: str, epoch: int) -> None: ...
    async def next_ready_at(self) -> float | None: ...
    async def work_outlook(self) -> tuple[int, int]: ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when work may have appeared (a wake-up from another process), or after
        ``timeout`` seconds. Backends without notifications just sleep."""
        ...

    # -- workers ----------------------------------------------------------------------------
    async def heartbeat_worker(self, info: WorkerInfo) -> None: ...
    async def remove_worker(self, worker_id: str) -> None: ...
    async def list_workers(self) -> list[WorkerInfo]: ...

    # -- kill switch ------------------------------------------------------------------------
    async def set_killswitch(self, *, tenant: str, agent: str, on: bool, reason: str) -> None:
        """Switch writes off (or on again) for a tenant and agent; ``*`` means all."""
        ...

    async def killswitches(self) -> list[KillSwitch]: ...

    # -- memory -----------------------------------------------------------------------------
    async def remember(self, item: MemoryItem) -> None: ...
    async def recall(self, tenant: str, key: str) -> MemoryItem | None: ...
    async def memory_items(self) -> list[MemoryItem]: ...

    # -- schema and copying -----------------------------------------------------------------
    async def schema_version(self) -> int: ...
    def latest_schema_version(self) -> int: ...
    async def export_run(self, run_id: str) -> RunExport: ...
    async def import_run(self, export: RunExport) -> None: ...
