"""Cron schedules: runs started on a cron expression, one run per tick however many
processes tick (``charter schedules``, ``/v1/schedules``, ``Runtime.schedules``).

::

    async with Runtime.open("sqlite:///charter.db") as rt:
        await rt.schedules.add("digest", cron="*/15 * * * *", agent=load_agent("a.yaml"),
                               input="Summarise the open tickets", actor="ops@example.com")
        await rt.schedules.tick()      # what charter worker and charter serve do every few seconds

Cron expressions have five fields (minute hour day-of-month month day-of-week, cronsim's
syntax, ``@hourly`` and friends too) and are read in UTC.

**Exactly one run per tick.** A ticker reads the schedules whose ``next_tick_at`` has come,
starts a run for each due tick with the start idempotency key ``schedule:<schedule_id>:<tick>``
(so a tick started twice, by two tickers or after a crash, is the same run), and then moves
``next_tick_at`` past its clock reading by compare-and-set: only one ticker's move lands, a
loser's runs are the winner's runs. The tick and the clock reading that found it due are
recorded in the run's ``run_started.trigger`` (``tick_at``, ``read_at``).

**Missed ticks** (every ticker down, or the schedule's agent unusable): ``skip`` starts only
the latest missed tick; ``catch-up`` starts each missed tick, oldest first, at most
:data:`MAX_CATCH_UP` (the most recent ones; older ones are dropped and logged). Resuming a
paused schedule starts from the next tick: ticks while paused are not owed.

**The agent** is the spec stored in the ``agents`` table when the schedule was added (by its
hash), as for any run. A ticker whose process cannot build it (its tools do not import)
starts nothing, leaves the ticks owed and notes the error on the schedule (``last_error``,
shown by ``charter schedules show``); another ticker that can, or this one once it can, starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cronsim import CronSim, CronSimError

from charter.agents import Agent
from charter.errors import CharterError, IdempotencyConflictError, InputError, StoreError
from charter.events import Trigger
from charter.inputs import check_text
from charter.principals import canonical_principal
from charter.store import Advance, Missed, Schedule

if TYPE_CHECKING:
    from charter.runtime import Runtime

log = logging.getLogger("charter.schedules")

MAX_CATCH_UP = 100
"""The most missed ticks a ``catch-up`` schedule starts in one pass (the most recent)."""
DEFAULT_TICK_S = 5.0
"""How often ``charter worker`` and ``charter serve`` look for due ticks, by default."""
MISSED: tuple[Missed, ...] = ("skip", "catch-up")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def check_cron(cron: str) -> str:
    """``cron`` if cronsim reads it; InputError naming what is wrong otherwise."""
    try:
        CronSim(cron, _at(0))
    except (CronSimError, ValueError) as exc:
        raise InputError(
            f"cron expression {cron!r} is not valid: {exc}",
            hint='five fields, minute hour day-of-month month day-of-week, e.g. "*/15 * * * *"',
        ) from None
    return cron


def next_tick(cron: str, after: float) -> float:
    """The first tick of ``cron`` strictly after ``after`` (unix seconds, UTC)."""
    return next(iter(CronSim(cron, _at(after)))).timestamp()


def due_ticks(schedule: Schedule, now: float) -> list[float]:
    """The ticks to start now, oldest first: of those from ``next_tick_at`` to ``now``, the
    latest (``skip``) or the latest :data:`MAX_CATCH_UP` (``catch-up``)."""
    limit = 1 if schedule.missed == "skip" else MAX_CATCH_UP
    found: list[float] = []
    # whole minutes: every tick up to ``now`` is strictly before ``now`` + 1 minute
    for at in CronSim(schedule.cron, _at(now) + timedelta(minutes=1), reverse=True):
        tick = at.timestamp()
        if tick > now:
            continue
        if tick < schedule.next_tick_at or len(found) == limit:
            break
        found.append(tick)
    if schedule.missed == "catch-up" and len(found) == limit and found[-1] > schedule.next_tick_at:
        log.warning(
            "schedule %s: more than %d missed ticks; older ones dropped", schedule.name, limit
        )
    return found[::-1]


def tick_key(schedule: Schedule, tick: float) -> str:
    """The start idempotency key of ``schedule``'s run for ``tick``."""
    return f"schedule:{schedule.schedule_id}:{int(tick)}"


@dataclass(frozen=True, slots=True)
class Started:
    """A run a tick started (or found started by another ticker)."""

    schedule: str
    tick_at: float
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "tick_at": self.tick_at, "run_id": self.run_id}


class Schedules:
    """The schedules of one runtime's database (``Runtime.schedules``). ``tenant`` on each
    call: only that tenant's schedules (the API passes the token's); None: all."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.store = rt.store
        self._agents: dict[str, Agent] = {}

    async def add(
        self,
        name: str,
        *,
        cron: str,
        agent: Agent,
        input: str,
        actor: str,
        tenant: str = "default",
        principal: str = "anonymous",
        roles: Sequence[str] = (),
        missed: Missed = "skip",
    ) -> Schedule:
        """A new schedule, its first tick the next one after now. InputError for a bad name,
        cron expression, input or missed-ticks policy; ConflictError if the name is taken."""
        if not _NAME.fullmatch(name):
            raise InputError(
                f"schedule name {name!r} is not valid",
                hint="1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        if missed not in MISSED:
            raise InputError(f"missed-ticks policy {missed!r} is not one of {', '.join(MISSED)}")
        check_cron(cron)
        check_text(input, what="the input", max_bytes=self.rt.max_input_bytes)
        now = self.rt.clock()
        schedule = Schedule(
            name=name, schedule_id=f"sch_{secrets.token_hex(6)}", cron=cron,
            agent_hash=agent.agent_hash, agent_name=agent.name, input=input, tenant=tenant,
            principal=canonical_principal(principal), roles=tuple(roles), missed=missed,
            next_tick_at=next_tick(cron, now), paused_at=None, last_tick_at=None,
            last_run_id=None, last_error=None, created_at=now, created_by=actor,
        )  # fmt: skip
        await self.store.insert_schedule(schedule, agent_spec=agent.spec_json())
        self._agents[agent.agent_hash] = agent
        return schedule

    async def all(self, *, tenant: str | None = None) -> list[Schedule]:
        return await self.store.schedules(tenant=tenant)

    async def get(self, name: str, *, tenant: str | None = None) -> Schedule:
        return await self.store.get_schedule(name, tenant=tenant)

    async def remove(self, name: str, *, actor: str, tenant: str | None = None) -> Schedule:
        return await self.store.remove_schedule(name, tenant=tenant, actor=actor)

    async def pause(self, name: str, *, actor: str, tenant: str | None = None) -> Schedule:
        """No ticks start while paused (a ticker that read it just before may start one)."""
        found = await self.get(name, tenant=tenant)
        if found.paused_at is not None:
            return found
        return await self.store.pause_schedule(
            name, tenant=tenant, paused_at=self.rt.clock(), next_tick_at=found.next_tick_at,
            actor=actor,
        )  # fmt: skip

    async def resume(self, name: str, *, actor: str, tenant: str | None = None) -> Schedule:
        """Active again from the next tick after now (ticks while paused are not owed)."""
        found = await self.get(name, tenant=tenant)
        if found.paused_at is None:
            return found
        return await self.store.pause_schedule(
            name, tenant=tenant, paused_at=None,
            next_tick_at=next_tick(found.cron, self.rt.clock()), actor=actor,
        )  # fmt: skip

    # -- ticking ------------------------------------------------------------------------------

    async def tick(self) -> list[Started]:
        """One pass: start the due ticks of every active schedule, by this runtime's clock."""
        now = self.rt.clock()
        started: list[Started] = []
        for schedule in await self.store.due_schedules(now):
            started += await self._tick_one(schedule, now)
        return started

    async def _tick_one(self, schedule: Schedule, now: float) -> list[Started]:
        ticks = due_ticks(schedule, now)
        try:
            agent = await self._agent(schedule.agent_hash)
            started = [await self._start(schedule, agent, t, now) for t in ticks]
        except CharterError as exc:
            if isinstance(exc, StoreError):
                raise
            log.warning("schedule %s: no run started: %s", schedule.name, exc)
            error = f"{exc.code}: {exc.message}"[:500]
            keep = schedule.next_tick_at  # the ticks stay owed
            await self.store.advance_schedule(
                Advance(schedule.name, schedule.schedule_id, keep, keep, None, None, error)
            )
            return []
        moved = Advance(
            schedule.name, schedule.schedule_id, schedule.next_tick_at,
            next_tick(schedule.cron, now), ticks[-1] if ticks else None,
            started[-1].run_id if started else None, None,
        )  # fmt: skip
        if not await self.store.advance_schedule(moved):
            log.debug("schedule %s: another ticker moved it first", schedule.name)
        return started

    async def _agent(self, agent_hash: str) -> Agent:
        agent = self._agents.get(agent_hash)
        if agent is None:
            spec = json.loads(await self.store.get_agent_spec(agent_hash))
            agent = self._agents[agent_hash] = Agent.from_spec(spec)
        return agent

    async def _start(self, schedule: Schedule, agent: Agent, tick: float, now: float) -> Started:
        key = tick_key(schedule, tick)
        trigger = Trigger(kind="schedule", name=schedule.name, tick_at=tick, read_at=now)
        try:
            run_id = await self.rt.start(
                agent, schedule.input, tenant=schedule.tenant, principal=schedule.principal,
                roles=schedule.roles, principal_tenant=schedule.tenant, idempotency_key=key,
                trigger=trigger,
            )  # fmt: skip
        except IdempotencyConflictError:  # another ticker (another environment) started it
            found = await self.store.run_for_key(schedule.tenant, key)
            if found is None:
                raise
            run_id = found[0]
        return Started(schedule.name, tick, run_id)


async def tick_forever(rt: Runtime, interval_s: float, stop: asyncio.Event) -> None:
    """Tick every ``interval_s`` seconds until ``stop`` is set (``charter worker`` and
    ``charter serve`` run this beside their work); a database that is down is tried again at
    the next interval."""
    schedules = Schedules(rt)
    while not stop.is_set():
        try:
            for s in await schedules.tick():
                log.info("schedule %s: tick %s: run %s", s.schedule, _at(s.tick_at), s.run_id)
        except StoreError as exc:
            log.warning("schedules: database unusable (%s); trying again", exc)
        except Exception:  # a ticker must not die of one schedule: log it, tick again
            log.exception("schedules: tick failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
