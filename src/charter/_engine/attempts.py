"""One attempt of a tool call, run where its contract says, and stopped at its timeout if it can be.

Three places, three meanings of a timeout:

* **async** tools run on the worker's event loop; at the timeout the coroutine is cancelled,
  and the attempt has ended once the cancellation has unwound.
* **thread** (sync tools, the default): a thread of the worker's own, never the event loop's
  shared pool. A thread cannot be stopped: past its timeout the attempt is *overdue*. The
  caller decides what that means (a read is abandoned, a write is waited for); the thread
  keeps its concurrency slot until it really ends, and the process never waits for it at exit.
* **process** (``@tool(execution="process")``): a tool process of the worker's
  :class:`ProcessPool` (children of multiprocessing's ``forkserver``, kept warm between calls),
  killed with SIGKILL at the timeout and reaped, so the attempt has ended when the caller
  hears of it.

Every attempt first takes a slot of its tool (``Tool.max_concurrency``) and of its tenant
(:class:`Slots`), so hung attempts of one tool or one tenant cannot take every thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

from charter.clock import wall_clock
from charter.errors import CharterError, LeaseLost, ToolError, TransientToolError
from charter.tools import Tool, ToolContext, import_tool

log = logging.getLogger("charter.tools")

Execution = Literal["thread", "process", "async"]
Kind = Literal["ok", "transient", "timeout", "connection", "tool_error", "raised", "crashed"]


@dataclass(frozen=True, slots=True)
class Ended:
    """How an attempt ended: its kind, and the output (``ok``) or the error's code and text."""

    kind: Kind
    output: Any = None
    code: str = ""
    message: str = ""
    overdue: bool = False
    """It ran past its timeout and was waited for (a thread)."""


@dataclass(frozen=True, slots=True)
class Overdue:
    """An attempt past its timeout that cannot be stopped (reported to the caller)."""

    tool: Tool
    ctx: ToolContext
    timeout_s: float
    waiting: bool


OverdueHook = Callable[[Overdue], Any]


def classify(exc: BaseException, timeout_s: float) -> Ended:
    """What an exception raised by a tool says about its effect."""
    if isinstance(exc, TransientToolError):
        return Ended("transient", code=exc.code, message=str(exc))
    if isinstance(exc, TimeoutError):
        return Ended("timeout", code="timeout", message=f"no answer within {timeout_s:g}s")
    if isinstance(exc, ConnectionError):
        return Ended("connection", code="connection", message=str(exc))
    if isinstance(exc, ToolError | CharterError):
        return Ended("tool_error", code=exc.code, message=exc.message)
    return Ended("raised", code="tool_raised", message=f"{type(exc).__name__}: {exc}")


def finish(tool: Tool, value: Any) -> Ended:
    """A returned value as plain JSON data once it matches the tool's declared return type;
    else a definite failure, ``output_invalid``."""
    try:
        return Ended("ok", output=tool.check_output(value))
    except ValueError as exc:
        return Ended("raised", code="output_invalid", message=str(exc))


# -- slots ------------------------------------------------------------------------------------


class Slots:
    """Counted slots per tool and per tenant, released when an attempt really ends.

    A release may come from a tool's thread (``release_threadsafe``); waiters recheck on
    every release.
    """

    def __init__(self, *, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._used: dict[tuple[str, str], int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def _free(self, tool: Tool, tenant: str) -> bool:
        return (
            self._used.get(("tool", tool.name), 0) < tool.max_concurrency
            and self._used.get(("tenant", tenant), 0) < self.per_tenant
        )

    def in_use(self, tool: Tool, tenant: str) -> tuple[int, int]:
        return self._used.get(("tool", tool.name), 0), self._used.get(("tenant", tenant), 0)

    async def acquire(self, tool: Tool, tenant: str, timeout_s: float) -> bool:
        """Take one slot of ``tool`` and of ``tenant``; False when none freed up in time."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        while not self._free(tool, tenant):
            left = give_up - loop.time()
            if left <= 0:
                return False
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        for key in (("tool", tool.name), ("tenant", tenant)):
            self._used[key] = self._used.get(key, 0) + 1
        return True

    def release(self, tool: Tool, tenant: str) -> None:
        for key in (("tool", tool.name), ("tenant", tenant)):
            left = self._used.get(key, 0) - 1
            if left > 0:
                self._used[key] = left
            else:
                self._used.pop(key, None)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


# -- threads ----------------------------------------------------------------------------------


class ToolThreads:
    """Daemon threads for sync tools: an idle one takes the next call, else a new one starts.

    Never the event loop's shared pool (a hung tool there starves everything that uses it),
    and never joined at exit (``charter run`` returns when its run is done, not when an
    abandoned thread is). Up to ``keep_idle`` threads wait for work; the others end.
    """

    def __init__(self, *, keep_idle: int = 8) -> None:
        self.keep_idle = keep_idle
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], str]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None], *, name: str) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1  # that idle thread will take this job
        self._jobs.put((job, name))
        if start:
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        me = threading.current_thread()
        while True:
            job, name = self._jobs.get()
            me.name = name
            job()
            me.name = "charter-tool-idle"
            with self._lock:
                if self._idle >= self.keep_idle:
                    return
                self._idle += 1


# -- the three places -------------------------------------------------------------------------


async def run_async(tool: Tool, kwargs: dict[str, Any], timeout_s: float) -> Ended:
    """On the event loop; cancelled at the timeout (then the attempt has ended)."""
    try:
        async with asyncio.timeout(timeout_s):
            value = await tool.fn(**kwargs)
    except LeaseLost:
        raise
    except Exception as exc:
        return classify(exc, timeout_s)
    return finish(tool, value)


async def run_thread(
    tool: Tool,
    ctx: ToolContext,
    kwargs: dict[str, Any],
    timeout_s: float,
    *,
    threads: ToolThreads,
    wait_past_timeout: bool,
    on_overdue: OverdueHook | None,
    on_end: Callable[[], None],
) -> Ended:
    """In a thread of its own. Past the timeout: wait for it (``wait_past_timeout``), or
    abandon it. ``on_end`` runs on the event loop when the thread really ends."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[Ended] = loop.create_future()
    started = time.monotonic()

    def settle(result: Ended | BaseException) -> None:
        on_end()
        if ended.done():  # abandoned: the caller moved on; say when it ended after all
            outcome = "" if isinstance(result, BaseException) else f" ({result.kind})"
            log.warning(
                "run %s: %s call %s ended%s %.1fs after it started, abandoned past its %gs timeout",
                ctx.run_id,
                tool.name,
                ctx.call_id,
                outcome,
                time.monotonic() - started,
                timeout_s,
            )
        elif isinstance(result, BaseException):
            ended.set_exception(result)
        else:
            ended.set_result(result)

    def target() -> None:
        result: Ended | BaseException
        try:
            result = finish(tool, tool.fn(**kwargs))
        except LeaseLost as exc:
            result = exc
        except Exception as exc:
            result = classify(exc, timeout_s)
        with contextlib.suppress(RuntimeError):  # the loop is gone: the process is exiting
            loop.call_soon_threadsafe(settle, result)

    threads.submit(target, name=f"charter-tool-{tool.name}")
    try:
        return await asyncio.wait_for(asyncio.shield(ended), timeout_s)
    except TimeoutError:
        pass
    report = Overdue(tool=tool, ctx=ctx, timeout_s=timeout_s, waiting=wait_past_timeout)
    log.warning(
        "run %s: %s call %s (attempt %d) is still running past its %gs timeout; a thread"
        " cannot be stopped: %s",
        ctx.run_id,
        tool.name,
        ctx.call_id,
        ctx.attempt,
        timeout_s,
        "waiting for it to end" if wait_past_timeout else "abandoned",
    )
    if on_overdue is not None:
        await _maybe_await(on_overdue(report))
    if not wait_past_timeout:
        ended.cancel()  # the thread's end is only logged now
        return Ended("timeout", code="timeout", message=f"no answer within {timeout_s:g}s")
    result = await ended
    return dataclasses.replace(result, overdue=True)


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value):
        await value


_context: Any = None


def _processes() -> Any:
    """The forkserver context (its server starts on first use, with Charter imported)."""
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["charter.tools", "charter._engine.attempts"])
        _context = context
    return _context


def _serve(conn: Connection, lease: Any) -> None:
    """A tool process: take calls one at a time, send back how each ended, until closed."""
    while True:
        try:
            ref, arguments, fields, timeout_s = conn.recv()
        except (EOFError, OSError):
            return
        result: Ended | tuple[str, str]
        try:
            tool = import_tool(ref)
            ctx = ToolContext(**fields, lease_valid=lambda: wall_clock() < lease.value)
            kwargs = tool.bind(ctx, arguments)
            if tool.is_async:
                result = finish(tool, asyncio.run(tool.fn(**kwargs)))
            else:
                result = finish(tool, tool.fn(**kwargs))
        except LeaseLost as exc:
            result = ("lease_lost", str(exc))
        except Exception as exc:
            result = classify(exc, timeout_s)
        conn.send(result)


@dataclass(eq=False)
class _Child:
    proc: Any
    conn: Connection
    lease: Any

    def stop(self) -> None:
        self.conn.close()
        if self.proc.is_alive():
            self.proc.kill()


class ProcessPool:
    """Tool processes of one worker: each runs one call at a time and is killed (and replaced
    on demand) when a call passes its timeout. Idle ones are kept for the next call, so a call
    costs a round trip, not a process start."""

    def __init__(self, *, keep_idle: int = 4) -> None:
        self.keep_idle = keep_idle
        self._idle: list[_Child] = []

    async def _start(self) -> _Child:
        context = _processes()
        lease = context.Value("d", 0.0, lock=False)
        mine, theirs = context.Pipe(duplex=True)
        proc = context.Process(target=_serve, args=(theirs, lease), daemon=True)
        proc.name = "charter-tool-process"
        await asyncio.to_thread(proc.start)
        theirs.close()
        return _Child(proc=proc, conn=mine, lease=lease)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for child in idle:
            child.stop()

    async def run(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: dict[str, Any],
        timeout_s: float,
        *,
        lease_until: Callable[[], float] | None,
    ) -> Ended:
        """Run one call in a tool process; kill the process at the timeout.

        The child's ``ensure_lease`` reads the lease deadline from shared memory, which this
        side refreshes while it waits (a renewal reaches the child; a frozen worker's does not).
        """
        child = self._idle.pop() if self._idle else await self._start()
        child.lease.value = lease_until() if lease_until else float("inf")
        fields = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)}
        fields.pop("lease_valid")
        done = False
        try:
            child.conn.send((tool.ref, arguments, fields, timeout_s))
            if not await _readable(child, timeout_s, lease_until):
                return Ended("timeout", code="timeout", message=f"killed after {timeout_s:g}s")
            try:
                result = child.conn.recv()
            except (EOFError, OSError):
                message = f"the process running {tool.name} died before it answered"
                return Ended("crashed", code="tool_crashed", message=message)
            done = True
        finally:
            if done and len(self._idle) < self.keep_idle:
                self._idle.append(child)
            else:  # killed at the timeout, dead, cancelled, or one too many
                child.stop()
                await asyncio.to_thread(child.proc.join, 10.0)
        if isinstance(result, tuple):
            raise LeaseLost(result[1])
        assert isinstance(result, Ended)
        return result


async def _readable(
    child: _Child, timeout_s: float, lease_until: Callable[[], float] | None
) -> bool:
    """Wait for the child's answer (or its death); False at the timeout."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    fd = child.conn.fileno()
    loop.add_reader(fd, on_readable)
    give_up = loop.time() + timeout_s
    try:
        while not readable.done():
            left = give_up - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(readable), min(0.2, left))
            if lease_until is not None:
                child.lease.value = lease_until()
        return True
    finally:
        loop.remove_reader(fd)
