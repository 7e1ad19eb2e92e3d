"""A recorded run, served back to the real run loop: the parts of ``charter replay``.

The replay drives the real effect shell (:class:`~charter._engine.loop.RunDriver`) through
:class:`RecordedPort`, once per *drive* of the
original (the first claim, then one per ``run_resumed``). Everything the loop asks the outside
world is answered from the log, by the loop's position in it (the sequence number of the last
event it appended, :attr:`Cursor.pos`):

* the clock reads the recorded time of the event at that position, so events come out with
  their original times;
* the inbox holds the messages the log shows taken right after that position;
* tool calls get the outcome recorded for their call id (:class:`ReplayExecutor`); reconcile
  and preview hooks answer what the log recorded;
* kill switches, counters (rate limits, spending) and approval decisions are what the fields
  of the log's events say the original saw there (``KillSwitchSeen``, ``CounterReading``,
  ``budget_exceeded``, ``approval_decided``); a time budget's check reads the clock reading
  recorded on its ``budget_exceeded``.

Nothing here reads a reason or a message: a log of an older Charter that keeps an answer only
in prose raises :class:`~charter.errors.ReplayUnavailableError` where the replay needs it.

Where the original worker stopped (a crash, a lost lease: the next drive starts with
``run_resumed``), :class:`Halt` ends the drive: at a commit past the drive's last event, or at a
tool call whose outcome the drive never recorded.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence, Set
from typing import Any

from pydantic import TypeAdapter

from charter._engine.attempts import Overdue, OverdueHook
from charter._engine.caching import encode_response
from charter._engine.decider import TIME_BUDGET, Outcome
from charter.agents import Agent
from charter.errors import NotFoundError, ReplayUnavailableError
from charter.events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetExceeded,
    CounterReading,
    ErrorInfo,
    Event,
    EventBody,
    MessageReceived,
    ModelCallFailed,
    ModelResponded,
    PolicyEvaluated,
    RunFinished,
    RunResumed,
    RunStatus,
    ToolCallBlocked,
    ToolCallFailed,
    ToolCallOverdue,
    ToolCallProposed,
    ToolCallReconciled,
    ToolCallRejected,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
)
from charter.models import ModelResponse
from charter.redaction import LoggingSettings, Redactor
from charter.store import (
    ApprovalRecord,
    CancelRequest,
    Commit,
    InboxMessage,
    KillSwitch,
    KillSwitchAction,
)
from charter.tools import Reconciliation, Tool, ToolContext

_ANY: TypeAdapter[Any] = TypeAdapter(Any)
HOOK_TIMEOUT_S = 0.05
"""The replay's stand-in tools answer at once; this bounds the loop's waits on them (and the
wait for a dead worker's call to time out, which the original already sat through)."""


class Halt(BaseException):
    """The original worker stopped here (a crash, a lost lease): end this drive."""


@dataclasses.dataclass(frozen=True, slots=True)
class Drive:
    """One claim of the original: events ``first``..``last`` (``first`` > ``last``: none)."""

    first: int
    last: int
    previous_status: RunStatus
    worker_id: str


class Recording:
    """A run's log, indexed for serving it back."""

    def __init__(self, events: Sequence[Event]) -> None:
        if len(events) < 2 or events[0].type != "run_started":
            raise NotFoundError("the run's log is incomplete: it needs run_started and input")
        self.events = list(events)
        self.times = [e.at for e in events]
        self.model = [
            e.body for e in events if isinstance(e.body, ModelResponded | ModelCallFailed)
        ]
        self.proposals: dict[tuple[int, str], ToolCallProposed] = {}
        self.rewrites: dict[str, dict[str, Any]] = {}
        self.approvals: dict[str, ApprovalRequested] = {}
        for e in events:
            b = e.body
            if isinstance(b, ToolCallProposed):
                self.proposals.setdefault((b.step, b.call_id), b)
            elif isinstance(b, PolicyEvaluated) and b.rewritten and b.arguments is not None:
                self.rewrites[b.call_id] = b.arguments
            elif isinstance(b, ApprovalRequested):
                self.approvals[b.call_id] = b
        last = self.events[-1]
        ended = isinstance(last.body, RunFinished) and last.body.abandoned
        self.abandoned = last if ended else None
        """The ``run_finished`` written from outside the loop after it failed (``abandoned``):
        the last drive ends before it, and the replay appends it as recorded."""
        self.drives = self._drives()

    def _drives(self) -> list[Drive]:
        starts = [e.seq for e in self.events if isinstance(e.body, RunResumed)]
        drives, first, worker_id = [], 3, "replay"
        status: RunStatus = "queued"
        for seq in starts:
            drives.append(Drive(first, seq - 1, status, worker_id))
            resumed = self.at(seq)
            assert isinstance(resumed, RunResumed)
            status = "running" if resumed.reason == "recovery" else "waiting"
            first, worker_id = seq, resumed.worker
        end = len(self.events) - (1 if self.abandoned is not None else 0)
        drives.append(Drive(first, end, status, worker_id))
        return drives

    def at(self, seq: int) -> EventBody | None:
        """The body recorded at ``seq`` (None past either end)."""
        return self.events[seq - 1].body if 1 <= seq <= len(self.events) else None

    def decisions(self, drive: Drive) -> list[ApprovalDecided]:
        return [
            b
            for seq in range(drive.first, drive.last + 1)
            if isinstance(b := self.at(seq), ApprovalDecided)
        ]


class Cursor:
    """The loop's position in the log (the seq of its last appended event), and the clock."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.driver: Any = None
        self.drive: Drive = recording.drives[0]

    @property
    def pos(self) -> int:
        # The driver's private sequence counter: read, never written. The loop appends at
        # ``_seq`` and stamps the event with the clock right after incrementing it.
        return int(self.driver._seq) if self.driver is not None else self.drive.first - 1

    def now(self) -> float:
        """The time of the loop's last event, or the reading a time budget was decided on."""
        body = self.next() if self.driver is not None else None  # (None: the claim's time)
        if isinstance(body, BudgetExceeded) and body.budget == TIME_BUDGET:
            if body.measured_at is None:
                raise _older(self, self.pos + 1, "the clock reading its time budget ran out at")
            return body.measured_at
        times = self.recording.times
        return times[max(0, min(self.pos, len(times)) - 1)]

    def next(self, offset: int = 1) -> EventBody | None:
        return self.recording.at(self.pos + offset)


class RecordedPort:
    """The port a replay drives the effect shell through (:class:`~charter._engine.ports.
    RunPort`, in full): commits are kept in memory, seeded with the run's first events, and
    every answer is the one the log recorded at the shell's position.
    """

    def __init__(self, cursor: Cursor, *, halt_past_last: bool) -> None:
        self.cursor = cursor
        self.events: list[Event] = list(cursor.recording.events[:2])
        self.filed: dict[str, ApprovalRecord] = {}
        self.halt_past_last = halt_past_last
        """False for the original's final drive of a run that parked or finished: events past
        its end are extra (a divergence), not a crash."""
        self.spend_caps: dict[str, str] = {}
        """Daily spending counters' keys -> the budget each is capped by (the loop's own
        ``Limiter.caps``)."""
        self._readings_at = 0  # the seq of the decision whose counters are being served
        self._readings_served = 0

    async def load_events(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        return self.events[after_seq:]

    async def commit(self, commit: Commit) -> CancelRequest | None:
        drive = self.cursor.drive
        if commit.events[0].seq > drive.last and self.halt_past_last:
            raise Halt  # the original committed nothing more in this drive
        assert commit.expected_seq == len(self.events), "the replay's loop lost its place"
        self.events.extend(commit.events)
        for record in commit.approvals:
            self.filed[record.approval_id] = record
        return await self.cancel_request(commit.run_id)

    async def release(self, worker_id: str, run_id: str, epoch: int) -> None:
        return None

    async def pending_messages(self, run_id: str) -> list[InboxMessage]:
        found, offset = [], 1
        while isinstance(body := self.cursor.next(offset), MessageReceived):
            if body.source == "principal":
                at = self.cursor.recording.times[self.cursor.pos + offset - 1]
                found.append(InboxMessage(body.inbox_id or 0, body.text, at))
            offset += 1
        return found

    async def cancel_request(self, run_id: str) -> CancelRequest | None:
        """The request the original honoured here, as its next event recorded it."""
        body = self.cursor.next()
        if not isinstance(body, RunFinished) or body.cancel is None:
            return None
        seen = body.cancel
        return CancelRequest(
            seen.request_id, run_id, seen.reason, seen.requested_by, seen.requested_at
        )

    async def kill_switches(self) -> list[KillSwitch]:
        """The switch the original found here, as its next event recorded it."""
        seq, body = self.cursor.pos + 1, self.cursor.next()
        if isinstance(body, PolicyEvaluated):  # the decision saw only whether one covered it
            covered = KillSwitch(tenant="*", agent="*", since=0.0, reason="")
            return [covered] if body.kill_switch else []
        action: KillSwitchAction
        if isinstance(body, ToolCallBlocked):
            seen, action = body.switch, body.action
        elif isinstance(body, ToolCallRejected) and body.error.code == "kill_switch":
            seen, action = body.switch, "reject"
        else:
            return []
        if seen is None:
            raise _older(self.cursor, seq, "the kill switch that stopped a write")
        return [KillSwitch(tenant=seen.tenant, agent=seen.agent, since=0.0, reason=seen.reason,
                           action=action)]  # fmt: skip

    async def get_approval(self, approval_id: str) -> ApprovalRecord:
        try:
            return self.filed[approval_id]
        except KeyError:
            raise NotFoundError(f"replay: no approval {approval_id!r} was filed") from None

    async def decide_approval(
        self, approval_id: str, *, decision: str, by: str | None, note: str | None
    ) -> tuple[ApprovalRecord, bool]:
        record = dataclasses.replace(
            self.filed[approval_id],
            status=decision,
            decided_by=by,
            note=note,
            decided_at=self.cursor.now(),
        )
        self.filed[approval_id] = record
        return record, True

    def apply_decisions(self, decisions: Sequence[ApprovalDecided]) -> None:
        """Make the decisions the original took in a drive visible to the replay of it."""
        for d in decisions:
            if d.approval_id in self.filed:
                self.filed[d.approval_id] = dataclasses.replace(
                    self.filed[d.approval_id],
                    status=d.decision,
                    decided_by=d.decided_by,
                    decided_at=d.decided_at,
                    note=d.note,
                )

    # -- caches: what the original's next event shows ----------------------------------------

    async def cache_get(self, key: str, *, now: float) -> str | None:
        """A model answer the original took from the response cache under this key, else a
        miss (an older log, which kept no key, is served by the hit alone).

        Tool results are always a miss here: :class:`ReplayExecutor` serves the recorded
        outcome, with the ``cached`` mark and key the original recorded.
        """
        body = self.cursor.next()
        if not isinstance(body, ModelResponded) or not body.cached:
            return None
        if body.cache_key is not None and body.cache_key != key:
            return None  # the replay asked another question: the comparison reports it
        response = ModelResponse(content=body.content, tool_calls=body.tool_calls,
                                 usage=body.usage, model=body.model)  # fmt: skip
        return encode_response(response)

    async def cache_put(self, key: str, value: str, *, kind: str, now: float, ttl_s: float) -> None:
        return None  # a replay writes nothing

    # -- counters: the figures the original's decision there recorded -------------------------

    async def take(
        self, key: str, *, window_s: float, limit: float, amount: float = 1.0
    ) -> float | None:
        reading = self._reading("a rate limit's count")
        return amount if reading is None else reading.total

    async def add(self, key: str, *, window_s: float, amount: float) -> float:
        return amount

    async def counter(self, key: str, *, window_s: float) -> float:
        body = self.cursor.next()
        if isinstance(body, BudgetExceeded):  # a model step stopped by a daily cap
            return body.used if self.spend_caps.get(key) == body.budget else 0.0
        reading = self._reading("a spending figure")
        if reading is None or reading.total is None:
            return 0.0
        return reading.total

    def _reading(self, what: str) -> CounterReading | None:
        """The next counter the decision at the cursor read (``policy_evaluated.counters``,
        served in the order it read them); None where it read none: the call went on, or (no
        decision follows) the loop is not deciding on a call (a model step under its caps)."""
        seq, body = self.cursor.pos + 1, self.cursor.next()
        if not isinstance(body, PolicyEvaluated):
            return None
        if not body.counters and body.outcome == "deny":
            raise _older(self.cursor, seq, what)  # which counter refused it is only prose
        served = self._readings_served if self._readings_at == seq else 0
        self._readings_at, self._readings_served = seq, served + 1
        return body.counters[served] if served < len(body.counters) else None


def _older(cursor: Cursor, seq: int, what: str) -> ReplayUnavailableError:
    """A log of an older Charter, which kept an answer the replay needs only as text."""
    run_id = cursor.recording.events[0].run_id
    kind = cursor.recording.events[seq - 1].type
    return ReplayUnavailableError(
        f"cannot replay run {run_id}: it was recorded by an older Charter, whose log keeps"
        f" {what} only as text (event {seq}, {kind})",
        hint="replay it with the Charter version that recorded it",
    )


class ReplayExecutor:
    """Serves each tool call the outcome its drive recorded; calls no tool.

    The call must be the recorded one: same tool, same arguments (after any policy rewrite)
    as proposed at that step under that call id; otherwise the outcome is a
    ``replay_mismatch`` failure, which the comparison then reports.
    """

    def __init__(self, cursor: Cursor) -> None:
        self.cursor = cursor

    async def call(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: dict[str, Any],
        *,
        deadline: float | None = None,
        lease_until: Any = None,
        on_overdue: OverdueHook | None = None,
    ) -> Outcome:
        rec = self.cursor.recording
        proposed = rec.proposals.get((ctx.step, ctx.call_id))
        expected = rec.rewrites.get(ctx.call_id, proposed.arguments if proposed else None)
        if proposed is None or proposed.tool != tool.name or expected != arguments:
            was = f"{proposed.tool} {expected}" if proposed else "no such call"
            message = (
                f"replay: step {ctx.step} call {ctx.call_id} is {tool.name} {arguments};"
                f" the log recorded {was}"
            )
            return Outcome(ok=False, error=ErrorInfo(code="replay_mismatch", message=message))
        for seq in range(self.cursor.pos + 1, self.cursor.drive.last + 1):
            body = rec.at(seq)
            if isinstance(body, ToolCallOverdue) and body.call_id == ctx.call_id:
                if on_overdue is not None and body.attempt == ctx.attempt:
                    report = Overdue(tool=tool, ctx=ctx, timeout_s=body.timeout_s,
                                     waiting=body.waiting)  # fmt: skip
                    await _maybe_await(on_overdue(report))
                continue
            if isinstance(body, ToolCallSucceeded | ToolCallFailed) and body.call_id == ctx.call_id:
                if isinstance(body, ToolCallSucceeded):
                    return Outcome(ok=True, output=body.output, attempts=body.attempts,
                                   duration_ms=body.duration_ms, late=body.late,
                                   cached=body.cached, cache_key=body.cache_key,
                                   simulated=body.simulated)  # fmt: skip
                return Outcome(ok=False, error=body.error, attempts=body.attempts,
                               duration_ms=body.duration_ms, late=body.late,
                               simulated=body.simulated)  # fmt: skip
            unknown = isinstance(body, ToolOutcomeUnknown) and body.call_id == ctx.call_id
            if unknown or isinstance(body, RunFinished):
                error = ErrorInfo(code="timeout", message="recorded: outcome unknown")
                cause = body.cause if isinstance(body, ToolOutcomeUnknown) else "timeout"
                return Outcome(ok=False, error=error, unknown=True,
                               cause="timeout" if cause == "recovery" else cause)  # fmt: skip
        raise Halt  # the original worker stopped during this call


async def _maybe_await(value: Any) -> None:
    if hasattr(value, "__await__"):
        await value


def replay_agent(agent: Agent, cursor: Cursor) -> Agent:
    """The agent with stand-in tools: reconcile and preview answer from the log."""
    return dataclasses.replace(agent, tools=[_stand_in(t, cursor) for t in agent.tools])


def _stand_in(tool: Tool, cursor: Cursor) -> Tool:
    twin = copy.copy(tool)
    twin.timeout_s = min(tool.timeout_s, HOOK_TIMEOUT_S)
    twin._output = _ANY  # recorded outputs are JSON already

    async def reconcile(ctx: ToolContext, arguments: dict[str, Any]) -> Reconciliation:
        rec = cursor.recording
        verdict: ToolCallReconciled | None = None
        for seq in range(cursor.pos + 1, cursor.drive.last + 1):
            body = rec.at(seq)
            if isinstance(body, ToolCallReconciled) and body.call_id == ctx.call_id:
                verdict = body
                if body.applied is not True:
                    break
            elif verdict is not None and isinstance(body, ToolCallSucceeded):
                return Reconciliation(applied=True, output=body.output, fenced=verdict.fenced)
        if verdict is None:
            raise Halt
        if verdict.error is not None:
            raise RuntimeError(verdict.error)
        return Reconciliation(applied=verdict.applied, fenced=verdict.fenced)

    async def preview(ctx: ToolContext, arguments: dict[str, Any]) -> Any:
        requested = cursor.recording.approvals.get(ctx.call_id)
        if requested is None or requested.changes is None:
            raise LookupError("the original recorded no preview")
        return [c.model_dump(mode="json") for c in requested.changes]

    twin.reconcile = reconcile if tool.reconcile is not None else None
    twin.preview = preview if tool.preview is not None else None
    return twin


class ReplayRedactor(Redactor):
    """The agent's redactor, for a replay: the log holds values already redacted, in which the
    patterns find nothing again. When the redacted body is the recorded event's but for its
    ``redacted`` paths (and the ``ignored`` fields, which the comparison leaves out), it gets
    the recorded paths; anything else stays as redacting made it (the comparison shows it)."""

    def __init__(
        self, settings: LoggingSettings, cursor: Cursor, *, ignored: Mapping[str, Set[str]]
    ) -> None:
        super().__init__(settings)
        self.cursor = cursor
        self.ignored = ignored

    def apply(self, body: EventBody) -> EventBody:
        stored = super().apply(body)
        recorded = self.cursor.recording.at(self.cursor.pos)  # the loop appends at ``pos``
        paths = getattr(recorded, "redacted", ())
        if not paths or recorded is None or type(recorded) is not type(stored):
            return stored
        left_out = {"redacted", *self.ignored.get(stored.type, ())}
        if stored.model_dump(exclude=left_out) == recorded.model_dump(exclude=left_out):
            return stored.model_copy(update={"redacted": paths})
        return stored
