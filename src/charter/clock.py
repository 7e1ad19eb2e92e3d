"""The wall clock, ids and randomness: the one module of the library that reads them.

Code that decides takes them as parameters (a ``clock`` callable, a :class:`Random`) with the
defaults below, so that tests and replay can hand it a fixed clock and a seeded generator.
ruff's banned-api rule (``TID251`` in ``pyproject.toml``) keeps ``time.time``, ``uuid.uuid4``
and ``random`` out of every other module of the library (tests, benchmarks and
``charter.testing``, which simulates the outside world and its own clock, may use them).

Durations are measured with ``time.monotonic`` where they are taken; that is not a reading
of the wall clock and is not routed through here.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from random import Random

__all__ = [
    "Clock",
    "Random",
    "jitter",
    "new_random",
    "new_run_id",
    "new_worker_id",
    "trace_id_for",
    "wall_clock",
]

Clock = Callable[[], float]
"""Seconds since the epoch, like ``time.time``."""

wall_clock: Clock = time.time
"""The wall clock: the default ``clock`` of every part that takes one."""


def new_run_id(clock: Clock = wall_clock) -> str:
    """Time-ordered and unique: 12 hex digits of milliseconds, 8 random."""
    return f"run_{int(clock() * 1000):012x}{secrets.token_hex(4)}"


def new_cancel_id(clock: Clock = wall_clock) -> str:
    """A request to cancel a run: time-ordered and unique, like a run id."""
    return f"cancel_{int(clock() * 1000):012x}{secrets.token_hex(4)}"


def new_worker_id() -> str:
    """This process's worker id: host, pid and 6 random hex digits."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def trace_id_for(run_id: str) -> str:
    """The run's trace id, 32 hex digits: the first 128 bits of ``sha256(run_id)`` (never 0).

    Derived, not random: anyone holding a run id can compute its trace id
    (:mod:`charter.telemetry`, :attr:`charter.tools.ToolContext.trace_id`)."""
    value = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big") or 1
    return f"{value:032x}"


def new_random(seed: int | None = None) -> Random:
    """A generator of its own: seeded for a reproducible sequence (replay), else from the OS."""
    return Random(seed)


def jitter(low: float, high: float) -> float:
    """A uniform random factor in [low, high] for spreading retries (the process's generator)."""
    return random.uniform(low, high)


def new_delivery_id() -> str:
    """A notification delivery (its ``Charter-Delivery`` header): unique, for dedupe."""
    return f"dlv_{uuid.uuid4().hex}"
