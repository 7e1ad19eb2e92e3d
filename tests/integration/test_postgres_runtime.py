"""The engine end to end on PostgreSQL: whole runs through ``Runtime.open(pg_url)``, and three
workers (three runtimes, three connection pools) sharing one database.

Effects are counted in a ledger table of the test's own database, written by the tool itself:
each idempotency key must appear exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest
from tests.helpers import tools as helper_tools

from charter import (
    Agent,
    ModelSpec,
    Runtime,
    Tool,
    ToolContext,
    ask_principal,
    sleep,
    tool,
)
from charter._engine.state import RunState, fold_all
from charter.events import Event, RunFinished, RunResumed, ToolCallSucceeded
from charter.store import PostgresStore

T = TypeVar("T")

REFUND_SCRIPT = [
    {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]},
    {"tool_calls": [{"name": "refund", "arguments": {"order_id": "A1", "amount": 12.5}}]},
    {"content": "Refunded."},
]


def _agent(script: Any, *tools: Tool, name: str = "t") -> Agent:
    return Agent(
        name=name,
        instructions="Be helpful.",
        model=ModelSpec(provider="scripted", script=script),
        tools=list(tools),
    )


def _in_runtime(url: str, scenario: Callable[[Runtime], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Runtime.open(url) as rt:
            assert isinstance(rt.store, PostgresStore)
            return await asyncio.wait_for(scenario(rt), timeout=30)

    return asyncio.run(main())


async def _consistent_events(rt: Runtime, run_id: str) -> list[Event]:
    """The run's events, after checking that its stored state is the fold of them."""
    events = await rt.events(run_id)
    record = await rt.get_run(run_id)
    assert RunState.model_validate(record.state) == fold_all(events)
    assert record.status == fold_all(events).status
    assert (record.last_seq, record.last_hash) == (events[-1].seq, events[-1].hash)
    return events


def test_a_run_with_a_read_and_a_write_tool_succeeds_on_postgres(pg_url: str) -> None:
    agent = _agent(REFUND_SCRIPT, helper_tools.lookup, helper_tools.refund)

    async def scenario(rt: Runtime) -> None:
        record = await rt.run(agent, "refund order A1", tenant="acme", principal="ann")
        assert record.status == "succeeded"
        assert (record.state["output"], record.state["step"], record.state["tool_calls"]) == (
            "Refunded.",
            3,
            2,
        )
        assert (record.lease_owner, record.ready_at) == (None, None)
        events = await _consistent_events(rt, record.run_id)
        assert [e.type for e in events] == [
            "run_started",
            "message_received",
            "model_responded",
            "tool_call_proposed",
            "tool_call_succeeded",  # a read: no started marker
            "model_responded",
            "tool_call_proposed",
            "tool_call_started",
            "tool_call_succeeded",
            "model_responded",
            "run_finished",
        ]
        results = [e.body.output for e in events if isinstance(e.body, ToolCallSucceeded)]
        assert results[0] == {"order_id": "A1", "status": "shipped"}
        assert results[1] == f"refunded 12.5 for A1 key={record.run_id}:2:call_1_0"
        assert await rt.verify() == []
        assert await rt.store.run_counts() == {"succeeded": 1}

    _in_runtime(pg_url, scenario)


def test_ask_principal_waits_and_a_reply_resumes_the_run_on_postgres(pg_url: str) -> None:
    script = [
        {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
        {"content": "Thanks, looking at it."},
    ]
    agent = _agent(script, ask_principal)

    async def scenario(rt: Runtime) -> None:
        record = await rt.run(agent, "help me")
        assert (record.status, record.waiting_for, record.ready_at) == ("waiting", "message", None)
        assert record.lease_owner is None

        await rt.send(record.run_id, "Order A1")
        await rt.work(run_id=record.run_id)

        events = await _consistent_events(rt, record.run_id)
        done = await rt.get_run(record.run_id)
        assert (done.status, done.state["output"]) == ("succeeded", "Thanks, looking at it.")
        [resumed] = [e.body for e in events if isinstance(e.body, RunResumed)]
        assert resumed.reason == "message"
        assert await rt.store.pending_messages(record.run_id) == []
        assert await rt.verify() == []

    _in_runtime(pg_url, scenario)


def test_sleep_parks_the_run_until_its_timer_on_postgres(pg_url: str) -> None:
    script = [{"tool_calls": [{"name": "sleep", "arguments": {"seconds": 0.3}}]}, {"content": "up"}]
    agent = _agent(script, sleep)

    async def scenario(rt: Runtime) -> None:
        record = await rt.run(agent, "nap")
        assert (record.status, record.waiting_for) == ("waiting", "timer")
        assert record.ready_at is not None
        await rt.work(run_id=record.run_id)  # too early: the timer has not fired
        assert (await rt.get_run(record.run_id)).status == "waiting"
        await asyncio.sleep(max(0.0, record.ready_at - time.time()) + 0.05)
        await rt.work(run_id=record.run_id)
        assert (await rt.get_run(record.run_id)).status == "succeeded"
        await _consistent_events(rt, record.run_id)
        assert await rt.verify() == []

    _in_runtime(pg_url, scenario)


# -- three workers, one database --------------------------------------------------------------

RUNS = 30


def _charge_tool(url: str) -> Tool:
    @tool(effect="write", risk="high")
    async def charge(ctx: ToolContext, order_id: str) -> str:
        """Charge an order, once per idempotency key (the ledger counts every call)."""
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO ledger (idempotency_key, run_id, order_id) VALUES (%s, %s, %s)",
                (ctx.idempotency_key, ctx.run_id, order_id),
            )
        return f"charged {order_id}"

    return charge


@pytest.mark.replay_exempt(
    "its tools are functions local to the test, which do not import by reference:"
    " replay is unavailable outside the test by design"
)
def test_three_workers_share_thirty_runs_and_each_effect_happens_once(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (idempotency_key TEXT, run_id TEXT, order_id TEXT)")
    script = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]},
        {"tool_calls": [{"name": "charge", "arguments": {"order_id": "A1"}}]},
        {"content": "Charged."},
    ]
    agent = _agent(script, helper_tools.lookup, _charge_tool(pg_url), name="charger")

    async def main() -> None:
        runtimes = [Runtime.open(pg_url) for _ in range(3)]
        try:
            for rt in runtimes:
                rt.register(agent)
            run_ids = [await runtimes[0].start(agent, f"charge {i}") for i in range(RUNS)]
            reports = await asyncio.wait_for(
                asyncio.gather(*(rt.work(until_idle=True, concurrency=4) for rt in runtimes)),
                timeout=60,
            )
            worked = Counter(run_id for report in reports for run_id in report.worked)
            assert worked == Counter(run_ids)  # each run worked to its end exactly once
            assert all(r.errors == {} for r in reports), [r.errors for r in reports]
            assert sum(1 for r in reports if r.worked) >= 2  # the work was shared
            rt = runtimes[0]
            for run_id in run_ids:
                events = await _consistent_events(rt, run_id)
                assert (await rt.get_run(run_id)).status == "succeeded"
                assert sum(isinstance(e.body, RunFinished) for e in events) == 1
            assert await rt.verify() == []
            assert await rt.store.run_counts() == {"succeeded": RUNS}
            assert await rt.store.work_outlook() == (0, 0)
            assert await rt.store.list_workers() == []  # each worker removed itself
        finally:
            for rt in runtimes:
                await rt.close()

    asyncio.run(main())

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT idempotency_key, run_id FROM ledger").fetchall()
    keys = Counter(key for key, _ in rows)
    assert len(rows) == RUNS
    assert set(keys.values()) == {1}
    assert {key.split(":")[0] for key in keys} == {run_id for _, run_id in rows}
    assert len({run_id for _, run_id in rows}) == RUNS
