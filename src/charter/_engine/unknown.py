"""Unknown outcomes of writes: the rule that settles them, and fencing tokens.

A write's outcome is unknown when its intent is committed but no result is: the worker died
in between (``recovery``), or an attempt was stopped at its timeout (a killed child process, a
cancelled coroutine), or the connection broke after the request may have left. By then no
attempt of the call is running any more (a thread that cannot be stopped is waited for
instead, see ``_engine/attempts.py``). The rule, in order:

1. an idempotent tool is called again with the same key (up to ``MAX_RECALLS`` times);
2. a tool with a ``reconcile`` hook is asked; "applied" settles the call, "not applied" is
   acted on (the call made again) only when the hook *fenced* the key against every earlier
   attempt (``Reconciliation.fenced``), since a frozen worker's request may still land;
3. anything else escalates the run to a human, naming the call and its key.

Every answer is on record: ``tool_outcome_unknown`` (cause, resolution, the new fencing
token) and ``tool_call_reconciled`` (applied, fenced, token, or why the hook gave no answer).
The rule is the decider's (pure); this module performs what it asks: the call again, the hook.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Literal

from charter._engine import decider
from charter._engine.decider import Recall, Reconcile, Verdict
from charter.tools import Reconciliation, Tool, ToolContext

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from charter._engine.decider import Outcome
    from charter._engine.state import PendingCall, RunState
    from charter.events import EventBody
    from charter.store import Claim
    from charter.tools import ToolRegistry

Cause = Literal["recovery", "timeout", "connection", "crashed"]


class UnknownOutcomes:
    """The settling half of the effect shell (a mixin of ``RunDriver``: it uses the driver's log
    and tools). The rule itself is the decider's (:func:`charter._engine.decider.settle`)."""

    if TYPE_CHECKING:
        tools: ToolRegistry
        claim: Claim
        state: RunState

        def _append_all(self, bodies: tuple[EventBody, ...]) -> None: ...
        def _pending(self, call_id: str) -> PendingCall: ...
        def _context(self, call: PendingCall, key: str | None) -> ToolContext: ...
        def _record_outcome(self, call: PendingCall, outcome: Outcome) -> None: ...

        _invoke: Callable[..., Awaitable[Outcome]]

    async def _settle_unknown(self, call: PendingCall, *, cause: Cause) -> None:
        """A write may or may not have happened, and no attempt of it is running any more
        (its worker died, or it was stopped): settle it by the rule, never by a guess."""
        tool = self.tools.get(call.tool)
        key = call.idempotency_key or ""
        epoch = self.claim.epoch
        events, then = decider.settle(call, tool, cause=cause, epoch=epoch)
        self._append_all(events)
        if isinstance(then, Recall):
            outcome = await self._invoke(self._pending(then.call_id), key)
            if outcome.unknown:  # settled again, with a new round and a higher token
                again = self._pending(then.call_id)
                await self._settle_unknown(again, cause=outcome.cause or "timeout")
            else:
                self._record_outcome(call, outcome)
        elif isinstance(then, Reconcile):
            call = self._pending(then.call_id)
            verdict = await self._reconcile(tool, call, key)
            events, recall = decider.after_reconcile(call, tool, verdict, epoch=epoch)
            self._append_all(events)
            if recall is None:
                return
            outcome = await self._invoke(call, key)
            if outcome.unknown:  # on record as data, not only in the escalation's reason
                cause_again = outcome.cause or "timeout"
                self._append_all(
                    decider.unknown_after_reconcile(call, cause=cause_again, epoch=epoch)
                )
            else:
                self._record_outcome(call, outcome)

    async def _reconcile(self, tool: Tool, call: PendingCall, key: str) -> Verdict:
        """The hook's answer, or why it gave none that can be used."""
        assert tool.reconcile is not None
        ctx = self._context(call, key)
        try:
            if inspect.iscoroutinefunction(tool.reconcile):
                result = await asyncio.wait_for(tool.reconcile(ctx, call.arguments), tool.timeout_s)
            else:
                result = await asyncio.wait_for(
                    asyncio.to_thread(tool.reconcile, ctx, call.arguments), tool.timeout_s
                )
        except TimeoutError:
            return Verdict(applied=None, problem=f"no answer within {tool.timeout_s:g}s")
        except Exception as exc:
            return Verdict(applied=None, problem=f"{type(exc).__name__}: {exc}")
        if not isinstance(result, Reconciliation):
            return Verdict(applied=None, problem=f"returned {type(result).__name__}")
        try:
            output = tool.dump_output(result.output)
        except Exception:
            output = repr(result.output)
        return Verdict(applied=result.applied, output=output, fenced=result.fenced)
