"""The effect shell: work one claimed run until it waits, finishes, or loses its lease.

The decider (:mod:`charter._engine.decider`, pure) says what the run does next and turns each
answer into events; this shell performs the effects (the store, the model, tools, counters,
the clock), hands the answers back, appends the events and commits them. Each turn: check
budgets, build the bounded working context, ask the model, validate each proposed call
against its contract, execute, and commit the step's events with the run's new state in one
transaction. Commit points, and what a crash between them means:

* A step whose calls are all reads commits once: the model response, the proposals and the read
  results together. A crash before that commit repeats the (never committed) model call.
* A write commits its intent (``tool_call_started`` with its idempotency key) before it runs
  and its result after. A crash in between leaves an unknown outcome: an idempotent tool is
  called again with the same key, a tool with ``reconcile`` is asked, any other escalates.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from charter import telemetry
from charter._engine import answers, approvals as held, decider, gates, observed
from charter._engine.attempts import Overdue
from charter._engine.caching import tool_key
from charter._engine.context import Conversation
from charter._engine.decider import (
    AskModel,
    Outcome,
    Park,
    RunCalls,
    Settle,
    TakeDecisions,
    fencing_token,
    idempotency_key,
)
from charter._engine.executor import execution_of
from charter._engine.faults import Faults, kill_self
from charter._engine.governance import Governor, decision_event
from charter._engine.limits import Limiter
from charter._engine.ports import Executor, RunPort
from charter._engine.routing import RoutedStep, StepRoutes
from charter._engine.state import PendingCall, RunState, fold, fold_all
from charter._engine.unknown import UnknownOutcomes
from charter.agents import Agent
from charter.clock import Clock, Random, new_random, wall_clock
from charter.errors import LeaseLost, ModelError
from charter.events import (
    CancelSeen,
    ErrorInfo,
    Event,
    EventBody,
    KillSwitchSeen,
    MessageReceived,
    ModelCallFailed,
    ModelResponded,
    ProposedCall,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolCallOverdue,
    ToolCallRejected,
    ToolCallStarted,
)
from charter.models import Model, ModelRequest, ModelResponse, ToolSpec
from charter.observer import Observer
from charter.policy import Decision
from charter.redaction import Redactor
from charter.store import ApprovalRecord, CancelRequest, Claim, Commit, KillSwitch, RunRecord
from charter.tools import Tool, ToolContext


async def abandon(store: RunPort, claim: Claim, worker_id: str, reason: str) -> None:
    """End a run this worker cannot work (its agent cannot be built, or the engine failed).

    The run is marked ``failed`` with the reason, so no worker claims it again in a loop.
    """
    events = await store.load_events(claim.run_id)
    state = fold_all(events)
    if state.finished:
        return
    finished = Event.seal(
        run_id=claim.run_id,
        seq=events[-1].seq + 1,
        at=wall_clock(),
        body=RunFinished(status="failed", reason=reason, abandoned=True),
        prev_hash=events[-1].hash,
    )
    state = fold(state, finished)
    await store.commit(
        Commit(
            run_id=claim.run_id,
            worker_id=worker_id,
            epoch=claim.epoch,
            expected_seq=events[-1].seq,
            events=(finished,),
            state=state.model_dump_json(),
            status=state.status,
            ready_at=None,
            release=True,
        )
    )


def _honoured(events: list[Event]) -> str | None:
    """The request to cancel that these events finish the run for (the commit consumes it)."""
    last = events[-1].body if events else None
    if isinstance(last, RunFinished) and last.cancel is not None:
        return last.cancel.request_id
    return None


class RunDriver(UnknownOutcomes):
    def __init__(
        self,
        *,
        store: RunPort,
        record: RunRecord,
        claim: Claim,
        agent: Agent,
        model: Model,
        worker_id: str,
        executor: Executor,
        faults: Faults,
        clock: Clock = wall_clock,
        rand: Random | None = None,
        lease_valid: Callable[[], bool] = lambda: True,
        lease_until: Callable[[], float] | None = None,
        observer: Observer | None = None,
        resources: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.lease_valid = lease_valid
        self.lease_until = lease_until
        """The lease's deadline by the wall clock, for tools in child processes."""
        self.record = record
        self.claim = claim
        self.agent = agent
        self.model = model
        self.worker_id = worker_id
        self.executor = executor
        self.faults = faults
        self.observer = observer or telemetry.TRACING
        self.resources = dict(resources or {})
        """Told what happens, in plain values (``charter.observer``); tracing by default."""
        self.clock = clock
        self.rand = rand or new_random()
        self.run_id = record.run_id
        self.tools = agent.registry()
        self.tool_specs: tuple[ToolSpec, ...] = ()
        self.governor: Governor | None = None
        self._needs_approval: list[tuple[str, Decision]] = []
        self.limiter = Limiter(store=store, agent=agent, tenant=record.tenant)
        self._filed: list[ApprovalRecord] = []  # approval requests to store with the next commit
        self.state = RunState()
        self.conversation = Conversation()
        self.redactor = Redactor(agent.logging) if agent.logging.active else None
        self._unflushed: list[Event] = []
        self._cancel_answer: CancelRequest | None = None  # a request the last commit found
        self._answered = False  # and nothing was appended since
        self._consumed: list[int] = []
        self._taken: set[int] = set()
        self._seq = 0
        self._hash = ""
        self._committed_seq = 0
        self._ready_at = self._claimed_at = self.clock()
        self.routes = StepRoutes(
            agent=agent, model=model, store=store, clock=self.clock, tenant=record.tenant
        )
        self._step: RoutedStep | None = None  # the model chosen for the step being asked
        self._model_attempts = 0  # calls made to it so far in this step
        self._rejected = answers.Rejections()  # this step's answered but unusable attempts

    # -- the loop -----------------------------------------------------------------------------

    @observed.run
    async def drive(self) -> RunState:
        """Work the run until it parks (waits) or finishes; return its state."""
        await self._load()
        await self._resume()
        while True:
            now = self._time_budget_reading()
            decision = decider.next_effect(
                self.state,
                self.agent.budgets,
                active_s=self._worked_s(now),
                now=now,
                cancel=await self._cancel_request(),
            )
            self._append_all(decision.events)  # cancelled, or a budget exhausted: escalated
            match decision.effect:
                case Park():
                    if self._unflushed:
                        await self._flush()
                    else:  # claimed but nothing to do (e.g. woken with no message): let go
                        await self.store.release(self.worker_id, self.run_id, self.claim.epoch)
                    return self.state
                case Settle(call=call):
                    await self._settle_unknown(call, cause="recovery")
                case TakeDecisions(calls=calls):
                    await self._take_decisions(calls)
                case RunCalls():
                    await self._execute_pending()
                case AskModel():
                    await self._model_step()
            if self._unflushed:
                await self._flush()
                self.faults.hit("after_commit")

    async def _load(self) -> None:
        events = await self.store.load_events(self.run_id)
        for event in events:
            self.state = fold(self.state, event)
            self.conversation.apply(event)
        self._seq, self._hash = events[-1].seq, events[-1].hash
        self._committed_seq = self._seq
        started = events[0].body
        assert isinstance(started, RunStarted), "a run's log starts with run_started"
        self.governor = Governor(self.agent, started, history=events)
        self.tool_specs = tuple(
            ToolSpec(name=t.name, description=t.description, parameters=t.input_schema)
            for t in self.governor.visible(self.agent.tools)
        )

    async def _resume(self) -> None:
        previous = self.claim.previous_status
        if previous == "running":
            self._append(RunResumed(reason="recovery", worker=self.worker_id))
        elif previous == "waiting" and self.state.status == "waiting":
            reason = self.state.waiting_for or "message"
            self._append(RunResumed(reason=reason, worker=self.worker_id))
        if not self.state.finished:
            await self._take_messages()

    async def _cancel_request(self) -> CancelSeen | None:
        """The request to cancel the run at this step boundary (none once it finished): the
        answer of the commit just made, if nothing was appended since; else read."""
        if self.state.finished:
            return None
        found = self._cancel_answer
        if not self._answered:
            found = await self.store.cancel_request(self.run_id)
        self._answered = False
        if found is None:
            return None
        return CancelSeen(
            request_id=found.request_id,
            requested_by=found.requested_by,
            reason=found.reason,
            requested_at=found.requested_at,
        )

    async def _take_messages(self) -> int:
        """Append the messages waiting in the run's inbox; return how many."""
        messages = [
            m
            for m in await self.store.pending_messages(self.run_id)
            if m.inbox_id not in self._taken
        ]
        for message in messages:
            self._append(MessageReceived(text=message.text, inbox_id=message.inbox_id))
            self._consumed.append(message.inbox_id)
            self._taken.add(message.inbox_id)  # consumed in the database only at the next commit
        return len(messages)

    # -- events and commits -------------------------------------------------------------------

    def _append(self, body: EventBody) -> None:
        self._seq += 1
        stored = body if self.redactor is None else self.redactor.apply(body)
        event = Event.seal(
            run_id=self.run_id, seq=self._seq, at=self.clock(), body=stored, prev_hash=self._hash
        )
        self._hash = event.hash
        self._answered = False  # the last commit's answer is about a step that went on
        self._unflushed.append(event)
        self.state = fold(self.state, event)  # the stored state folds what is stored
        if stored is not body:  # the model and policy go on with the values as they were
            event = dataclasses.replace(event, body=body)
        self.conversation.apply(event)
        if self.governor is not None:
            self.governor.observe(event)

    def _append_all(self, bodies: tuple[EventBody, ...]) -> None:
        for body in bodies:
            self._append(body)

    async def _flush(self) -> None:
        if not self._unflushed:
            return
        state = self.state
        ready_at, parked = decider.parking(state, self._ready_at)
        commit = Commit(
            run_id=self.run_id,
            worker_id=self.worker_id,
            epoch=self.claim.epoch,
            expected_seq=self._committed_seq,
            events=tuple(self._unflushed),
            state=state.model_dump_json(),
            status=state.status,
            ready_at=ready_at,
            waiting_for=state.waiting_for if state.status == "waiting" else None,
            release=parked,
            consumed_inbox=tuple(self._consumed),
            approvals=tuple(self._filed),
            awaiting=tuple(p.approval_id for p in state.pending if p.approval_id)
            if state.waiting_for == "approval"
            else (),
            cancelled=_honoured(self._unflushed),
        )
        # ConflictError: another worker owns the run now
        self._cancel_answer = await self.store.commit(commit)
        self._answered = True
        self._committed_seq = self._seq
        self._unflushed.clear()
        self._consumed.clear()
        self._filed.clear()
        await self.limiter.spend(commit.events)  # a crash right here leaves it uncounted

    # -- budgets ------------------------------------------------------------------------------

    def _check_budgets(self) -> bool:
        """False (and the run escalated) when a budget is exhausted."""
        now = self._time_budget_reading()
        exhausted = decider.over_budget(
            self.state, self.agent.budgets, active_s=self._worked_s(now), now=now
        )
        self._append_all(exhausted)
        return not exhausted

    def _time_budget_reading(self) -> float | None:
        """The clock, read for a run with a time budget only (the decider records it)."""
        return self.clock() if self.agent.budgets.timeout_s else None

    def _worked_s(self, now: float | None) -> float:
        """Work time by the time budget's clock reading (0.0: no budget, no reading)."""
        return 0.0 if now is None else self._active_s(now)

    def _active_s(self, now: float | None = None) -> float:
        """Work time so far (by the clock reading ``now``, or read now)."""
        now = self.clock() if now is None else now
        return decider.active_s(self.state, claimed_at=self._claimed_at, now=now)

    def _deadline(self) -> float | None:
        limit = self.agent.budgets.timeout_s
        return None if limit is None else self.clock() + limit - self._active_s()

    # -- the model ----------------------------------------------------------------------------

    @observed.step
    async def _model_step(self) -> None:
        if not await self._within_day_caps():
            return
        step = self._step = self.routes.choose(self.conversation.steps, self.state)
        if step.degraded is not None:
            self._append(step.degraded)
        request = ModelRequest(
            run_id=self.run_id,
            step=self.state.step,
            messages=self.conversation.window(
                self.agent.instructions, self.agent.max_context_messages
            ),
            tools=self.tool_specs,
            parameters=step.parameters,
        )
        started = self.clock()
        self._model_attempts, self._rejected = 1, answers.Rejections()
        key, response = await self.routes.lookup(step, request)
        cached = response is not None
        try:
            if response is None:
                response = await self._call_model(request)
        except ModelError as exc:
            self._append(
                ModelCallFailed(
                    step=self.state.step + 1,
                    provider=step.model.provider,
                    model=step.spec.name,
                    error=ErrorInfo(code=exc.code, message=str(exc), retryable=exc.retryable),
                    attempts=self._model_attempts,
                    finish_reason=exc.finish_reason,
                    excerpt=exc.excerpt,
                    **self._rejected.failed(),
                    **step.recorded(),
                )
            )
            if exc.retryable and not self._check_budgets():
                return  # refused answers spent the budget: the escalation names it
            self._append_all(
                decider.after_model_failure(
                    self.state,
                    code=exc.code,
                    retryable=exc.retryable,
                    message=str(exc),
                    outage_waits=step.spec.outage_waits,
                    outage_wait_s=step.spec.outage_wait_s,
                    now=self.clock(),
                )
            )
            return
        if not cached:
            await self.routes.keep(key, response)
        self.faults.hit("before_model_commit")
        self._append(
            ModelResponded(
                step=self.state.step + 1,
                provider=step.model.provider,
                model=response.model,
                content=response.content,
                tool_calls=response.tool_calls,
                latency_ms=0.0 if cached else round((self.clock() - started) * 1000, 3),
                model_version=step.version,
                parameters=step.parameters,
                cached=cached,
                cache_key=key if cached else None,
                **self._rejected.answered(response, step.spec, self._model_attempts),
                **step.recorded(),
            )
        )
        if not response.tool_calls:
            taken = await self._take_messages()
            self._append_all(decider.after_answer(response.content, new_messages=taken))
            return
        for call in response.tool_calls:
            await self._propose(call)
        if self._needs_approval:
            await self._request_approvals()
        if self._check_budgets() and any(p.stage == "proposed" for p in self.state.pending):
            await self._execute_pending()

    @observed.model_call
    async def _call_model(self, request: ModelRequest) -> ModelResponse:
        """Ask the model chosen for this step (``self._step``), retrying transient errors."""
        model = self.model if self._step is None else self._step.model
        spec = self.agent.model if self._step is None else self._step.spec
        attempts = spec.max_attempts
        deadline = self._deadline()
        for attempt in range(1, attempts + 1):
            self._model_attempts = attempt  # what model_call_failed records
            try:
                response = await model.respond(request)
                answers.check(response, spec)
                return response
            except ModelError as exc:
                self._rejected.note(attempt, exc, spec)
                delay = min(8.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + self.rand.random())
                late = deadline is not None and self.clock() + delay >= deadline
                spent = self._rejected.exhaust(self.agent.budgets, self.state)
                if not exc.retryable or attempt == attempts or late or spent:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _propose(self, call: ProposedCall) -> None:
        """Take a proposed call through the gates (``_engine/gates.py``), in order."""
        proposed, checked, error = gates.schema(call, self.tools, step=self.state.step)
        self._append(proposed)
        if checked is not None:
            error = await self._govern(checked.call_id, checked.tool, checked.arguments)
        if error is not None:
            self._append(ToolCallRejected(call_id=call.call_id, tool=call.name, error=error))

    @observed.decision
    async def _govern(
        self, call_id: str, tool: Tool, arguments: dict[str, Any]
    ) -> ErrorInfo | None:
        """The policy gate (with the kill switch as its input), then limits and spending;
        record the decision; return the error the model gets for a denial."""
        assert self.governor is not None
        switched = self.governor.policy is not None and tool.effect == "write"
        switched = switched and await self._kill_switch() is not None
        decision = self.governor.decide(tool, arguments, kill_switch=switched)
        if decision is None:
            return None
        counted = await self.limiter.apply(self.governor, tool, decision, self.state)
        decision = counted.decision
        self._append(
            decision_event(
                call_id,
                tool.name,
                decision,
                provenance=self.governor.last_provenance(),
                kill_switch=switched,
                limits=counted.limits,
                counters=counted.counters,
            )
        )
        then, error = gates.verdict(decision)
        if then == "hold":
            self._needs_approval.append((call_id, decision))
        return error

    # -- approvals ----------------------------------------------------------------------------

    async def _request_approvals(self) -> None:
        """Hold each call policy sends to a human: file the request with its event.

        The other calls of the step still run; the run waits once only held calls are left.
        """
        for call_id, decision in self._needs_approval:
            call = next(p for p in self.state.pending if p.call_id == call_id)
            tool = self.tools.get(call.tool)
            changes = await held.preview(tool, self._context(call, None), dict(call.arguments))
            event, record = held.request(
                approval_id=held.approval_id(self.run_id, call_id, self._seq + 1),
                run_id=self.run_id,
                tenant=self.record.tenant,
                agent_name=self.agent.name,
                principal=self.record.principal,
                call=call,
                tool=tool,
                decision=decision,
                changes=changes,
                now=self.clock(),
            )
            self._append(event)
            self._filed.append(record)
        self._needs_approval.clear()

    async def _take_decisions(self, calls: tuple[PendingCall, ...]) -> None:
        """Record the decisions made on held calls; wait for the rest (or their expiry)."""
        undecided: list[float] = []
        for call in calls:
            assert call.approval_id is not None
            record = await self.store.get_approval(call.approval_id)
            if record.status == "pending" and record.expires_at <= self.clock():
                record, _ = await self.store.decide_approval(
                    call.approval_id, decision="expired", by=None, note=None
                )
            if record.status == "pending":
                undecided.append(record.expires_at)
                continue
            self._append_all(
                decider.after_decision(
                    call, held.decided(call, record), role=record.role, on_expiry=record.on_expiry
                )
            )
        if len(undecided) == len(calls):
            self._append(decider.await_decisions(calls[0], undecided, now=self.clock()))

    # -- tools --------------------------------------------------------------------------------

    async def _execute_pending(self) -> None:
        for call in self.state.pending:
            rejected = decider.mismatch(call) if call.stage == "proposed" else None
            if rejected is not None:
                self._append(rejected)
        pending = [p for p in self.state.pending if p.stage == "proposed"]
        reads = [p for p in pending if p.effect == "read"]
        if len(reads) == 1:
            self._record_outcome(reads[0], await self._invoke(reads[0]))
        elif reads:
            outcomes = await asyncio.gather(*(self._invoke(p) for p in reads))
            for call, outcome in zip(reads, outcomes, strict=True):
                self._record_outcome(call, outcome)
        # Writes in the order proposed, then control calls (which may park the run), so that
        # every result of this step is in the log before the run waits.
        for call in [p for p in pending if p.effect == "write"] + [
            p for p in pending if p.effect == "control"
        ]:
            if self.state.finished or self.state.status == "waiting":
                return
            if call.effect == "control":
                self._append_all(decider.control(call, now=self.clock()))
            else:
                await self._write(call)

    async def _write(self, call: PendingCall) -> None:
        switch = await self._kill_switch()
        if switch is not None:  # checked at the last moment: it stops runs in flight too
            seen = KillSwitchSeen(tenant=switch.tenant, agent=switch.agent, reason=switch.reason)
            self._append_all(decider.blocked(call, seen, switch.action, now=self.clock()))
            return
        key = idempotency_key(self.run_id, self.state.step, call.call_id)
        tool = self.tools.get(call.tool)
        self._append(
            ToolCallStarted(
                call_id=call.call_id,
                tool=call.tool,
                idempotency_key=key,
                fencing_token=fencing_token(self.claim.epoch, call.rounds),
                execution=execution_of(tool),
            )
        )
        await self._flush()
        self.faults.hit("after_intent_commit")
        if not self.lease_valid():
            # Paused past the lease (a stopped process, a long GC, a cut network): another
            # worker may own the run and settle this intent. Never start the effect here.
            raise LeaseLost(f"run {self.run_id}: lease expired before {call.tool} could start")
        outcome = await self._invoke(self._pending(call.call_id), key, watch=True)
        self.faults.hit("after_tool_before_commit")
        if outcome.unknown:
            await self._settle_unknown(
                self._pending(call.call_id), cause=outcome.cause or "timeout"
            )
        else:
            self._record_outcome(call, outcome)

    def _pending(self, call_id: str) -> PendingCall:
        return next(p for p in self.state.pending if p.call_id == call_id)

    async def _kill_switch(self) -> KillSwitch | None:
        for switch in await self.store.kill_switches():
            if switch.covers(self.record.tenant, self.agent.name):
                return switch
        return None

    @observed.tool_call
    async def _invoke(
        self, call: PendingCall, key: str | None = None, watch: bool = False
    ) -> Outcome:
        tool = self.tools.get(call.tool)
        if key is None and self.routes.caches.serves(tool):  # a cacheable read
            return await self._invoke_cached(tool, call)
        ctx = self._context(call, key)
        killer = None
        if watch and self.faults.armed("during_tool_call"):
            killer = asyncio.get_running_loop().call_later(self.faults.during_delay_s, kill_self)
        try:
            return await self._call_tool(tool, ctx, call)
        finally:
            if killer is not None:
                killer.cancel()

    async def _call_tool(self, tool: Tool, ctx: ToolContext, call: PendingCall) -> Outcome:
        return await self.executor.call(
            tool,
            ctx,
            call.arguments,
            deadline=self._deadline(),
            lease_until=self.lease_until,
            on_overdue=self._overdue,
        )

    async def _overdue(self, report: Overdue) -> None:
        """An attempt past its timeout that cannot be stopped: on record, and for a write
        committed at once, so that the stuck call shows while the run waits for it."""
        self._append(
            ToolCallOverdue(
                call_id=report.ctx.call_id,
                tool=report.tool.name,
                attempt=report.ctx.attempt,
                timeout_s=report.timeout_s,
                execution=execution_of(report.tool),
                waiting=report.waiting,
            )
        )
        if report.waiting:
            await self._flush()

    async def _invoke_cached(self, tool: Tool, call: PendingCall) -> Outcome:
        """Answer a cacheable read from the result cache, or call it and keep a success."""
        caches = self.routes.caches
        assert self.governor is not None, "calls are made after the run's log is loaded"
        key = tool_key(tool, caller=self.governor.started, arguments=dict(call.arguments))
        hit, output = await caches.result(key)
        if hit:
            return Outcome(ok=True, output=output, duration_ms=0.0, cached=True, cache_key=key)
        outcome = await self._call_tool(tool, self._context(call, None), call)
        if outcome.ok and outcome.simulated is None:
            await caches.keep_result(key, tool, outcome.output)
        return outcome

    def _context(self, call: PendingCall, key: str | None) -> ToolContext:
        return ToolContext(
            run_id=self.run_id,
            tenant=self.record.tenant,
            principal=self.record.principal,
            step=self.state.step,
            call_id=call.call_id,
            idempotency_key=key,
            lease_valid=self.lease_valid,
            traceparent=telemetry.traceparent(self.run_id, call.call_id),
            fencing_token=fencing_token(self.claim.epoch, call.rounds) if key else 0,
            resources=self.resources,
        )

    def _record_outcome(self, call: PendingCall, outcome: Outcome) -> None:
        self._append(decider.after_outcome(call, self.tools.find(call.tool), outcome))

    # -- limits and spending (see _engine/limits.py) --------------------------------------------

    async def _within_day_caps(self) -> bool:
        """False (and the run escalated) when a daily spending cap of the policy is reached."""
        exceeded = await self.limiter.over_cap()
        if exceeded is None:
            return True
        self._append_all(decider.over_cap(exceeded, self.limiter.describe(exceeded)))
        return False
