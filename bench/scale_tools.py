"""The tools of the benchmarks: an I/O-bound read that waits, as a real tool call would
(``bench/scale_out.py``), and no-op tools in each execution mode (``bench/tool_execution.py``).

The benchmark's worker processes import it by reference (``scale_tools:io_wait``), so they run
with this directory on ``PYTHONPATH``; the benchmark imports it as the top-level module
``scale_tools`` for the reference to match.
"""

from __future__ import annotations

import asyncio

from charter import tool


@tool(effect="read")
async def io_wait(ms: float) -> dict[str, float]:
    """Wait ``ms`` milliseconds without using the CPU (like an HTTP call), then answer."""
    await asyncio.sleep(ms / 1000)
    return {"waited_ms": ms}


@tool(effect="read")
async def noop_async(n: int) -> int:
    """Answer at once (``bench/tool_execution.py``)."""
    return n


@tool(effect="read")
def noop_thread(n: int) -> int:
    """Answer at once, from a thread."""
    return n


@tool(effect="read", execution="process")
def noop_process(n: int) -> int:
    """Answer at once, from a child process."""
    return n
