"""The effect shell's ports: everything it asks of the outside world besides the model.

The shell (:mod:`charter._engine.loop`) performs the decider's effects through these and
nothing else. A store (SQLite, PostgreSQL) is a :class:`RunPort` as it is; a replay serves the
recorded answers through its own (:class:`charter._engine.recorded.RecordedPort`), a rerun
wraps the real store (``charter.rerun``). Each implements the port in full and is checked
against it by the type checker: no cast, no proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from charter._engine.attempts import OverdueHook
from charter._engine.decider import Outcome
from charter.events import Event
from charter.store import (
    ApprovalRecord,
    CacheStorage,
    CancelRequest,
    Commit,
    InboxMessage,
    KillSwitch,
)
from charter.tools import Tool, ToolContext


class Counters(Protocol):
    """Durable counters for rate limits and spending (:class:`charter.store.Governance`)."""

    async def take(
        self, key: str, *, window_s: float, limit: float, amount: float = 1.0
    ) -> float | None: ...
    async def add(self, key: str, *, window_s: float, amount: float) -> float: ...
    async def counter(self, key: str, *, window_s: float) -> float: ...


class RunPort(Counters, CacheStorage, Protocol):
    """The run's log, inbox and cancel request, the governance state a run reads, counters and
    caches."""

    async def load_events(self, run_id: str, *, after_seq: int = 0) -> list[Event]: ...
    async def commit(self, commit: Commit) -> CancelRequest | None: ...
    async def release(self, worker_id: str, run_id: str, epoch: int) -> None: ...
    async def pending_messages(self, run_id: str) -> list[InboxMessage]: ...
    async def cancel_request(self, run_id: str) -> CancelRequest | None: ...
    async def kill_switches(self) -> list[KillSwitch]: ...
    async def get_approval(self, approval_id: str) -> ApprovalRecord: ...
    async def decide_approval(
        self,
        approval_id: str,
        *,
        decision: Literal["granted", "denied", "expired"],
        by: str | None,
        note: str | None,
    ) -> tuple[ApprovalRecord, bool]: ...


class Executor(Protocol):
    """Calls tools under their contracts (:class:`charter._engine.executor.ToolExecutor`);
    a replay serves recorded outcomes, a rerun recorded or simulated ones."""

    async def call(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: dict[str, Any],
        *,
        deadline: float | None = None,
        lease_until: Callable[[], float] | None = None,
        on_overdue: OverdueHook | None = None,
    ) -> Outcome: ...
