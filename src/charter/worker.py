"""Workers: the processes that claim runs and drive them (``charter worker``, ``Runtime.worker``).

What a worker is given (:class:`WorkerOptions`) and what it reports (:class:`WorkerReport`);
:class:`Outage`, the patient wait for a database that is down or unusable (the worker's own
loop uses it, and so does ``charter worker`` when the database is down at start); and, for
tests and eval suites, :class:`Faults`: SIGKILL (or SIGSTOP) the worker at one of the named
:data:`FAULT_POINTS`. The engine behind them is private (``charter._engine``).

:func:`run_worker` is a worker process's one call (``charter worker``): open the database,
waiting for it if it is down, and work runs until stopped or idle.
"""

from __future__ import annotations

import asyncio
import logging

from charter._engine.faults import FAULT_POINTS, Faults
from charter._engine.worker import Outage, Worker, WorkerOptions, WorkerReport
from charter.clock import wall_clock
from charter.errors import StoreError
from charter.redaction import redact_url
from charter.runtime import Runtime
from charter.schedules import tick_forever

log = logging.getLogger(__name__)


async def run_worker(
    url: str,
    options: WorkerOptions | None = None,
    *,
    until_idle: bool = False,
    stop: asyncio.Event | None = None,
    tick_s: float | None = None,
) -> WorkerReport:
    """Open a runtime on ``url`` and work its runs until ``stop`` is set or (``until_idle``)
    nothing is runnable. A database that is down at start is waited for like one that goes
    away later: for ``options.give_up_after_s`` seconds (None: for ever). ``tick_s``: also
    start due schedule ticks every ``tick_s`` seconds (:mod:`charter.schedules`)."""
    options = options or WorkerOptions()
    outage = Outage(options.give_up_after_s, wall_clock)
    while True:
        try:
            rt = Runtime.open(url)
        except StoreError as exc:
            await outage.wait(exc)
            continue
        async with rt:
            worker = rt.worker(options)
            log.info("worker %s on %s", worker.worker_id, redact_url(url))
            if tick_s is None:
                return await worker.run(until_idle=until_idle, stop=stop)
            ticking = asyncio.Event()
            ticker = asyncio.create_task(tick_forever(rt, tick_s, ticking))
            try:
                return await worker.run(until_idle=until_idle, stop=stop)
            finally:
                ticking.set()
                await ticker


__all__ = [
    "FAULT_POINTS",
    "Faults",
    "Outage",
    "Worker",
    "WorkerOptions",
    "WorkerReport",
    "run_worker",
]
