"""A refund tool for the fencing tests: the demo's, but able to freeze its worker mid-call.

In a worker started with ``CHARTER_TEST_FREEZE_IN_REFUND=1`` the first refund call stops the
whole process (SIGSTOP) once the call is under way (the intent committed, the lease checked,
the tool running) and before the demo refund's own ``ctx.ensure_lease()`` and billing: the
worker is frozen, or cut off, in the middle of a non-idempotent write. When the test
continues it (SIGCONT) the call goes on.

With ``CHARTER_TEST_FREEZE_IN_REFUND=after_lease`` it freezes *after* its own lease check,
with the payment request already on its way: on waking it sends it, as a paused VM would.
Only billing's fence (the fencing token) can turn that request away.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import charter
from charter import ToolContext
from charter.demo import tools as demo

FREEZE_ENV = "CHARTER_TEST_FREEZE_IN_REFUND"
FENCED_OUT_FILE = "fenced-out.txt"
"""Written in the worker's directory when billing turned the frozen worker's request away."""
_froze = False


@charter.tool(effect="write", risk="high", owner="billing", idempotent=False, timeout_s=3.0)
def refund(ctx: ToolContext, order_id: str, amount: float, reason: str = "") -> demo.Refund:
    """Refund part or all of an order to the customer's card (amount in EUR)."""
    global _froze
    if os.environ.get(FREEZE_ENV) == "after_lease" and not _froze:
        _froze = True
        ctx.ensure_lease()  # passes: this worker still owns the run
        # The request is on its way before the process stops: it is sent from a thread started
        # now, which the freeze catches mid-flight and which the interpreter waits for at exit,
        # as bytes already on the wire would still arrive however the worker ends.
        sent: dict[str, object] = {}

        def send() -> None:
            time.sleep(0.5)  # in flight: the process is stopped during this
            try:
                sent["made"] = demo.systems(ctx).refund(
                    order_id, amount, ctx.idempotency_key, ctx.run_id, reason=reason,
                    fencing_token=ctx.fencing_token,
                )  # fmt: skip
            except demo.SystemsError as exc:
                Path(FENCED_OUT_FILE).write_text(str(exc))  # for the test: billing refused it
                sent["error"] = exc

        request = threading.Thread(target=send, name="refund-request")  # not a daemon
        request.start()
        os.kill(os.getpid(), signal.SIGSTOP)
        request.join()
        if "error" in sent:
            raise demo.ToolError(str(sent["error"]))
        return demo.Refund.model_validate(sent["made"])
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
