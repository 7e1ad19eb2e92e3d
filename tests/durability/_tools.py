"""A refund tool for the fencing tests: the demo's, but able to freeze its worker mid-call.

In a worker started with ``CHARTER_TEST_FREEZE_IN_REFUND=1`` the first refund call stops the
whole process (SIGSTOP) once the call is under way (the intent committed, the lease checked,
the tool running) and before the demo refund's own ``ctx.ensure_lease()`` and billing: the
worker is frozen, or cut off, in the middle of a non-idempotent write. When the test
continues it (SIGCONT) the call goes on.
"""

from __future__ import annotations

import os
import signal
import time

import charter
from charter import ToolContext
from charter.demo import tools as demo

FREEZE_ENV = "CHARTER_TEST_FREEZE_IN_REFUND"
_froze = False


@charter.tool(effect="write", risk="high", owner="billing", idempotent=False, timeout_s=3.0)
def refund(ctx: ToolContext, order_id: str, amount: float, reason: str = "") -> demo.Refund:
    """Refund part or all of an order to the customer's card (amount in EUR)."""
    global _froze
    if os.environ.get(FREEZE_ENV) == "1" and not _froze:
        _froze = True
        os.kill(os.getpid(), signal.SIGSTOP)
        # A process-wide stop reaches this thread when it next enters the kernel: make that
        # happen here, so the freeze lands before the refund's lease check, every time.
        time.sleep(0.05)
    made: demo.Refund = demo.refund.fn(ctx, order_id, amount, reason)
    return made


assert demo.refund.reconcile is not None
refund.reconciler(demo.refund.reconcile)  # asks billing for the key, as the demo's does
