"""Cron schedules through the library, on SQLite and PostgreSQL, with a clock the test moves:
one run per tick however many tickers race, the tick recorded, skip and catch-up, pause."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from charter.agents import Agent, load_agent
from charter.errors import ConflictError, InputError, NotFoundError
from charter.runtime import Runtime
from charter.schedules import MAX_CATCH_UP, due_ticks, next_tick
from charter.store import open_store

T = TypeVar("T")
# 2026-01-01 00:00:00 UTC, a Thursday: a whole hour, so "*/15" ticks at :00 :15 :30 :45.
T0 = 1_767_225_600.0


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    (tmp_path / "script.json").write_text(json.dumps([{"content": "done"}] * 500))
    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent:\n  name: digest\n  instructions: |\n    Summarise.\n"
        "  model: {provider: scripted, script: script.json}\n"
    )
    return load_agent(path)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def with_runtimes(url: str, clock: Clock, n: int, work: Callable[..., Awaitable[T]]) -> T:
    async def main() -> T:
        rts = [Runtime(store=open_store(url), clock=clock) for _ in range(n)]
        try:
            return await work(*rts)
        finally:
            for rt in rts:
                await rt.close()

    return asyncio.run(main())


def test_cron_ticks_are_read_in_utc_and_missed_ones_bounded() -> None:
    assert next_tick("*/15 * * * *", T0) == T0 + 900  # strictly after
    assert next_tick("*/15 * * * *", T0 + 1) == T0 + 900
    assert next_tick("0 9 * * *", T0) == T0 + 9 * 3600


def test_a_schedule_starts_one_run_per_tick_with_the_tick_recorded(
    store_url: str, agent: Agent
) -> None:
    clock = Clock(T0 + 60)

    async def scenario(a: Runtime, b: Runtime, c: Runtime) -> None:
        s = await a.schedules.add(
            "digest", cron="*/15 * * * *", agent=agent, input="Summarise the queue",
            tenant="acme", principal="ops@acme.com", missed="catch-up", actor="admin",
        )  # fmt: skip
        assert s.next_tick_at == T0 + 900
        assert await a.schedules.tick() == []  # nothing due yet
        clock.now = T0 + 3600 + 5  # ticks :15 :30 :45 and 1:00 are due
        # three tickers at once, on three connections: each tick is still one run
        passes = await asyncio.gather(*(rt.schedules.tick() for rt in (a, b, c)))
        ticks = {(x.tick_at, x.run_id) for p in passes for x in p}
        assert sorted(t for t, _ in ticks) == [T0 + 900 * k for k in (1, 2, 3, 4)]
        runs = await a.list_runs(limit=100)
        assert len(runs) == 4
        assert {r.run_id for r in runs} == {run_id for _, run_id in ticks}
        for r in runs:
            started = (await a.events(r.run_id))[0].body
            assert started.trigger is not None and started.trigger.kind == "schedule"  # type: ignore[attr-defined]
            assert started.trigger.read_at == clock.now  # type: ignore[attr-defined]
            assert (r.tenant, r.principal) == ("acme", "ops@acme.com")
        assert await a.schedules.tick() == []  # next_tick_at moved past now
        after = await a.schedules.get("digest")
        assert after.next_tick_at == T0 + 3600 + 900 and after.last_tick_at == T0 + 3600
        kinds = [r.kind for r in await a.audit_log()]
        assert "schedule_added" in kinds

    with_runtimes(store_url, clock, 3, scenario)


def test_skip_starts_only_the_latest_missed_tick_and_catch_up_is_bounded(
    store_url: str, agent: Agent
) -> None:
    clock = Clock(T0)

    async def scenario(rt: Runtime) -> None:
        add = rt.schedules.add
        await add("skipper", cron="* * * * *", agent=agent, input="x", actor="a")
        await add("catcher", cron="* * * * *", agent=agent, input="y", actor="a", missed="catch-up")
        clock.now = T0 + 3 * 3600  # every process was down for three hours: 180 ticks missed
        started = await rt.schedules.tick()
        skipped = [s.tick_at for s in started if s.schedule == "skipper"]
        caught = [s.tick_at for s in started if s.schedule == "catcher"]
        assert skipped == [T0 + 3 * 3600]
        assert len(caught) == MAX_CATCH_UP and caught[-1] == T0 + 3 * 3600
        assert caught == sorted(caught) and len(set(caught)) == MAX_CATCH_UP

    with_runtimes(store_url, clock, 1, scenario)


def test_a_paused_schedule_starts_nothing_and_resumes_from_the_next_tick(
    store_url: str, agent: Agent
) -> None:
    clock = Clock(T0)

    async def scenario(rt: Runtime) -> None:
        await rt.schedules.add("p", cron="*/5 * * * *", agent=agent, input="x", actor="a")
        paused = await rt.schedules.pause("p", actor="ops")
        assert paused.paused_at == T0
        clock.now = T0 + 3600
        assert await rt.schedules.tick() == []
        resumed = await rt.schedules.resume("p", actor="ops")
        assert resumed.paused_at is None and resumed.next_tick_at == T0 + 3600 + 300
        assert await rt.schedules.tick() == []  # ticks while paused are not owed
        removed = await rt.schedules.remove("p", actor="ops")
        assert removed.name == "p"
        assert await rt.schedules.all() == []
        kinds = [r.kind for r in await rt.audit_log()]
        for kind in ("schedule_paused", "schedule_resumed", "schedule_removed"):
            assert kind in kinds

    with_runtimes(store_url, clock, 1, scenario)


def test_bad_schedules_are_refused_and_nothing_is_written(store_url: str, agent: Agent) -> None:
    clock = Clock(T0)

    async def scenario(rt: Runtime) -> None:
        add = rt.schedules.add
        with pytest.raises(InputError, match="not valid"):
            await add("x", cron="every minute", agent=agent, input="x", actor="a")
        with pytest.raises(InputError, match="name"):
            await add("no spaces", cron="* * * * *", agent=agent, input="x", actor="a")
        with pytest.raises(InputError, match="missed"):
            await add("x", cron="* * * * *", agent=agent, input="x", actor="a", missed="all")  # type: ignore[arg-type]
        assert await rt.schedules.all() == []
        await add("x", cron="* * * * *", agent=agent, input="x", actor="a")
        with pytest.raises(ConflictError, match="exists"):
            await add("x", cron="* * * * *", agent=agent, input="other", actor="a")
        with pytest.raises(NotFoundError):
            await rt.schedules.get("x", tenant="other-tenant")
        with pytest.raises(NotFoundError):
            await rt.schedules.remove("nope", actor="a")

    with_runtimes(store_url, clock, 1, scenario)


def test_a_tick_whose_agent_cannot_be_built_stays_owed_with_the_error_shown(
    store_url: str, tmp_path: Path
) -> None:
    clock = Clock(T0)
    (tmp_path / "tools_gone.py").write_text(
        "from charter import tool\n\n@tool(effect='read')\n"
        "def lookup(order_id: str) -> str:\n    return 'x'\n"
    )
    path = tmp_path / "agent2.yaml"
    path.write_text(
        "agent:\n  name: gone\n  instructions: |\n    x\n"
        "  model: {provider: scripted, script: []}\n"
        '  tools: ["tools_gone:lookup"]\n'
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        gone = load_agent(path)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tools_gone", None)

    async def scenario(rt: Runtime) -> None:
        await rt.schedules.add("g", cron="* * * * *", agent=gone, input="x", actor="a")
        clock.now = T0 + 120

    with_runtimes(store_url, clock, 1, scenario)

    async def later(rt: Runtime) -> None:  # another process, where the tools do not import
        assert await rt.schedules.tick() == []
        s = await rt.schedules.get("g")
        assert s.next_tick_at == T0 + 60  # still owed
        assert s.last_error is not None and "tools_gone" in s.last_error
        assert await rt.list_runs() == []

    with_runtimes(store_url, clock, 1, later)


def test_due_ticks_counts_from_the_first_owed_tick(agent: Agent) -> None:
    from charter.store import Schedule

    s = Schedule(
        "n", "sch_1", "*/10 * * * *", agent.agent_hash, "digest", "x", "t", "p", (), "catch-up",
        T0 + 600, None, None, None, None, T0, "a",
    )  # fmt: skip
    assert due_ticks(s, T0 + 1799) == [T0 + 600, T0 + 1200]
    assert due_ticks(s, T0 + 599) == []
