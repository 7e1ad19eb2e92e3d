"""Workers: the processes that claim runs and drive them (``charter worker``, ``Runtime.worker``).

What a worker is given (:class:`WorkerOptions`) and what it reports (:class:`WorkerReport`);
:class:`Outage`, the patient wait for a database that is down or unusable (the worker's own
loop uses it, and so does ``charter worker`` when the database is down at start); and, for
tests and eval suites, :class:`Faults`: SIGKILL (or SIGSTOP) the worker at one of the named
:data:`FAULT_POINTS`. The engine behind them is private (``charter._engine``).
"""

from __future__ import annotations

from charter._engine.faults import FAULT_POINTS, Faults
from charter._engine.worker import Outage, Worker, WorkerOptions, WorkerReport

__all__ = ["FAULT_POINTS", "Faults", "Outage", "Worker", "WorkerOptions", "WorkerReport"]
