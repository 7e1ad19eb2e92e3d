"""The worker: claims runnable runs with leases, works many at once on asyncio, heartbeats.

A worker holds a run only while working it; a run that waits is released and holds no
memory here. Leases expire when a worker dies; another worker then claims the run and
resumes it from its last committed step. Every commit is fenced by the lease epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from charter._engine.executor import ToolExecutor
from charter._engine.faults import Faults
from charter._engine.loop import RunDriver, abandon
from charter.agents import Agent
from charter.clock import Clock, jitter, new_worker_id, wall_clock
from charter.errors import CharterError, ConflictError, LeaseLost, StoreError
from charter.events import FINAL_STATUSES
from charter.models import Model
from charter.observer import Observer
from charter.store import Claim, EngineStore, RunRecord, WorkerInfo

log = logging.getLogger("charter.worker")

Resolver = Callable[[RunRecord], Awaitable[tuple[Agent, Model]]]


@dataclass
class WorkerReport:
    """What a worker did: each run it worked, with the status it left the run in."""

    worked: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class WorkerOptions:
    concurrency: int = 16
    lease_s: float = 30.0
    poll_s: float = 0.2
    faults: Faults = field(default_factory=Faults)
    give_up_after_s: float | None = None
    """How long the database may stay unusable before the worker stops (None: never)."""
    tool_slots_per_tenant: int = 16
    """Tool attempts of one tenant this worker runs at once (hung ones included), so that one
    tenant's stuck tools cannot take every thread; each tool also has ``max_concurrency``."""
    observer: Observer | None = None
    """Told what each run does, in plain values (``charter.observer``); None: tracing."""


class Outage:
    """Backoff while the database is unusable: 0.5 s doubling to 30 s, with jitter."""

    def __init__(self, limit_s: float | None, clock: Callable[[], float]) -> None:
        self.limit_s = limit_s
        self.clock = clock
        self.started: float | None = None
        self.attempts = 0

    async def wait(self, exc: StoreError) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        if self.limit_s is not None and now - self.started >= self.limit_s:
            raise exc
        self.attempts += 1
        delay = min(30.0, 0.5 * 2 ** (self.attempts - 1)) * jitter(0.75, 1.25)
        log.warning("database unusable (%s); retrying in %.1fs", exc, delay)
        await asyncio.sleep(delay)

    def over(self) -> None:
        if self.started is not None:
            log.info("database usable again after %.1fs", self.clock() - self.started)
        self.started = None
        self.attempts = 0


class Worker:
    def __init__(
        self,
        *,
        store: EngineStore,
        resolve: Resolver,
        options: WorkerOptions | None = None,
        worker_id: str | None = None,
        executor: ToolExecutor | None = None,
        clock: Clock = wall_clock,
        resources: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.resources = dict(resources or {})
        """Handed to every tool call (``ToolContext.resources``)."""
        self.resolve = resolve
        self.options = options or WorkerOptions()
        self.worker_id = worker_id or new_worker_id()
        self.executor = executor or ToolExecutor(
            clock=clock, tenant_slots=self.options.tool_slots_per_tenant
        )
        self.clock = clock
        self._tasks: dict[str, tuple[asyncio.Task[None], int]] = {}
        self._lease_until: dict[str, float] = {}  # by this worker's clock, from claim and renew
        self._lost: set[str] = set()
        self._wake = asyncio.Event()
        self.info = WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.options.concurrency,
            started_at=clock(),
        )

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    async def run(
        self,
        *,
        until_idle: bool = False,
        run_id: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> WorkerReport:
        """Work runs until ``stop`` is set, or until idle, or (with ``run_id``) until it parks."""
        report = WorkerReport()
        heartbeat = asyncio.create_task(self._heartbeat())
        outage = Outage(self.options.give_up_after_s, self.clock)
        registered = False
        try:
            while not (stop and stop.is_set()):
                try:
                    if not registered:  # announce this worker (again, after an outage)
                        await self.store.heartbeat_worker(self.info)
                        registered = True
                    claimed = await self._claim(report, run_id)
                    done = not self._tasks and not claimed and await self._done(until_idle, run_id)
                except StoreError as exc:
                    registered = False
                    await outage.wait(exc)  # raises once the outage lasts too long
                    continue
                outage.over()
                if done:
                    break
                await self._pause(stop)
        finally:
            heartbeat.cancel()
            for task, _ in self._tasks.values():
                task.cancel()
            await asyncio.gather(
                heartbeat, *(t for t, _ in self._tasks.values()), return_exceptions=True
            )
            with contextlib.suppress(CharterError):
                await self.store.remove_worker(self.worker_id)
        return report

    async def _claim(self, report: WorkerReport, run_id: str | None) -> int:
        free = self.options.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        asked = self.clock()
        claims = await self.store.claim(
            self.worker_id, lease_s=self.options.lease_s, limit=free, run_id=run_id
        )
        for claim in claims:
            self._lease_until[claim.run_id] = asked + self.options.lease_s
            task = asyncio.create_task(self._work(claim, report))
            self._tasks[claim.run_id] = (task, claim.epoch)
        return len(claims)

    async def _done(self, until_idle: bool, run_id: str | None) -> bool:
        if run_id is not None:
            record = await self.store.get_run(run_id)
            return record.status in FINAL_STATUSES or record.status == "waiting"
        if until_idle:
            claimable, in_progress = await self.store.work_outlook()
            return claimable == 0 and in_progress == 0
        return False

    async def _pause(self, stop: asyncio.Event | None) -> None:
        """Until a run finishes here, work is announced (this process or the store), a timer
        comes due, or the poll interval passes."""
        timeout = self.options.poll_s
        try:
            due = await self.store.next_ready_at()
        except StoreError:
            due = None  # the next claim meets the outage and backs off
        if due is not None and due > self.clock():  # the next timer, when nothing else is ready
            timeout = min(timeout, due - self.clock())
        waiters = [
            asyncio.create_task(self._wake.wait()),
            asyncio.create_task(self.store.wait_for_work(timeout)),
        ]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        tasks = [t for t, _ in self._tasks.values()]
        try:
            await asyncio.wait([*tasks, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            self._wake.clear()

    async def _work(self, claim: Claim, report: WorkerReport) -> None:
        run_id = claim.run_id
        try:
            record = await self.store.get_run(run_id)
            agent, model = await self.resolve(record)
            driver = RunDriver(
                store=self.store,
                record=record,
                claim=claim,
                agent=agent,
                model=model,
                worker_id=self.worker_id,
                executor=self.executor,
                faults=self.options.faults,
                observer=self.options.observer,
                resources=self.resources,
                clock=self.clock,
                lease_valid=lambda: self.clock() < self._lease_until.get(run_id, 0.0),
                lease_until=lambda: self._lease_until.get(run_id, 0.0),
            )
            state = await driver.drive()
            report.worked[run_id] = state.status
            log.info("%s %s%s", run_id, state.status, f": {state.reason}" if state.reason else "")
        except ConflictError as exc:
            report.errors[run_id] = exc.message
            log.warning("%s: lease lost, another worker has it (%s)", run_id, exc.message)
        except LeaseLost as exc:
            report.errors[run_id] = str(exc)
            log.warning("%s: stopped: %s; the new owner settles it", run_id, exc)
        except asyncio.CancelledError:
            if run_id in self._lost:
                report.errors[run_id] = "lease lost: another worker may own the run"
            raise
        except StoreError as exc:  # the database, not the run: let go and retry later
            report.errors[run_id] = str(exc)
            log.error("%s: %s", run_id, exc)
            with contextlib.suppress(CharterError):
                await self.store.release(self.worker_id, run_id, claim.epoch)
        except Exception as exc:  # the run cannot be worked here: fail it, with the reason
            reason = f"worker error: {type(exc).__name__}: {exc}"
            report.errors[run_id] = reason
            log.error("%s: %s", run_id, reason, exc_info=not isinstance(exc, CharterError))
            try:
                await abandon(self.store, claim, self.worker_id, reason)
            except CharterError as again:
                log.error("%s: could not mark the run failed: %s", run_id, again)
        finally:
            self._tasks.pop(run_id, None)
            self._lease_until.pop(run_id, None)

    async def _heartbeat(self) -> None:
        interval = self.options.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            leases = {run_id: epoch for run_id, (_, epoch) in self._tasks.items()}
            asked = self.clock()  # the renewed leases run from no earlier than this
            try:
                await self.store.heartbeat_worker(self.info)
                lost = (
                    await self.store.renew(self.worker_id, leases, lease_s=self.options.lease_s)
                    if leases
                    else set()
                )
            except CharterError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for run_id in leases.keys() - lost:
                if run_id in self._lease_until:
                    self._lease_until[run_id] = asked + self.options.lease_s
            for run_id in lost:
                entry = self._tasks.get(run_id)
                if entry is not None and await self._taken_over(run_id, leases[run_id]):
                    self._lost.add(run_id)
                    log.warning("%s: lease lost; stopping work on it", run_id)
                    entry[0].cancel()

    async def _taken_over(self, run_id: str, epoch: int) -> bool:
        """A renewal failed: lost to another worker, or released by this one's last commit?"""
        try:
            record = await self.store.get_run(run_id)
        except CharterError:
            return True
        return record.lease_epoch != epoch or record.lease_owner not in (None, self.worker_id)
