"""Deterministic replay: re-execute a run's orchestration from its log and check the events.

::

    report = await replay_run(store, run_id)
    if not report.identical:
        print(report.divergence.seq, report.divergence.original, report.divergence.replayed)

The real effect shell (:class:`~charter._engine.loop.RunDriver`) and the same decider work the
run again, once per drive of the original (its first claim, then one per ``run_resumed``),
through a port that keeps commits in memory, seeded with the run's first two events
(``run_started`` and the input), and answers from the log. Model
responses, tool outcomes, reconcile and preview answers, inbox messages, approval decisions,
kill switches and shared counters are served from the log (:mod:`charter._engine.recorded`);
nothing outside the process is called or written.

What is compared, event by event in sequence order: the type and every body field, except
the fields in :data:`IGNORED` (how long something took, when a timer or approval expires,
which worker ran it): these depend on the wall clock or the host, not on the orchestration.
The envelope's ``at`` and hashes are not compared either (the replay's clock reproduces the
recorded times, so they match whenever the bodies do). A replay that stops early, or goes on
past the log's end, diverges at the first seq one side lacks.

Limits: a replay re-decides policy with the agent's policy *as stored with the run*, and it
needs the agent's tools to import (their contracts, not their functions, are used) and the
whole log: when either is missing, :func:`replayable` raises ReplayUnavailableError (exit code
10) instead of reporting a false divergence.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from charter._engine.faults import Faults
from charter._engine.loop import RunDriver
from charter._engine.recorded import (
    Cursor,
    Halt,
    RecordedPort,
    Recording,
    ReplayExecutor,
    ReplayRedactor,
    replay_agent,
)
from charter.agents import Agent
from charter.clock import new_random
from charter.errors import ReplayUnavailableError, ToolImportError
from charter.events import FINAL_STATUSES, Event, RunStarted, removal
from charter.models import ReplayModel
from charter.store import Claim, RunRecord, Store
from charter.tools import import_tool

IGNORED: dict[str, frozenset[str]] = {
    # prompt_hash: schema 2 wrote it on every response, schema 3 once, on run_started.
    "model_responded": frozenset({"latency_ms", "prompt_hash"}),
    "tool_call_succeeded": frozenset({"duration_ms"}),
    "tool_call_failed": frozenset({"duration_ms"}),
    "approval_requested": frozenset({"expires_at"}),
    "run_waiting": frozenset({"wake_at"}),
    "run_resumed": frozenset({"worker"}),
    "tool_call_started": frozenset({"fencing_token"}),
    "tool_outcome_unknown": frozenset({"fencing_token"}),
    "tool_call_reconciled": frozenset({"fencing_token"}),
}
"""Body fields left out of the comparison, by event type. Also left out: ``output.wake_at`` of
a ``sleep`` call's result (wall-clock).
Fencing tokens are built from the lease epochs of the original claims, which a replay does
not repeat."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first event where the replay differs: both versions as compared (None: missing)."""

    seq: int
    original: dict[str, Any] | None
    replayed: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "original": self.original, "replayed": self.replayed}


@dataclass(frozen=True, slots=True)
class ReplayReport:
    run_id: str
    events: int
    """Events in the original log."""
    replayed: int
    """Events the replay produced (including the two it starts from)."""
    drives: int
    divergence: Divergence | None

    @property
    def identical(self) -> bool:
        return self.divergence is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "identical": self.identical,
            "events": self.events,
            "replayed": self.replayed,
            "drives": self.drives,
            "divergence": None if self.divergence is None else self.divergence.to_dict(),
        }


def comparable(event: Event) -> dict[str, Any]:
    """An event as the replay compares it: its type and body, without :data:`IGNORED` fields."""
    body = event.body.model_dump(mode="json")
    for name in IGNORED.get(event.type, ()):
        body.pop(name, None)
    if event.type == "tool_call_succeeded" and body.get("tool") == "sleep":
        output = body.get("output")
        if isinstance(output, dict):
            body["output"] = {k: v for k, v in output.items() if k != "wake_at"}
    return body


def first_divergence(
    original: Sequence[Event], replayed: Sequence[Event], *, start: int = 1, end: int | None = None
) -> Divergence | None:
    """The first seq in ``start..end`` (default: the longer log's end) where the logs differ."""
    last = max(len(original), len(replayed)) if end is None else end
    for seq in range(start, last + 1):
        if seq <= min(len(original), len(replayed)):
            x, y = original[seq - 1], replayed[seq - 1]
            if x.type == y.type and x.payload == y.payload:
                continue  # identical as stored: nothing to leave out
        a = comparable(original[seq - 1]) if seq <= len(original) else None
        b = comparable(replayed[seq - 1]) if seq <= len(replayed) else None
        if a != b:
            return Divergence(seq, a, b)
    return None


async def replay_run(store: Store, run_id: str) -> ReplayReport:
    """Replay a stored run (NotFoundError for an unknown id); the store is only read.

    ReplayUnavailableError when the run cannot be replayed here (:func:`replayable`).
    """
    record = await store.get_run(run_id)
    events = await store.load_events(run_id)
    agent = await replayable(store, record, events)
    in_flight = record.status not in FINAL_STATUSES and record.status != "waiting"
    return await replay_events(events, agent=agent, in_flight=in_flight)


def check_whole(run_id: str, events: Sequence[Event], *, what: str = "replay") -> None:
    """ReplayUnavailableError when retention removed any payload of the log."""
    for event in events:
        marker = removal(event.payload)
        if marker is not None:
            fields = ", ".join(str(f) for f in marker.get("fields", ())) or "payload"
            raise ReplayUnavailableError(
                f"cannot {what} run {run_id}: retention removed its payloads"
                f" (first at event {event.seq}, {event.type}: {fields})",
                hint="a replay needs the whole log; keep payloads longer for runs to replay",
            )


async def stored_agent(store: Store, record: RunRecord, *, what: str = "replay") -> Agent:
    """The agent ``record`` ran with; ReplayUnavailableError when its tools do not import."""
    spec = json.loads(await store.get_agent_spec(record.agent_hash))
    for ref in spec.get("tools", ()):
        try:
            import_tool(ref)
        except ToolImportError as exc:
            script = ref.startswith("__main__:")
            raise ReplayUnavailableError(
                f"cannot {what} run {record.run_id}: its tool {ref} does not import here:"
                f" {exc.message}",
                hint="a tool defined in a script imports only in that script's process:"
                " move it to a module"
                if script
                else exc.hint or "run from where the agent's tool modules import",
            ) from exc
    return Agent.from_spec(spec)


async def replayable(
    store: Store, record: RunRecord, events: Sequence[Event], *, what: str = "replay"
) -> Agent:
    """The agent ``record`` ran with, once its log is known to be whole.

    Raises ReplayUnavailableError (nothing else is read or written) when retention removed
    any payload of the log, or when the agent's tools do not import in this process.
    """
    check_whole(record.run_id, events, what=what)
    return await stored_agent(store, record, what=what)


async def replay_events(
    events: Sequence[Event], *, agent: Agent, in_flight: bool = False
) -> ReplayReport:
    """Replay a log with ``agent`` (the one the run was started with).

    ``in_flight``: the run had neither parked nor finished when the log was read (its worker
    died and no other resumed it yet), so the last drive ends where the log does.
    """
    recording = Recording(events)
    cursor = Cursor(recording)
    scratch = RecordedPort(cursor, halt_past_last=True)
    model = ReplayModel(recording.model, proposals=recording.proposals)
    executor = ReplayExecutor(cursor)
    twin = replay_agent(agent, cursor)
    record = _record(recording.events[0])
    checked = 2
    for number, drive in enumerate(recording.drives, start=1):
        cursor.drive, cursor.driver = drive, None
        final = number == len(recording.drives)
        abandoned = final and recording.abandoned is not None
        scratch.halt_past_last = in_flight or not final or abandoned
        scratch.apply_decisions(recording.decisions(drive))
        driver = RunDriver(
            store=scratch,
            record=record,
            claim=Claim(record.run_id, number, drive.previous_status, None),
            agent=twin,
            model=model,
            worker_id=drive.worker_id,
            executor=executor,
            faults=Faults(),
            clock=cursor.now,
            rand=new_random(0),
        )
        driver.limiter.refresh_s = 0.0  # read each cap where the loop asks: served by position
        if driver.redactor is not None:  # the log holds what the original's redaction left
            driver.redactor = ReplayRedactor(agent.logging, cursor, ignored=IGNORED)
        scratch.spend_caps = {key: name for name, key, _ in driver.limiter.caps}
        cursor.driver = driver
        with contextlib.suppress(Halt):  # the original worker stopped there
            await driver.drive()
        end = None if final and not abandoned else drive.last
        found = first_divergence(recording.events, scratch.events, start=checked + 1, end=end)
        if found is not None:
            return _report(recording, scratch, number, found)
        checked = drive.last
    if recording.abandoned is not None:  # written from outside the loop: an outside answer
        scratch.events.append(recording.abandoned)
    return _report(recording, scratch, len(recording.drives), None)


def _report(
    recording: Recording, scratch: RecordedPort, drives: int, found: Divergence | None
) -> ReplayReport:
    return ReplayReport(
        run_id=recording.events[0].run_id,
        events=len(recording.events),
        replayed=len(scratch.events),
        drives=drives,
        divergence=found,
    )


def _record(first: Event) -> RunRecord:
    started = first.body
    assert isinstance(started, RunStarted)
    return RunRecord(
        run_id=first.run_id,
        agent_name=started.agent_name,
        agent_version=started.agent_version,
        agent_hash=started.agent_hash,
        tenant=started.tenant,
        principal=started.principal,
        status="running",
        waiting_for=None,
        ready_at=None,
        lease_owner=None,
        lease_expires_at=None,
        lease_epoch=0,
        last_seq=2,
        last_hash=first.hash,
        state={},
        created_at=first.at,
        updated_at=first.at,
    )
