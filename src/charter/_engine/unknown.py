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
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Literal

from charter.events import (
    EventBody,
    RunFinished,
    ToolCallReconciled,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
)
from charter.tools import Reconciliation, Tool, ToolContext

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from charter._engine.executor import Outcome
    from charter._engine.state import PendingCall, RunState
    from charter.store import Claim
    from charter.tools import ToolRegistry

Cause = Literal["recovery", "timeout", "connection", "crashed"]


def fencing_token(epoch: int, rounds: int) -> int:
    """Grows with every claim of the run (its lease epoch) and every settlement of the call.

    An attempt made after an unknown outcome always carries a higher token than any earlier
    attempt of the same call, whichever worker made that one.
    """
    return (epoch << 20) | rounds


def _recorded(cause: Cause) -> Literal["recovery", "timeout", "connection"]:
    """The cause as ``tool_outcome_unknown`` records it (a crashed tool process: connection)."""
    return "connection" if cause == "crashed" else cause


MAX_RECALLS = 3
"""Unknown outcomes of one idempotent write settled by calling it again before escalating."""


class UnknownOutcomes:
    """The settling half of ``RunDriver`` (a mixin: it uses the driver's log and tools)."""

    if TYPE_CHECKING:
        tools: ToolRegistry
        claim: Claim
        state: RunState

        def _append(self, body: EventBody) -> None: ...
        def _pending(self, call_id: str) -> PendingCall: ...
        def _context(self, call: PendingCall, key: str | None) -> ToolContext: ...
        def _record_outcome(self, call: PendingCall, outcome: Outcome) -> None: ...

        _invoke: Callable[..., Awaitable[Outcome]]

    async def _settle_unknown(
        self, call: PendingCall, *, cause: Literal["recovery", "timeout", "connection", "crashed"]
    ) -> None:
        """A write may or may not have happened, and no attempt of it is running any more
        (its worker died, or it was stopped). Call it again with the same key if it is
        idempotent; else ask ``reconcile``, and act on "not applied" only if the hook fenced
        the key against every earlier attempt; else escalate. Never guess."""
        tool = self.tools.get(call.tool)
        key = call.idempotency_key or ""
        recorded_cause = _recorded(cause)
        if tool.idempotent:
            if call.rounds >= MAX_RECALLS:
                self._note_unknown(call, key, "escalate", recorded_cause)
                why = f"it was called {call.rounds + 1} times with its key without an answer"
                self._escalate_unknown(call, why)
                return
            self._note_unknown(call, key, "recall", recorded_cause)
            outcome = await self._invoke(self._pending(call.call_id), key)
            if outcome.unknown:  # settled again, with a new round and a higher token
                await self._settle_unknown(
                    self._pending(call.call_id), cause=outcome.cause or "timeout"
                )
            else:
                self._record_outcome(call, outcome)
            return
        if tool.reconcile is None:
            self._note_unknown(call, key, "escalate", recorded_cause)
            self._escalate_unknown(call, "it is not idempotent and has no reconcile hook")
            return
        self._note_unknown(call, key, "reconcile", recorded_cause)
        call = self._pending(call.call_id)
        verdict, problem = await self._reconcile(tool, call, key)
        token = fencing_token(self.claim.epoch, call.rounds)
        self._append(
            ToolCallReconciled(
                call_id=call.call_id,
                tool=call.tool,
                idempotency_key=key,
                applied=verdict.applied,
                fenced=verdict.fenced,
                fencing_token=token,
                error=problem,
            )
        )
        if verdict.applied is True:
            self._append(
                ToolCallSucceeded(
                    call_id=call.call_id,
                    tool=call.tool,
                    output=verdict.output,
                    via="reconcile",
                    cost_usd=tool.cost_usd,  # the call that landed was never charged
                    untrusted=tool.untrusted_output,
                )
            )
        elif verdict.applied is False and verdict.fenced:
            outcome = await self._invoke(call, key)
            if outcome.unknown:  # on record as data, not only in the escalation's reason
                self._note_unknown(call, key, "escalate", _recorded(outcome.cause or "timeout"))
                self._escalate_unknown(call, "its outcome is unknown again after reconciliation")
            else:
                self._record_outcome(call, outcome)
        elif verdict.applied is False:
            self._escalate_unknown(
                call,
                "reconcile found no effect but cannot fence the key against an earlier attempt"
                " that may still land",
            )
        else:
            self._escalate_unknown(call, "reconcile could not tell whether it happened")

    def _note_unknown(
        self,
        call: PendingCall,
        key: str,
        resolution: Literal["recall", "reconcile", "escalate"],
        cause: Literal["recovery", "timeout", "connection"],
    ) -> None:
        self._append(
            ToolOutcomeUnknown(
                call_id=call.call_id,
                tool=call.tool,
                idempotency_key=key,
                resolution=resolution,
                fencing_token=fencing_token(self.claim.epoch, call.rounds + 1),
                cause=cause,
            )
        )

    async def _reconcile(
        self, tool: Tool, call: PendingCall, key: str
    ) -> tuple[Reconciliation, str | None]:
        """The hook's answer, and why it gave none that can be used."""
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
            return Reconciliation(applied=None), f"no answer within {tool.timeout_s:g}s"
        except Exception as exc:
            return Reconciliation(applied=None), f"{type(exc).__name__}: {exc}"
        if not isinstance(result, Reconciliation):
            return Reconciliation(applied=None), f"returned {type(result).__name__}"
        try:
            output = tool.dump_output(result.output)
        except Exception:
            output = repr(result.output)
        return Reconciliation(applied=result.applied, output=output, fenced=result.fenced), None

    def _escalate_unknown(self, call: PendingCall, why: str) -> None:
        reason = (
            f"outcome of write call {call.call_id} ({call.tool}, idempotency key"
            f" {call.idempotency_key}) is unknown and {why}; a human must check"
        )
        self._append(RunFinished(status="escalated", reason=reason))
