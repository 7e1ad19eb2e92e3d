"""Live events: one poller per server process, fanning out to every watcher.

Watchers of a run (``GET /v1/runs/{id}/events/stream``) and of a tenant's runs
(``GET /v1/events/stream``) register here; while there are any, one task asks the store every
:data:`POLL_S` where the watched runs stand (``Runtime.run_heads``: one indexed read for all of
them, and for the runs created lately when a tenant is watched), loads the new events of a run
that moved once, and hands them to each of its watchers. So the cost to the database grows with
the runs watched per tick, not with the watchers; 200 browsers on one run cost what one does.
The same code serves SQLite and PostgreSQL (why not ``LISTEN/NOTIFY``: docs/architecture.md,
"Live events").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

from charter.clock import Clock, wall_clock
from charter.events import Event, RunStatus
from charter.runtime import Runtime
from charter.store import RunHead

POLL_S = 0.025
"""How often the poller reads while anyone watches: the bound on committed → sent."""
RECENT_S = 5.0
"""A tenant's watchers see runs created this long before the last read too (clocks of other
machines, transactions committing late); a run already reported is not reported again."""
SEED_LIMIT = 1000
"""A tenant's unfinished runs looked up when its first watcher arrives, per status."""
FINISHED = frozenset({"succeeded", "failed", "escalated", "cancelled"})
ACTIVE: tuple[RunStatus, ...] = ("queued", "running", "waiting")
_BACKOFF_S = 1.0

log = logging.getLogger(__name__)


def _json(event: Event) -> str:
    return json.dumps(event.to_dict(), default=str, ensure_ascii=False)


@dataclass(eq=False)
class RunWatch:
    """One watcher of one run: the events after ``pos`` arrive on ``queue`` in batches, each
    as ``(seq, JSON text)`` (made once for all watchers), then ``None`` once the run has
    finished and every event was handed over."""

    run_id: str
    pos: int
    queue: asyncio.Queue[list[tuple[int, str]] | None] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class TenantWatch:
    """One watcher of a tenant's runs: a run's head arrives when it is new or moved."""

    tenant: str
    queue: asyncio.Queue[RunHead] = field(default_factory=asyncio.Queue)


class LiveEvents:
    """The poller and its watchers (one per app; started and stopped by its lifespan)."""

    def __init__(self, rt: Runtime, *, poll_s: float = POLL_S, clock: Clock = wall_clock):
        self._rt, self._poll_s, self._clock = rt, poll_s, clock
        self._runs: dict[str, set[RunWatch]] = {}
        self._tenants: dict[str, set[TenantWatch]] = {}
        self._seen: dict[str, RunHead] = {}  # the runs tenant watchers were told of, as told
        self._since = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def watchers(self) -> int:
        return sum(map(len, self._runs.values())) + sum(map(len, self._tenants.values()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="charter-live-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def watch_run(self, run_id: str, after: int) -> RunWatch:
        watch = RunWatch(run_id, after)
        self._runs.setdefault(run_id, set()).add(watch)
        self._wake.set()
        return watch

    async def watch_tenant(self, tenant: str) -> TenantWatch:
        """A watcher of ``tenant``; the first one looks up the tenant's unfinished runs."""
        if tenant not in self._tenants:
            if not self._tenants:
                self._since = self._clock() - RECENT_S
            for status in ACTIVE:
                for r in await self._rt.list_runs(tenant=tenant, status=status, limit=SEED_LIMIT):
                    head = RunHead(
                        r.run_id, r.tenant, r.agent_name, r.status, r.last_seq, r.created_at,
                        r.updated_at,
                    )  # fmt: skip
                    self._seen.setdefault(r.run_id, head)
        watch = TenantWatch(tenant)
        self._tenants.setdefault(tenant, set()).add(watch)
        self._wake.set()
        return watch

    def unwatch(self, watch: RunWatch | TenantWatch) -> None:
        key = watch.run_id if isinstance(watch, RunWatch) else watch.tenant
        table: dict[str, set[RunWatch]] | dict[str, set[TenantWatch]]
        table = self._runs if isinstance(watch, RunWatch) else self._tenants
        group = table.get(key)
        if group is not None:
            group.discard(watch)
            if not group:
                del table[key]
        if not self._tenants:
            self._seen.clear()

    async def _loop(self) -> None:
        while True:
            if not self._runs and not self._tenants:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.tick()
            except Exception:  # the store is down or busy: keep the watchers, try again
                log.warning("live events: reading the store failed", exc_info=True)
                await asyncio.sleep(_BACKOFF_S)
            await asyncio.sleep(self._poll_s)

    async def tick(self) -> None:
        """One read of every watched run's head; the new events to their watchers."""
        followed = [*self._runs, *(h.run_id for h in self._seen.values() if h.status in ACTIVE)]
        since = None
        if self._tenants:
            since, self._since = self._since, self._clock() - RECENT_S
        heads = await self._rt.run_heads(followed, created_since=since)
        for head in heads:
            if head.run_id in self._runs:
                await self._deliver(head)
            if head.tenant in self._tenants:
                self._tell_tenant(head)
        if since is not None:  # forget finished runs too old to come back through `since`
            for run_id, head in list(self._seen.items()):
                if head.status in FINISHED and head.created_at < since:
                    del self._seen[run_id]

    async def _deliver(self, head: RunHead) -> None:
        watchers = list(self._runs[head.run_id])
        low = min(w.pos for w in watchers)
        if head.last_seq > low:
            events = [(e.seq, _json(e)) for e in await self._rt.events(head.run_id, after_seq=low)]
            for w in watchers:
                batch = [(seq, text) for seq, text in events if seq > w.pos]
                if batch:
                    w.pos = batch[-1][0]
                    w.queue.put_nowait(batch)
        if head.status in FINISHED:
            for w in watchers:
                if w.pos >= head.last_seq:
                    w.queue.put_nowait(None)
                    self.unwatch(w)

    def _tell_tenant(self, head: RunHead) -> None:
        told = self._seen.get(head.run_id)
        if told is not None and (told.status, told.last_seq) == (head.status, head.last_seq):
            return
        self._seen[head.run_id] = head
        for w in self._tenants[head.tenant]:
            w.queue.put_nowait(head)
