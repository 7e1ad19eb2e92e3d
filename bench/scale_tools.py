"""The tool of ``bench/scale_out.py``: an I/O-bound read that waits, as a real tool call would.

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
