"""Declarative tool faults: wrap a tool so it fails, hangs, slows down or answers in a new shape.

A :class:`ToolFault` is data (an eval case names it in YAML); :func:`inject` returns a copy of
the tool whose function misbehaves as told and otherwise calls the real one. The copy keeps the
tool's name, contract and import reference, so the run, its policy and its log see the same
tool; only this process's calls are affected (a worker in another process imports the real
tool). What the runtime then does is the runtime's own behaviour under test:

* ``fail_times: N`` raises :class:`~charter.errors.TransientToolError` on the first N calls
  (each attempt counts): the executor retries with backoff, within the tool's retry policy.
* ``hang_times: N`` makes the first N calls overrun the tool's timeout (``timeout_s``, which
  the fault may lower so that a test need not wait 30 s). ``hang_after_effect`` calls the real
  function first and hangs afterwards: a write whose effect happened but whose answer never
  came (the runtime must reconcile or escalate, never repeat a non-idempotent write).
* ``slow_s`` sleeps before every call (a slow tool that still answers in time).
* ``rename`` / ``drop`` change the shape of the answer (a response schema that changed
  upstream); the answer is then parsed again by the tool's declared output type, as a client
  library would, so an incompatible change surfaces as the tool's own structured error.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from charter.errors import TransientToolError
from charter.tools import Tool


class ToolFault(BaseModel):
    """How one tool misbehaves during one eval case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str
    fail_times: int = Field(0, ge=0)
    hang_times: int = Field(0, ge=0)
    hang_after_effect: bool = False
    timeout_s: float | None = Field(None, gt=0)
    """Lower the tool's timeout for this case (a hang then lasts ``timeout_s + 0.3`` s)."""
    slow_s: float = Field(0.0, ge=0)
    rename: dict[str, str] = {}
    drop: tuple[str, ...] = ()


class _Behaviour:
    """One faulty tool's misbehaviour and the calls it has seen (sync tools run in threads)."""

    def __init__(self, tool: Tool, fault: ToolFault, hang_s: float) -> None:
        self.name = tool.name
        self.fault = fault
        self.hang_s = hang_s
        self.reshape = _reshaper(tool, fault)
        self._calls = 0
        self._lock = threading.Lock()

    def before(self) -> tuple[float, float]:
        """Count a call; raise an injected failure, or return (sleep before, sleep after)."""
        with self._lock:
            self._calls += 1
            n = self._calls
        f = self.fault
        if n <= f.fail_times:
            raise TransientToolError(f"{self.name}: injected failure {n} of {f.fail_times}")
        hang = self.hang_s if f.fail_times < n <= f.fail_times + f.hang_times else 0.0
        if f.hang_after_effect:
            return f.slow_s, hang
        return f.slow_s + hang, 0.0


def inject(tool: Tool, fault: ToolFault) -> Tool:
    """A copy of ``tool`` that misbehaves as ``fault`` says."""
    faulty = copy.copy(tool)
    if fault.timeout_s is not None:
        faulty.timeout_s = fault.timeout_s
    behaviour = _Behaviour(tool, fault, hang_s=faulty.timeout_s + 0.3)
    real = tool.fn
    if tool.is_async:

        @functools.wraps(real)
        async def run_async(**kwargs: Any) -> Any:
            first, then = behaviour.before()
            await asyncio.sleep(first)
            value = await real(**kwargs)
            await asyncio.sleep(then)
            return behaviour.reshape(value)

        faulty.fn = run_async
    else:

        @functools.wraps(real)
        def run_sync(**kwargs: Any) -> Any:
            first, then = behaviour.before()
            time.sleep(first)
            value = real(**kwargs)
            time.sleep(then)
            return behaviour.reshape(value)

        faulty.fn = run_sync
    return faulty


def _reshaper(tool: Tool, fault: ToolFault) -> Callable[[Any], Any]:
    if not fault.rename and not fault.drop:
        return lambda value: value
    declared = get_type_hints(tool.fn).get("return", Any)
    adapter: TypeAdapter[Any] = TypeAdapter(declared)

    def reshape(value: Any) -> Any:
        data = tool.dump_output(value)
        if isinstance(data, dict):
            data = _changed(data, fault)
        elif isinstance(data, list):
            data = [_changed(d, fault) if isinstance(d, dict) else d for d in data]
        return adapter.validate_python(data)  # a client parsing the new shape

    return reshape


def _changed(data: dict[str, Any], fault: ToolFault) -> dict[str, Any]:
    out = {fault.rename.get(k, k): v for k, v in data.items() if k not in fault.drop}
    return out


def apply_faults(tools: list[Tool], faults: tuple[ToolFault, ...] | list[ToolFault]) -> list[Tool]:
    """``tools`` with each named tool replaced by its faulty copy; unknown names are errors."""
    by_name = {t.name: t for t in tools}
    unknown = sorted({f.tool for f in faults} - set(by_name))
    if unknown:
        known = ", ".join(sorted(by_name))
        raise ValueError(f"fault for unknown tool {', '.join(unknown)} (the agent has: {known})")
    for fault in faults:
        by_name[fault.tool] = inject(by_name[fault.tool], fault)
    return [by_name[t.name] for t in tools]


__all__ = ["ToolFault", "apply_faults", "inject"]
