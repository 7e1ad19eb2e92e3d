"""The runtime facade: one explicit object opened on a store URL.

::

    async with Runtime.open("sqlite:///charter.db") as rt:
        run_id = await rt.start(agent, "Where is my order 1042?", tenant="acme", principal="ann")
        await rt.work(until_idle=True)
        print((await rt.get_run(run_id)).status)

The library is async; :func:`run_sync` is the one sync entry point at the edge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from charter import approvals
from charter._engine.faults import Faults
from charter._engine.state import fold_all
from charter._engine.worker import Worker, WorkerOptions, WorkerReport
from charter.agents import Agent
from charter.audit import AuditReport, anchor, audit
from charter.clock import Clock, new_cancel_id, new_run_id, wall_clock
from charter.diff import RunDiff, diff_runs
from charter.errors import (
    IdempotencyConflictError,
    InputError,
    NotFoundError,
    StoreError,
    ToolImportError,
)
from charter.events import (
    GENESIS_HASH,
    ChainBreak,
    Event,
    MessageReceived,
    RunStarted,
    RunStatus,
    Trigger,
)
from charter.inputs import DEFAULT_MAX_INPUT_BYTES, check_text
from charter.memory import StoreMemory
from charter.models import Model, build_model
from charter.models._routing import ModelRouter
from charter.operations import Operations
from charter.principals import canonical_principal
from charter.replay import ReplayReport, replay_run
from charter.schedules import Schedules
from charter.store import (
    DEFAULT_URL,
    ApprovalRecord,
    AuditKey,
    AuditRecord,
    CancelRequest,
    NewRun,
    RunHead,
    RunRecord,
    Store,
    open_store,
)
from charter.tools import Tool

if TYPE_CHECKING:
    from charter.rerun import RerunChanges, RerunResult, Simulators

T = TypeVar("T")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class Runtime:
    """Starts runs, delivers messages, works runs and reads their logs."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock = wall_clock,
        environment: str = "dev",
        max_input_bytes: int | None = DEFAULT_MAX_INPUT_BYTES,
        resources: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.resources = dict(resources or {})
        """Named plain values for the tools of the runs worked here (``ToolContext.resources``):
        a database path, a base URL. Not recorded in the log."""
        self.clock = clock
        self.environment = environment
        """Recorded on every run started here; policy rules can match on it."""
        self.max_input_bytes = max_input_bytes
        """The largest input or message (UTF-8 bytes) taken; None: no limit."""
        self.memory = StoreMemory(store, clock=clock)
        self._agents: dict[str, Agent] = {}
        self._models: dict[str, Model] = {}
        self._resolving = asyncio.Lock()

    @classmethod
    def open(
        cls,
        url: str = DEFAULT_URL,
        *,
        environment: str = "dev",
        max_input_bytes: int | None = DEFAULT_MAX_INPUT_BYTES,
        read_only: bool = False,
        audit_key: AuditKey | Literal["env"] | None = "env",
        resources: Mapping[str, str] | None = None,
    ) -> Runtime:
        """A runtime on the store ``url`` names. ``read_only``: for reading only — the
        database is never created, migrated, locked or written (``store/_opening.py``).
        ``audit_key``: seals the audit log; by default from ``CHARTER_AUDIT_KEY(_FILE)``.
        ``resources``: named plain values for the tools (``ToolContext.resources``)."""
        store = open_store(url, mode="read" if read_only else "write", audit_key=audit_key)
        return cls(
            store=store,
            environment=environment,
            max_input_bytes=max_input_bytes,
            resources=resources,
        )

    @property
    def url(self) -> str:
        """The database, as the store's messages name it (a PostgreSQL password left out)."""
        return self.store.url

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- agents -------------------------------------------------------------------------------

    def register(
        self,
        agent: Agent,
        *,
        model: Model | None = None,
        routes: Mapping[str, Model] | None = None,
    ) -> Agent:
        """Make ``agent`` (and optionally model instances for it) known to this process.

        ``routes`` gives the model of a route by name (a step kind of the agent's
        ``model_routing``, or ``KIND.fallback``); the others are built from their specs.
        """
        self._agents[agent.agent_hash] = agent
        if model is not None or routes:
            default = model if model is not None else build_model(agent.model)
            self._models[agent.agent_hash] = ModelRouter(default, routes=routes)
        return agent

    async def _resolve(self, record: RunRecord) -> tuple[Agent, Model]:
        agent = self._agents.get(record.agent_hash)
        if agent is None:
            async with self._resolving:  # many runs claimed at once build their agent once
                agent = self._agents.get(record.agent_hash)
                if agent is None:
                    spec = json.loads(await self.store.get_agent_spec(record.agent_hash))
                    agent = self.register(Agent.from_spec(spec))
                    # and under its stored hash: a spec an older Charter wrote may differ
                    # from the canonical one (``timeout_seconds``), so may its hash
                    self._agents[record.agent_hash] = agent
        model = self._models.get(record.agent_hash)
        if model is None:  # one router per agent: each route's model is built once here
            model = self._models[record.agent_hash] = ModelRouter(build_model(agent.model))
        return agent, model

    # -- runs ---------------------------------------------------------------------------------

    async def start(
        self,
        agent: Agent,
        input: str,
        *,
        tenant: str = "default",
        principal: str = "anonymous",
        roles: Sequence[str] = (),
        run_id: str | None = None,
        principal_tenant: str | None = None,
        idempotency_key: str | None = None,
        trigger: Trigger | None = None,
    ) -> str:
        """Create a queued run; a worker will pick it up. Returns the run id.

        ``idempotency_key``: the client's key for this start, unique per tenant. A start
        that repeats one with the same agent, input, principal, roles and environment returns
        the run the first created (nothing new is stored); with anything different it raises
        IdempotencyConflictError.

        ``trigger``: the schedule tick or webhook delivery that started the run, recorded in
        ``run_started`` (not part of the key's request: a redelivery differs only in it).

        InputError when ``input`` is not UTF-8 text or exceeds ``max_input_bytes``.

        ``roles`` are the principal's roles, which policy rules may require;
        ``principal_tenant`` the tenant the principal belongs to (policy's
        ``tenant_matches_principal``), as whoever authenticated the principal knows it.
        """
        check_text(input, what="the input", max_bytes=self.max_input_bytes)
        principal = canonical_principal(principal)
        self.register(agent)
        digest = None
        if idempotency_key is not None:
            asked = [agent.agent_hash, input, principal, list(roles), principal_tenant]
            digest = _digest([*asked, self.environment])
            found = await self._keyed(tenant, idempotency_key, digest)
            if found is not None:
                return found
        run_id = run_id or new_run_id(self.clock)
        now = self.clock()
        started = Event.seal(
            run_id=run_id,
            seq=1,
            at=now,
            body=RunStarted(
                agent_name=agent.name,
                agent_version=agent.version,
                agent_hash=agent.agent_hash,
                tenant=tenant,
                principal=principal,
                input=input,
                roles=tuple(roles),
                environment=self.environment,
                principal_tenant=principal_tenant,
                idempotency_key=idempotency_key,
                instructions_hash=agent.instructions_hash,
                trigger=trigger,
            ),
            prev_hash=GENESIS_HASH,
        )
        message = Event.seal(
            run_id=run_id,
            seq=2,
            at=now,
            body=MessageReceived(text=input, source="input"),
            prev_hash=started.hash,
        )
        state = fold_all([started, message])
        new = NewRun(
            run_id=run_id,
            agent_name=agent.name,
            agent_version=agent.version,
            agent_hash=agent.agent_hash,
            agent_spec=agent.spec_json(),
            tenant=tenant,
            principal=principal,
            events=(started, message),
            state=state.model_dump_json(),
            created_at=now,
            idempotency_key=idempotency_key,
            request_digest=digest,
        )
        try:
            await self.store.create_run(new)
        except StoreError:
            if idempotency_key is None or digest is None:
                raise
            found = await self._keyed(tenant, idempotency_key, digest)  # a concurrent start
            if found is None:
                raise
            return found
        return run_id

    async def _keyed(self, tenant: str, key: str, digest: str) -> str | None:
        """The run an earlier start with ``key`` made for the same request, if any."""
        found = await self.store.run_for_key(tenant, key)
        if found is None:
            return None
        run_id, recorded = found
        if recorded != digest:
            raise IdempotencyConflictError(
                f"idempotency key {key!r} of tenant {tenant} already started run {run_id}"
                " with a different request (agent, input, principal, roles or environment)",
                hint="use a new key for a new request; retry with the same request to get"
                f" {run_id}",
            )
        return run_id

    async def send(self, run_id: str, text: str, *, tenant: str | None = None) -> int:
        """Deliver a message to a run's inbox; a run waiting for one becomes runnable.
        ``tenant``: only to a run of that tenant (as :meth:`get_run`)."""
        check_text(text, what="the message", max_bytes=self.max_input_bytes)
        if tenant is not None:
            await self.get_run(run_id, tenant=tenant)
        return await self.store.send(run_id, text)

    async def cancel(
        self, run_id: str, *, reason: str, actor: str, tenant: str | None = None
    ) -> CancelRequest:
        """Ask for a run to be cancelled, as ``actor``, for ``reason``; durable at once.
        ``tenant``: only a run of that tenant (another's is NotFoundError, as :meth:`get_run`).

        A worker honours it at the run's next step boundary (a waiting or queued run is made
        runnable for it): a write whose outcome is unknown is settled first, the approvals of
        held calls are withdrawn, and the run finishes ``cancelled`` with the request in its
        ``run_finished`` event. A second request for the run answers with the first (marked
        ``already_requested``); a run finished otherwise is ``RunStateError``.
        """
        check_text(reason, what="the reason", max_bytes=self.max_input_bytes)
        if not reason.strip():
            raise InputError(
                "the reason is empty", hint="say why the run is cancelled (--reason TEXT)"
            )
        if not actor.strip():
            raise InputError("the actor is empty", hint="name who cancels the run (--as NAME)")
        if tenant is not None:
            await self.get_run(run_id, tenant=tenant)
        return await self.store.request_cancel(
            run_id, request_id=new_cancel_id(self.clock), reason=reason, actor=actor
        )

    def worker(
        self, options: WorkerOptions | None = None, *, worker_id: str | None = None
    ) -> Worker:
        return Worker(
            store=self.store,
            resolve=self._resolve,
            options=options,
            worker_id=worker_id,
            clock=self.clock,
            resources=self.resources,
        )

    async def work(
        self,
        *,
        until_idle: bool = True,
        run_id: str | None = None,
        concurrency: int = 16,
        lease_s: float = 30.0,
        faults: Faults | None = None,
        give_up_after_s: float | None = 0.0,
    ) -> WorkerReport:
        """Work runs in this process: until idle, or (``run_id``) until that run parks.

        A database error raises at once unless ``give_up_after_s`` allows retrying (None:
        retry for ever, as ``charter worker`` does).
        """
        options = WorkerOptions(
            concurrency=concurrency,
            lease_s=lease_s,
            faults=faults or Faults(),
            give_up_after_s=give_up_after_s,
        )
        return await self.worker(options).run(until_idle=until_idle, run_id=run_id)

    async def run(
        self,
        agent: Agent,
        input: str,
        *,
        tenant: str = "default",
        principal: str = "anonymous",
        roles: Sequence[str] = (),
        principal_tenant: str | None = None,
    ) -> RunRecord:
        """Start a run and work it here until it finishes or waits."""
        run_id = await self.start(
            agent,
            input,
            tenant=tenant,
            principal=principal,
            roles=roles,
            principal_tenant=principal_tenant,
        )
        await self.work(run_id=run_id)
        return await self.store.get_run(run_id)

    # -- approvals ----------------------------------------------------------------------------

    async def approvals(
        self, *, tenant: str | None = None, status: str | None = "pending", limit: int = 100
    ) -> list[ApprovalRecord]:
        """Approval requests, oldest first (``status=None``: whatever their status)."""
        return await self.store.approvals(tenant=tenant, status=status, limit=limit)

    async def grant(
        self,
        approval_id: str,
        *,
        by: str,
        note: str | None = None,
        arguments_hash: str | None = None,
        roles: Sequence[str] = (),
    ) -> ApprovalRecord:
        """Grant a held call as ``by`` (see :mod:`charter.approvals` for the checks);
        ``roles``: those ``by`` holds in the request's tenant as authenticated (an API
        token's), besides the stored grants."""
        return await approvals.decide(
            self.store,
            approval_id,
            decision="granted",
            by=by,
            note=note,
            arguments_hash=arguments_hash,
            roles=roles,
        )

    async def deny(
        self, approval_id: str, *, by: str, reason: str, roles: Sequence[str] = ()
    ) -> ApprovalRecord:
        """Deny a held call as ``by``; the model gets the reason as the call's result."""
        return await approvals.decide(
            self.store, approval_id, decision="denied", by=by, note=reason, roles=roles
        )

    # -- reading ------------------------------------------------------------------------------

    async def get_run(self, run_id: str, *, tenant: str | None = None) -> RunRecord:
        """A run's record. ``tenant``: only a run of that tenant; another tenant's run is
        NotFoundError with the same message as an unknown id (its existence is not told)."""
        record = await self.store.get_run(run_id)
        if tenant is not None and record.tenant != tenant:
            raise NotFoundError(
                f"no run {run_id!r} in {self.store.url}", hint="'charter runs list' shows the runs"
            )
        return record

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        limit: int = 100,
        model: str | None = None,
        tenant: str | None = None,
        agent: str | None = None,
        since: float | None = None,
        before: tuple[float, str] | None = None,
        principal: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first; ``model``: only those in which that model (its served id, or
        a local file's sha256) answered or was called. ``tenant``, ``agent`` (name),
        ``principal`` (compared canonically), ``since`` (created at or after) filter;
        ``before`` is the ``(created_at, run_id)`` of the previous page's last run."""
        return await self.store.list_runs(
            status=status, limit=limit, tenant=tenant, agent=agent, since=since, before=before,
            principal=None if principal is None else canonical_principal(principal),
            model=model,
        )  # fmt: skip

    async def events(
        self, run_id: str, *, tenant: str | None = None, after_seq: int = 0
    ) -> list[Event]:
        """A run's log (``tenant``: as :meth:`get_run`); ``after_seq``: only the events after
        that sequence number."""
        await self.get_run(run_id, tenant=tenant)  # NotFoundError for an unknown id
        return await self.store.load_events(run_id, after_seq=after_seq)

    async def run_heads(
        self, run_ids: Sequence[str], *, created_since: float | None = None
    ) -> list[RunHead]:
        """Where the named runs stand (status, last event's seq), and with ``created_since``
        every run created since: what a live view polls, in one read."""
        return await self.store.run_heads(run_ids, created_since=created_since)

    async def verify(self, run_id: str | None = None) -> list[ChainBreak]:
        """Every break :meth:`audit` finds (one run, or all)."""
        return (await self.audit(run_id)).breaks

    async def audit(
        self, run_id: str | None = None, *, anchored: dict[str, Any] | None = None
    ) -> AuditReport:
        """Check the event chains, the run rows against their logs and the audit log, with
        the store's audit key and an optional anchor (:mod:`charter.audit`)."""
        if run_id is not None:
            await self.store.get_run(run_id)  # NotFoundError for an unknown id
        return await audit(self.store, run_id=run_id, key=self.store.audit_key, anchored=anchored)

    async def anchor(self, out: str | Path | None = None) -> dict[str, Any]:
        """The sealed heads to keep outside the database (``charter audit anchor``); written
        as JSON to the file ``out`` too if given (whole or not at all)."""
        anchored = await anchor(self.store, key=self.store.audit_key)
        if out is not None:
            out = Path(out)
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps(anchored, indent=2, sort_keys=True) + "\n")
            tmp.replace(out)
        return anchored

    async def audit_log(
        self, *, run_id: str | None = None, kind: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """The audit log's records, oldest first; only one run's or one kind's if given, only
        the last ``limit`` if given."""
        found = [
            r
            for r in await self.store.audit_records()
            if (run_id is None or r.run_id == run_id) and (kind is None or r.kind == kind)
        ]
        return found[-limit:] if limit else found

    async def tools(self, agents: list[Agent] | None = None) -> list[Tool]:
        """The capabilities registry: tools of the given agents, else of every stored agent
        whose tools import in this process (:meth:`capabilities` also names the others)."""
        return (await self.capabilities(agents)).tools

    async def capabilities(self, agents: list[Agent] | None = None) -> Capabilities:
        """The tools of the given agents, else of every stored agent; a stored agent whose
        tools do not import here is named in ``unavailable`` instead of failing the list."""
        unavailable: list[str] = []
        if agents is None:
            agents = await self._stored_agents(unavailable)
        found: dict[str, Tool] = {}
        for agent in agents:
            for t in agent.tools:
                found.setdefault(t.name, t)
        return Capabilities([found[name] for name in sorted(found)], unavailable)

    async def _stored_agents(self, unavailable: list[str]) -> list[Agent]:
        agents: dict[str, Agent] = {}
        failed: set[str] = set()
        for record in await self.store.list_runs(limit=10_000):
            if record.agent_hash in agents or record.agent_hash in failed:
                continue
            try:
                agents[record.agent_hash] = (await self._resolve(record))[0]
            except ToolImportError as exc:
                failed.add(record.agent_hash)
                spec = json.loads(await self.store.get_agent_spec(record.agent_hash))
                unavailable.append(
                    f"agent {record.agent_name} v{record.agent_version} (run {record.run_id},"
                    f" tools {', '.join(spec.get('tools', ()))}): {exc.message}"
                )
        return list(agents.values())

    # -- one call each for the command line and the HTTP server ---------------------------------

    @property
    def operations(self) -> Operations:
        """What an operator does to the database as a whole: status, copy, workers, kill
        switches, roles, retention, figures (:mod:`charter.operations`)."""
        return Operations(self.store, clock=self.clock)

    @property
    def schedules(self) -> Schedules:
        """The cron schedules of this database, and the ticker's pass (:mod:`charter.schedules`)."""
        return Schedules(self)

    async def approval(self, approval_id: str, *, tenant: str | None = None) -> ApprovalRecord:
        """One approval request in full (NotFoundError for an unknown id). ``tenant``: only
        a request of that tenant; another's is NotFoundError with the unknown id's message."""
        record = await self.store.get_approval(approval_id)
        if tenant is not None and record.tenant != tenant:
            raise NotFoundError(
                f"no approval request {approval_id!r} in {self.store.url}",
                hint="list them with: charter approvals list",
            )
        return record

    async def inspect(self, run_id: str) -> tuple[RunRecord, list[Event]]:
        """A run and its log (``charter runs show``)."""
        record = await self.store.get_run(run_id)  # NotFoundError for an unknown id
        return record, await self.store.load_events(run_id)

    async def replay(self, run_id: str) -> ReplayReport:
        """Re-execute a run from its log and compare the events (:mod:`charter.replay`);
        nothing is called or written."""
        return await replay_run(self.store, run_id)

    async def rerun(
        self, run_id: str, *, changes: RerunChanges, simulators: Simulators | None = None
    ) -> RerunResult:
        """A new run of ``run_id``'s input with ``changes``, served from its recording
        (:mod:`charter.rerun`)."""
        from charter.rerun import rerun  # rerun drives a Runtime: imported when asked

        return await rerun(self, run_id, changes=changes, simulators=simulators)

    async def diff(self, run_a: str, run_b: str) -> RunDiff:
        """Two runs side by side (:mod:`charter.diff`)."""
        return diff_runs(await self.events(run_a), await self.events(run_b))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The capabilities registry as this process can load it."""

    tools: list[Tool]
    unavailable: list[str]
    """One line per stored agent whose tools do not import here (its tools are not listed)."""


def tool_registry(agents: Sequence[Agent]) -> list[Tool]:
    """The tools of ``agents``, one per name (the first agent's wins), sorted by name."""
    found: dict[str, Tool] = {}
    for agent in agents:
        for t in agent.tools:
            found.setdefault(t.name, t)
    return [found[name] for name in sorted(found)]


def run_sync(awaitable: Awaitable[T] | Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code (scripts, the CLI)."""

    async def main() -> T:
        return await awaitable

    return asyncio.run(main())
