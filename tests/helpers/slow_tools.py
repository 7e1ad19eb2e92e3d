"""Tools that overrun their timeouts, for the timeout and fencing tests.

Each writes to a *ledger* (a SQLite file named in its arguments, as an external system would
keep one): a row when an attempt starts and when it ends, so a test can count effects and see
whether two attempts of one call ever overlapped, across threads and processes alike.
They are importable by reference, so they also run in child processes (``execution="process"``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from charter import Reconciliation, RetryPolicy, ToolContext, tool

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT,"
    " event TEXT, token INTEGER, at REAL)"
)
FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
RELEASE = threading.Event()
"""Set by a test to let every hung thread of this process go on."""


def _ledger(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(_SCHEMA)
    return conn


def note(path: str, key: str | None, event: str, token: int = 0) -> None:
    conn = _ledger(path)
    try:
        conn.execute(
            "INSERT INTO attempts (key, event, token, at) VALUES (?, ?, ?, ?)",
            (key, event, token, time.time()),
        )
    finally:
        conn.close()


def rows(path: str) -> list[tuple[str, str, int]]:
    """(key, event, token) in the order they happened."""
    if not Path(path).exists():
        return []
    conn = _ledger(path)
    try:
        found = conn.execute("SELECT key, event, token FROM attempts ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(str(k), str(e), int(t)) for k, e, t in found]


def effects(path: str) -> list[str]:
    """The keys of the effects that happened ("effect" rows)."""
    return [k for k, e, _ in rows(path) if e == "effect"]


def most_at_once(path: str) -> int:
    """The most attempts of one key that were running at the same time."""
    running: dict[str, int] = {}
    most = 0
    for key, event, _ in rows(path):
        if event == "start":
            running[key] = running.get(key, 0) + 1
            most = max(most, running[key])
        elif event == "end":
            running[key] -= 1
    return most


def _first(path: str, key: str | None) -> bool:
    return sum(1 for k, e, _ in rows(path) if k == key and e == "start") == 1


@tool(effect="write", idempotent=True, timeout_s=0.3, retry=FAST)
def slow_pay(ctx: ToolContext, ledger: str, seconds: float) -> str:
    """A payment whose every attempt takes ``seconds`` (past its timeout) and then lands."""
    note(ledger, ctx.idempotency_key, "start")
    time.sleep(seconds)
    note(ledger, ctx.idempotency_key, "effect")
    note(ledger, ctx.idempotency_key, "end")
    return f"paid with key {ctx.idempotency_key}"


@tool(effect="write", idempotent=False, timeout_s=0.3, retry=FAST)
def slow_pay_once(ctx: ToolContext, ledger: str, seconds: float) -> str:
    """The same payment, not idempotent."""
    made: str = slow_pay.fn(ctx, ledger, seconds)
    return made


@tool(effect="write", idempotent=True, timeout_s=0.3, retry=FAST)
async def async_pay(ctx: ToolContext, ledger: str, seconds: float) -> str:
    """An async payment whose first attempt hangs for ``seconds``; later ones answer at once."""
    note(ledger, ctx.idempotency_key, "start")
    try:
        if _first(ledger, ctx.idempotency_key):
            await asyncio.sleep(seconds)
        note(ledger, ctx.idempotency_key, "effect")
    finally:
        note(ledger, ctx.idempotency_key, "end")
    return f"paid with key {ctx.idempotency_key}"


@tool(effect="write", idempotent=True, timeout_s=0.5, retry=FAST, execution="process")
def hung_pay(ctx: ToolContext, ledger: str) -> str:
    """In a child process: the first attempt hangs for good, later ones land at once."""
    note(ledger, ctx.idempotency_key, "start")
    if _first(ledger, ctx.idempotency_key):
        time.sleep(3600)
    note(ledger, ctx.idempotency_key, "effect")
    note(ledger, ctx.idempotency_key, "end")
    return f"paid with key {ctx.idempotency_key}"


@tool(effect="write", idempotent=False, timeout_s=0.5, retry=FAST, execution="process")
def hung_charge(ctx: ToolContext, ledger: str) -> str:
    """Not idempotent, in a child process: the first attempt hangs for good.

    The ledger refuses an attempt whose fencing token is below the key's fence.
    """
    note(ledger, ctx.idempotency_key, "start", ctx.fencing_token)
    if _first(ledger, ctx.idempotency_key):
        time.sleep(3600)
    fences = [t for k, e, t in rows(ledger) if k == ctx.idempotency_key and e == "fence"]
    if fences and ctx.fencing_token < max(fences):
        raise RuntimeError("stale fencing token: refused")
    note(ledger, ctx.idempotency_key, "effect", ctx.fencing_token)
    note(ledger, ctx.idempotency_key, "end")
    return f"charged with key {ctx.idempotency_key}"


@hung_charge.reconciler
def _charge_happened(ctx: ToolContext, arguments: dict[str, object]) -> Reconciliation:
    """Check and fence: no effect for the key yet, so refuse every lower token from now on."""
    ledger = str(arguments["ledger"])
    if ctx.idempotency_key in effects(ledger):
        return Reconciliation(applied=True, output="charged earlier")
    note(ledger, ctx.idempotency_key, "fence", ctx.fencing_token)
    return Reconciliation(applied=False, fenced=True)


@tool(effect="write", idempotent=False, timeout_s=0.5, retry=FAST, execution="process")
def hung_charge_unfenced(ctx: ToolContext, ledger: str) -> str:
    """Like ``hung_charge``, with a reconcile hook that can look but not fence."""
    made: str = hung_charge.fn(ctx, ledger)
    return made


@hung_charge_unfenced.reconciler
def _charge_seen(ctx: ToolContext, arguments: dict[str, object]) -> Reconciliation:
    return Reconciliation(applied=ctx.idempotency_key in effects(str(arguments["ledger"])))


@tool(effect="read", timeout_s=0.2, retry=RetryPolicy(max_attempts=1), max_concurrency=64)
def stuck_lookup(order_id: str) -> str:
    """A read that hangs until the test sets ``RELEASE`` (in a thread, it cannot be stopped)."""
    RELEASE.wait()
    return f"order {order_id}"


@tool(effect="read", timeout_s=5.0)
def quick_lookup(order_id: str) -> str:
    """A read that answers at once."""
    return f"order {order_id} is fine"


@tool(effect="write", idempotent=True, timeout_s=5.0, execution="process")
def leased_write(ctx: ToolContext, ledger: str) -> str:
    """Checks its lease in the child process before it writes."""
    ctx.ensure_lease()
    note(ledger, ctx.idempotency_key, "effect")
    return "written"
