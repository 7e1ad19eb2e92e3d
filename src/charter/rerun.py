"""What-if reruns: the same input again, with a new model, prompt or agent version.

::

    sims = Simulators()

    @sims.register("lookup_order")
    def order(arguments):
        return {"order_id": arguments["order_id"], "status": "shipped"}

    result = await rerun(rt, run_id, changes=RerunChanges(model="gpt-4o-mini"), simulators=sims)

No tool runs for real in a rerun, read or write. A call the original made (the same tool with
the same arguments, as canonical JSON) gets the recorded result; a write's recorded result
serves one call. Any other call goes to the simulator registered for its tool; without one the
rerun stops, failed, with "unrecorded call". Every served result is marked in the log
(``simulated: recording`` or ``simulator``), and the new run's ``run_started`` names the
original (``rerun_of``).

What else a rerun answers from the original: the principal's messages, in order, when it waits
for one; approval decisions for the same call (tool and arguments hash), else the request is
denied ("not decided in the original"); a cancel, at the same step boundary: once the rerun
has had as many model answers as the original had when it was cancelled, the rerun is
cancelled too (a request of its own, by ``rerun``, naming the original's). A rerun that would
wait for anything else (a timer, a kill switch, a message the original never got) is finished
``cancelled`` so that no worker ever picks it up with real tools. Shared counters (rate limits
over time, daily spending) are neither consulted nor charged.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from charter._engine.decider import Outcome
from charter._engine.faults import Faults
from charter._engine.loop import RunDriver
from charter._engine.state import RunState, fold, fold_all
from charter.agents import Agent, load_agent
from charter.clock import new_cancel_id, new_run_id, wall_clock
from charter.errors import CharterError, ConfigError, ToolError
from charter.events import (
    FINAL_STATUSES,
    GENESIS_HASH,
    ApprovalDecided,
    ApprovalRequested,
    CancelSeen,
    ErrorInfo,
    Event,
    MessageReceived,
    ModelResponded,
    RunFinished,
    RunStarted,
    RunStatus,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallSucceeded,
    arguments_hash,
)
from charter.models import ModelSpec, build_model
from charter.replay import check_whole, stored_agent
from charter.runtime import Runtime
from charter.store import (
    ApprovalRecord,
    CancelRequest,
    Commit,
    InboxMessage,
    KillSwitch,
    NewRun,
    Store,
)
from charter.tools import Tool, ToolContext

Simulator = Callable[[dict[str, Any]], Any]
"""``fn(arguments) -> output`` (or an awaitable of it); raise ToolError for a failure."""


class Simulators:
    """Simulators for tool calls a recording lacks, registered by tool name."""

    def __init__(self) -> None:
        self._by_tool: dict[str, Simulator] = {}

    def register(self, tool: str) -> Callable[[Simulator], Simulator]:
        def add(fn: Simulator) -> Simulator:
            self._by_tool[tool] = fn
            return fn

        return add

    def get(self, tool: str) -> Simulator | None:
        return self._by_tool.get(tool)


def import_simulators(ref: str) -> Simulators:
    """The :class:`Simulators` at ``module:attribute``."""
    module, _, name = ref.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot import simulators {ref!r}: {exc}") from exc
    if not isinstance(found, Simulators):
        raise ConfigError(f"{ref!r} is not a charter.rerun.Simulators")
    return found


@dataclass(frozen=True, kw_only=True)
class RerunChanges:
    """What the rerun changes: a model (name, or a YAML/JSON model section file), the
    instructions text, and/or a whole agent file (the others then apply on top of it)."""

    model: str | None = None
    instructions: str | None = None
    agent_file: Path | None = None
    agent: Agent | None = None


@dataclass(frozen=True, slots=True)
class RerunResult:
    run_id: str
    rerun_of: str
    status: RunStatus
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class _Unrecorded(CharterError):
    code = "unrecorded_call"


def _key(tool: str, arguments: Any) -> str:
    return f"{tool}:{arguments_hash(arguments)}"


class _Served:
    """The original's results by (tool, arguments); writes serve once, reads any number."""

    def __init__(self, events: list[Event]) -> None:
        calls: dict[str, tuple[str, ToolCallProposed]] = {}
        self.results: dict[str, list[ToolCallSucceeded | ToolCallFailed]] = {}
        self.decisions: dict[str, ApprovalDecided] = {}
        self.previews: dict[str, ApprovalRequested] = {}
        self.messages = [
            e.body.text
            for e in events
            if isinstance(e.body, MessageReceived) and e.body.source == "principal"
        ]
        requested: dict[str, str] = {}
        steps = 0
        self.cancel: tuple[int, CancelSeen] | None = None
        """The original's cancel, with the number of model answers it had had by then."""
        for e in events:
            b = e.body
            if isinstance(b, ModelResponded):
                steps += 1
            elif isinstance(b, RunFinished) and b.cancel is not None:
                self.cancel = (steps, b.cancel)
            elif isinstance(b, ToolCallProposed) and b.arguments is not None:
                calls[b.call_id] = (_key(b.tool, b.arguments), b)
            elif isinstance(b, ToolCallSucceeded | ToolCallFailed) and b.call_id in calls:
                self.results.setdefault(calls[b.call_id][0], []).append(b)
            elif isinstance(b, ApprovalRequested):
                requested[b.approval_id] = f"{b.tool}:{b.arguments_hash}"
                self.previews[requested[b.approval_id]] = b
            elif isinstance(b, ApprovalDecided) and b.approval_id in requested:
                self.decisions[requested[b.approval_id]] = b
        self.tools = sorted({p.tool for _, p in calls.values() if p.effect != "unknown"})


class RerunExecutor:
    """Serves calls from the recording, else a simulator, else stops: never calls a tool."""

    def __init__(self, served: _Served, simulators: Simulators | None) -> None:
        self.served = served
        self.simulators = simulators or Simulators()

    async def call(
        self,
        tool: Tool,
        ctx: ToolContext,
        arguments: dict[str, Any],
        *,
        deadline: float | None = None,
        lease_until: Any = None,
        on_overdue: Any = None,
    ) -> Outcome:
        results = self.served.results.get(_key(tool.name, arguments))
        if results:
            body = results[0] if tool.effect != "write" else results.pop(0)
            if isinstance(body, ToolCallSucceeded):
                return Outcome(ok=True, output=body.output, simulated="recording")
            return Outcome(ok=False, error=body.error, simulated="recording")
        simulate = self.simulators.get(tool.name)
        if simulate is None:
            raise _Unrecorded(
                f"unrecorded call: {tool.name} {json.dumps(arguments, sort_keys=True)} was not"
                " made in the original and no simulator is registered for it"
            )
        try:
            output = simulate(dict(arguments))
            if inspect.isawaitable(output):
                output = await output
        except ToolError as exc:
            error = ErrorInfo(code=exc.code, message=exc.message)
            return Outcome(ok=False, error=error, simulated="simulator")
        return Outcome(ok=True, output=output, simulated="simulator")


class RerunPort:
    """The effect shell's port for a rerun (:class:`~charter._engine.ports.RunPort`): the real
    store, except that a rerun never parks where nothing could wake it, shared counters are
    neither taken nor charged, and the original's cancel is asked for at the same step."""

    def __init__(
        self,
        store: Store,
        messages_left: Callable[[], int],
        *,
        rerun_of: str,
        cancel: tuple[int, CancelSeen] | None = None,
    ) -> None:
        self._store = store
        self._messages_left = messages_left
        self._rerun_of = rerun_of
        self._cancel = cancel
        self._steps = 0  # model answers committed by the rerun

    async def load_events(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        return await self._store.load_events(run_id, after_seq=after_seq)

    async def release(self, worker_id: str, run_id: str, epoch: int) -> None:
        await self._store.release(worker_id, run_id, epoch)

    async def pending_messages(self, run_id: str) -> list[InboxMessage]:
        return await self._store.pending_messages(run_id)

    async def cancel_request(self, run_id: str) -> CancelRequest | None:
        return await self._store.cancel_request(run_id) or await self._as_original(run_id)

    async def _as_original(self, run_id: str) -> CancelRequest | None:
        """The original's cancel, asked for once the rerun has reached the step where the
        original was cancelled: a request of the rerun's own, by ``rerun``."""
        if self._cancel is None or self._steps < self._cancel[0]:
            return None
        seen, self._cancel = self._cancel[1], None
        reason = f"cancelled in run {self._rerun_of} by {seen.requested_by}: {seen.reason}"
        return await self._store.request_cancel(
            run_id, request_id=new_cancel_id(), reason=reason, actor="rerun"
        )

    async def kill_switches(self) -> list[KillSwitch]:
        return await self._store.kill_switches()

    async def get_approval(self, approval_id: str) -> ApprovalRecord:
        return await self._store.get_approval(approval_id)

    async def decide_approval(
        self,
        approval_id: str,
        *,
        decision: Literal["granted", "denied", "expired"],
        by: str | None,
        note: str | None,
    ) -> tuple[ApprovalRecord, bool]:
        return await self._store.decide_approval(approval_id, decision=decision, by=by, note=note)

    async def cache_get(self, key: str, *, now: float) -> str | None:
        return await self._store.cache_get(key, now=now)

    async def cache_put(self, key: str, value: str, *, kind: str, now: float, ttl_s: float) -> None:
        await self._store.cache_put(key, value, kind=kind, now=now, ttl_s=ttl_s)

    async def take(self, key: str, *, window_s: float, limit: float, amount: float = 1.0) -> float:
        return amount

    async def add(self, key: str, *, window_s: float, amount: float) -> float:
        return amount

    async def counter(self, key: str, *, window_s: float) -> float:
        return 0.0

    async def commit(self, commit: Commit) -> CancelRequest | None:
        self._steps += sum(isinstance(e.body, ModelResponded) for e in commit.events)
        waits = commit.status == "waiting" and commit.waiting_for != "approval"
        if waits and (commit.waiting_for != "message" or not self._messages_left()):
            last = commit.events[-1]
            why = f"rerun stopped: it waits for a {commit.waiting_for} the original never gave"
            finished = Event.seal(
                run_id=commit.run_id,
                seq=last.seq + 1,
                at=wall_clock(),
                body=RunFinished(status="cancelled", reason=why),
                prev_hash=last.hash,
            )
            state = fold(RunState.model_validate_json(commit.state), finished)
            commit = dataclasses.replace(
                commit,
                events=(*commit.events, finished),
                state=state.model_dump_json(),
                status=state.status,
                ready_at=None,
                waiting_for=None,
                release=True,
            )
        answer = await self._store.commit(commit)
        if answer is None and commit.cancelled is None and commit.status not in FINAL_STATUSES:
            answer = await self._as_original(commit.run_id)
        return answer


async def rerun(
    rt: Runtime,
    run_id: str,
    *,
    changes: RerunChanges,
    simulators: Simulators | None = None,
) -> RerunResult:
    """Start and work a rerun of ``run_id`` in ``rt``'s store; return the new run's outcome."""
    store = rt.store
    record = await store.get_run(run_id)  # NotFoundError for an unknown id
    events = await store.load_events(run_id)
    check_whole(run_id, events, what="rerun")  # a recording with holes serves wrong answers
    if changes.agent is None and changes.agent_file is None:
        agent = _changed(await stored_agent(store, record, what="rerun"), changes)
    else:
        agent = _changed(None, changes)
    served = _Served(events)
    missing = [name for name in served.tools if agent.registry().find(name) is None]
    if missing:
        raise ConfigError(
            f"agent {agent.name} v{agent.version} has no tool {', '.join(missing)}, which run"
            f" {run_id} called; nothing was started",
            hint="rerun with an agent that keeps the recorded tools",
        )
    new_id = await _start(rt, events[0], agent, rerun_of=run_id)
    messages = list(served.messages)
    port = RerunPort(store, lambda: len(messages), rerun_of=run_id, cancel=served.cancel)
    twin = dataclasses.replace(agent, tools=[_no_effects(t, served) for t in agent.tools])
    model = build_model(agent.model)
    executor = RerunExecutor(served, simulators)
    worker_id = f"rerun:{new_id}"
    while True:
        claims = await store.claim(worker_id, lease_s=300.0, limit=1, run_id=new_id)
        if not claims:
            break
        driver = RunDriver(store=port, record=await store.get_run(new_id), claim=claims[0],
                           agent=twin, model=model, worker_id=worker_id, executor=executor,
                           faults=Faults())  # fmt: skip
        try:
            state = await driver.drive()
        except _Unrecorded as exc:
            await _stop(store, claims[0], worker_id, exc.message)
            break
        if state.status != "waiting":
            break
        if state.waiting_for == "message":
            await store.send(new_id, messages.pop(0))
        elif state.waiting_for == "approval":
            await _decide(store, new_id, served)
    final = await store.get_run(new_id)
    reason = final.state.get("reason")
    return RerunResult(new_id, run_id, final.status, str(reason) if reason else None)


async def _stop(store: Store, claim: Any, worker_id: str, reason: str) -> None:
    from charter._engine.loop import abandon

    await abandon(store, claim, worker_id, reason)


async def _decide(store: Store, run_id: str, served: _Served) -> None:
    for approval in await store.approvals(run_id=run_id, status="pending"):
        recorded = served.decisions.get(f"{approval.tool}:{approval.arguments_hash}")
        if recorded is not None and recorded.decision in ("granted", "denied"):
            await store.decide_approval(
                approval.approval_id,
                decision=recorded.decision,
                by=recorded.decided_by,
                note=f"as decided in the original: {recorded.note or '-'}",
            )
        else:
            note = "not decided in the original run"
            await store.decide_approval(approval.approval_id, decision="denied", by="rerun",
                                        note=note)  # fmt: skip


def _no_effects(tool: Tool, served: _Served) -> Tool:
    """The tool for the rerun's loop: previews served from the original, no reconcile."""
    twin = copy.copy(tool)
    twin.reconcile = None

    def preview(ctx: ToolContext, arguments: dict[str, Any]) -> Any:
        requested = served.previews.get(f"{tool.name}:{arguments_hash(arguments)}")
        if requested is None or requested.changes is None:
            raise LookupError("no recorded preview")
        return [c.model_dump(mode="json") for c in requested.changes]

    twin.preview = preview if tool.preview is not None else None
    return twin


def _changed(original: Agent | None, changes: RerunChanges) -> Agent:
    agent = changes.agent or (
        load_agent(changes.agent_file) if changes.agent_file is not None else original
    )
    assert agent is not None, "the original agent is needed when no new one is given"
    if changes.instructions is not None:
        agent = dataclasses.replace(agent, instructions=changes.instructions)
    if changes.model is not None:
        agent = dataclasses.replace(agent, model=_model_spec(agent.model, changes.model))
    # A rerun's reads come from the recording or a simulator, never from the result cache
    # of real calls (which could answer a call the recording does not have).
    return dataclasses.replace(agent, cache=agent.cache.model_copy(update={"tools": False}))


def _model_spec(current: ModelSpec, text: str) -> ModelSpec:
    path = Path(text)
    if not path.is_file():
        return current.model_copy(update={"name": text})
    try:
        raw = yaml.safe_load(path.read_text())
        raw = raw.get("model", raw) if isinstance(raw, dict) else raw
        if isinstance(raw, dict) and isinstance(raw.get("script"), str):
            raw["script"] = json.loads((path.parent / raw["script"]).read_text())
        return ModelSpec.model_validate(raw)
    except (yaml.YAMLError, OSError, ValueError) as exc:
        raise ConfigError(f"{text}: not a model section: {exc}") from exc


async def _start(rt: Runtime, first: Event, agent: Agent, *, rerun_of: str) -> str:
    started = first.body
    assert isinstance(started, RunStarted)
    rt.register(agent)
    run_id, now = new_run_id(rt.clock), rt.clock()
    body = started.model_copy(
        update={
            "agent_name": agent.name,
            "agent_version": agent.version,
            "agent_hash": agent.agent_hash,
            "rerun_of": rerun_of,
            "idempotency_key": None,  # the client's key named the original start
        }
    )
    head = Event.seal(run_id=run_id, seq=1, at=now, body=body, prev_hash=GENESIS_HASH)
    message = Event.seal(
        run_id=run_id,
        seq=2,
        at=now,
        body=MessageReceived(text=started.input, source="input"),
        prev_hash=head.hash,
    )
    await rt.store.create_run(
        NewRun(
            run_id=run_id,
            agent_name=agent.name,
            agent_version=agent.version,
            agent_hash=agent.agent_hash,
            agent_spec=agent.spec_json(),
            tenant=started.tenant,
            principal=started.principal,
            events=(head, message),
            state=fold_all([head, message]).model_dump_json(),
            created_at=now,
        )
    )
    return run_id
