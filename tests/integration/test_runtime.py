"""End to end through Runtime: scripted models, real tools, a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.helpers import tools as helper_tools

from charter import (
    Agent,
    Budgets,
    ModelSpec,
    NotFoundError,
    RetryPolicy,
    Runtime,
    ScriptedModel,
    Tool,
    ToolContext,
    TransientToolError,
    ask_principal,
    sleep,
    tool,
)
from charter._engine.state import RunState, fold_all
from charter.events import (
    BudgetExceeded,
    Event,
    RunFinished,
    RunResumed,
    RunStarted,
    RunWaiting,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallSucceeded,
)
from charter.models import Message, ModelRequest, ModelResponse

T = TypeVar("T")
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)


class RecordingModel:
    """A double of the LLM: answers from a script and keeps every request it was sent."""

    provider = "scripted"

    def __init__(self, script: Any, *, name: str = "scripted") -> None:
        self.name = name
        self._script = ScriptedModel(script, name=name)
        self.requests: list[ModelRequest] = []

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return await self._script.respond(request)


def _agent(script: Any, *tools: Tool, budgets: Budgets | None = None, name: str = "t") -> Agent:
    return Agent(
        name=name,
        instructions="Be helpful.",
        model=ModelSpec(provider="scripted", script=script),
        tools=list(tools),
        budgets=budgets or Budgets(),
    )


def _in_runtime(url: str, scenario: Callable[[Runtime], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Runtime.open(url) as rt:
            return await asyncio.wait_for(scenario(rt), timeout=20)

    return asyncio.run(main())


async def _run(rt: Runtime, agent: Agent, text: str, script: Any) -> tuple[str, RecordingModel]:
    model = RecordingModel(script)
    rt.register(agent, model=model)
    record = await rt.run(agent, text)
    return record.run_id, model


async def _consistent_events(rt: Runtime, run_id: str) -> list[Event]:
    """The run's events, after checking that its stored state is the fold of them."""
    events = await rt.events(run_id)
    record = await rt.get_run(run_id)
    assert RunState.model_validate(record.state) == fold_all(events)
    assert record.status == fold_all(events).status
    assert record.last_seq == events[-1].seq
    assert record.last_hash == events[-1].hash
    return events


def _bodies(events: list[Event], kind: type[T]) -> list[T]:
    return [e.body for e in events if isinstance(e.body, kind)]


def _tool_messages(request: ModelRequest) -> dict[str, Any]:
    return {
        m.tool_call_id: json.loads(m.content or "null")
        for m in request.messages
        if m.role == "tool" and m.tool_call_id
    }


# -- a whole run ------------------------------------------------------------------------------

REFUND_SCRIPT = [
    {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]},
    {"tool_calls": [{"name": "refund", "arguments": {"order_id": "A1", "amount": 12.5}}]},
    {"content": "Refunded."},
]


def test_a_run_succeeds_and_its_stored_state_is_the_fold_of_its_log(db_url: str) -> None:
    agent = _agent(REFUND_SCRIPT, helper_tools.lookup, helper_tools.refund)

    async def scenario(rt: Runtime) -> None:
        run_id, _ = await _run(rt, agent, "refund order A1", REFUND_SCRIPT)
        events = await _consistent_events(rt, run_id)
        record = await rt.get_run(run_id)
        assert record.status == "succeeded"
        assert record.state["output"] == "Refunded."
        assert record.state["step"] == 3
        assert record.state["tool_calls"] == 2
        assert record.lease_owner is None
        assert [e.type for e in events] == [
            "run_started",
            "message_received",
            "model_responded",
            "tool_call_proposed",
            "tool_call_succeeded",
            "model_responded",
            "tool_call_proposed",
            "tool_call_started",
            "tool_call_succeeded",
            "model_responded",
            "run_finished",
        ]
        assert [e.seq for e in events] == list(range(1, 12))
        assert all(e.run_id == run_id for e in events)

    _in_runtime(db_url, scenario)


@pytest.mark.replay_exempt(
    "its tools are functions local to the test, which do not import by reference:"
    " replay is unavailable outside the test by design"
)
def test_read_calls_proposed_together_run_concurrently(db_url: str) -> None:
    script = [
        {"tool_calls": [{"name": "left", "arguments": {}}, {"name": "right", "arguments": {}}]},
        {"content": "both done"},
    ]

    async def scenario(rt: Runtime) -> None:
        barrier = asyncio.Barrier(2)

        async def meet() -> str:
            # Each call waits for the other: called one after the other, neither would meet.
            try:
                await asyncio.wait_for(barrier.wait(), timeout=2)
            except TimeoutError:
                return "alone"
            return "together"

        @tool(effect="read", retry=1)
        async def left() -> str:
            return await meet()

        @tool(effect="read", retry=1)
        async def right() -> str:
            return await meet()

        run_id, _ = await _run(rt, _agent(script, left, right), "go", script)
        events = await _consistent_events(rt, run_id)
        outputs = {b.tool: b.output for b in _bodies(events, ToolCallSucceeded)}
        assert outputs == {"left": "together", "right": "together"}

    _in_runtime(db_url, scenario)


# -- proposals that do not fit a contract ---------------------------------------------------


def test_bad_proposals_are_rejected_and_returned_to_the_model_and_the_run_continues(
    db_url: str,
) -> None:
    script = [
        {
            "tool_calls": [
                {"name": "delete_everything", "arguments": {}},
                {"name": "lookup", "arguments": "{not json"},
                {"name": "lookup", "arguments": "[1, 2]"},
                {"name": "lookup", "arguments": {"id": "A1"}},
                {"name": "lookup", "arguments": {"order_id": "A1"}},
            ]
        },
        {"content": "done"},
    ]
    agent = _agent(script, helper_tools.lookup)

    async def scenario(rt: Runtime) -> None:
        run_id, model = await _run(rt, agent, "look it up", script)
        events = await _consistent_events(rt, run_id)
        rejected = {b.call_id: b for b in _bodies(events, ToolCallRejected)}
        assert {k: v.error.code for k, v in rejected.items()} == {
            "call_0_0": "unknown_tool",
            "call_0_1": "malformed_arguments",
            "call_0_2": "malformed_arguments",
            "call_0_3": "invalid_arguments",
        }
        assert "delete_everything" in rejected["call_0_0"].error.message
        assert "lookup" in rejected["call_0_0"].error.message  # names the tools there are
        assert "order_id" in rejected["call_0_3"].error.message
        assert [b.call_id for b in _bodies(events, ToolCallSucceeded)] == ["call_0_4"]

        assert len(model.requests) == 2
        seen = _tool_messages(model.requests[1])
        for call_id, body in rejected.items():
            assert seen[call_id] == {"error": body.error.model_dump(mode="json")}
        assert seen["call_0_4"] == {"order_id": "A1", "status": "shipped"}
        assert (await rt.get_run(run_id)).status == "succeeded"

    _in_runtime(db_url, scenario)


# -- budgets ----------------------------------------------------------------------------------


async def _escalated_on(rt: Runtime, run_id: str, budget: str) -> BudgetExceeded:
    events = await _consistent_events(rt, run_id)
    assert (await rt.get_run(run_id)).status == "escalated"
    [exceeded] = _bodies(events, BudgetExceeded)
    assert exceeded.budget == budget
    [finished] = _bodies(events, RunFinished)
    assert finished.status == "escalated"
    assert finished.reason is not None and budget in finished.reason
    assert events[-1].body == finished
    return exceeded


LOOKUP_FOREVER = [{"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]}] * 10


def test_max_steps_escalates_the_run(db_url: str) -> None:
    agent = _agent(LOOKUP_FOREVER, helper_tools.lookup, budgets=Budgets(max_steps=2))

    async def scenario(rt: Runtime) -> None:
        run_id, model = await _run(rt, agent, "loop", LOOKUP_FOREVER)
        exceeded = await _escalated_on(rt, run_id, "max_steps")
        assert (exceeded.limit, exceeded.used) == (2, 2)
        assert len(model.requests) == 2

    _in_runtime(db_url, scenario)


def test_max_tool_calls_escalates_the_run_before_the_extra_call_runs(db_url: str) -> None:
    agent = _agent(LOOKUP_FOREVER, helper_tools.lookup, budgets=Budgets(max_tool_calls=2))

    async def scenario(rt: Runtime) -> None:
        run_id, _ = await _run(rt, agent, "loop", LOOKUP_FOREVER)
        exceeded = await _escalated_on(rt, run_id, "max_tool_calls")
        assert exceeded.limit == 2
        assert exceeded.used > exceeded.limit
        events = await rt.events(run_id)
        assert len(_bodies(events, ToolCallSucceeded)) == 2

    _in_runtime(db_url, scenario)


def test_max_tokens_total_escalates_the_run(db_url: str) -> None:
    agent = _agent(LOOKUP_FOREVER, helper_tools.lookup, budgets=Budgets(max_tokens_total=5))

    async def scenario(rt: Runtime) -> None:
        run_id, model = await _run(rt, agent, "loop", LOOKUP_FOREVER)
        exceeded = await _escalated_on(rt, run_id, "max_tokens_total")
        assert exceeded.limit == 5
        assert exceeded.used >= 5
        assert len(model.requests) == 1

    _in_runtime(db_url, scenario)


@pytest.mark.replay_exempt(
    "its tools are functions local to the test, which do not import by reference:"
    " replay is unavailable outside the test by design"
)
def test_timeout_s_escalates_the_run(db_url: str) -> None:
    script = [{"tool_calls": [{"name": "slow", "arguments": {}}]}] * 10

    finished: list[str] = []

    @tool(effect="read", retry=1, timeout_s=30)
    async def slow() -> str:
        await asyncio.sleep(3)
        finished.append("late")
        return "late"

    agent = _agent(script, slow, budgets=Budgets(timeout_s=0.2))

    async def scenario(rt: Runtime) -> None:
        run_id, _ = await _run(rt, agent, "wait", script)
        assert finished == [], "the budget did not cut the slow call short"
        exceeded = await _escalated_on(rt, run_id, "timeout_seconds")
        assert exceeded.limit == 0.2
        assert exceeded.used >= 0.2
        [failed] = _bodies(await rt.events(run_id), ToolCallFailed)
        assert failed.error.code == "timeout"

    _in_runtime(db_url, scenario)


# -- tool calls -------------------------------------------------------------------------------


@pytest.mark.replay_exempt(
    "its tools are functions local to the test, which do not import by reference:"
    " replay is unavailable outside the test by design"
)
def test_a_write_gets_a_stable_idempotency_key_and_a_read_gets_none(db_url: str) -> None:
    script = [
        {
            "tool_calls": [
                {"name": "pay", "arguments": {"amount": 5}},
                {"name": "peek", "arguments": {}},
            ]
        },
        {"content": "paid"},
    ]
    write_keys: list[str | None] = []
    read_keys: list[str | None] = []

    @tool(effect="write", retry=FAST_RETRY)
    def pay(ctx: ToolContext, amount: int) -> str:
        write_keys.append(ctx.idempotency_key)
        if len(write_keys) == 1:
            raise TransientToolError("gateway busy")
        return "ok"

    @tool(effect="read")
    def peek(ctx: ToolContext) -> str:
        read_keys.append(ctx.idempotency_key)
        return "balance 10"

    async def scenario(rt: Runtime) -> None:
        run_id, _ = await _run(rt, _agent(script, pay, peek), "pay 5", script)
        events = await _consistent_events(rt, run_id)
        proposed = next(b for b in _bodies(events, ToolCallProposed) if b.tool == "pay")
        expected = f"{run_id}:{proposed.step}:{proposed.call_id}"
        assert expected == f"{run_id}:1:call_0_0"
        assert write_keys == [expected, expected]  # the retry carries the same key
        [started] = _bodies(events, ToolCallStarted)
        assert started.idempotency_key == expected
        assert read_keys == [None]
        pay_result = next(b for b in _bodies(events, ToolCallSucceeded) if b.tool == "pay")
        assert pay_result.attempts == 2

    _in_runtime(db_url, scenario)


@pytest.mark.replay_exempt(
    "its tools are functions local to the test, which do not import by reference:"
    " replay is unavailable outside the test by design"
)
def test_a_tool_that_raises_fails_the_call_and_the_run_continues(db_url: str) -> None:
    script = [
        {"tool_calls": [{"name": "explode", "arguments": {"order_id": "A1"}}]},
        {"content": "sorry"},
    ]

    @tool(effect="read", retry=FAST_RETRY)
    def explode(order_id: str) -> str:
        raise ValueError(f"order {order_id} is corrupt")

    async def scenario(rt: Runtime) -> None:
        run_id, model = await _run(rt, _agent(script, explode), "check", script)
        events = await _consistent_events(rt, run_id)
        [failed] = _bodies(events, ToolCallFailed)
        assert failed.error.code == "tool_raised"
        assert failed.error.message == "ValueError: order A1 is corrupt"
        assert failed.attempts == 1
        assert _tool_messages(model.requests[1])[failed.call_id]["error"]["message"] == (
            "ValueError: order A1 is corrupt"
        )
        assert (await rt.get_run(run_id)).status == "succeeded"

    _in_runtime(db_url, scenario)


@pytest.mark.replay_exempt(
    "its tools are functions local to the test, which do not import by reference:"
    " replay is unavailable outside the test by design"
)
def test_a_hanging_sync_tool_fails_with_timeout(db_url: str) -> None:
    script = [{"tool_calls": [{"name": "hang", "arguments": {}}]}, {"content": "gave up"}]
    release = threading.Event()

    returned: list[str] = []

    @tool(effect="read", retry=1, timeout_s=0.1)
    def hang() -> str:
        release.wait(10)
        returned.append("finally")
        return "finally"

    async def scenario(rt: Runtime) -> None:
        try:
            run_id, _ = await _run(rt, _agent(script, hang), "go", script)
            assert returned == [], "the run waited for the hanging tool"
        finally:
            release.set()  # let the abandoned thread end
        events = await _consistent_events(rt, run_id)
        [failed] = _bodies(events, ToolCallFailed)
        assert failed.error.code == "timeout"
        assert "0.1s" in failed.error.message
        assert (await rt.get_run(run_id)).status == "succeeded"

    _in_runtime(db_url, scenario)


# -- waiting ----------------------------------------------------------------------------------


def test_ask_principal_waits_and_a_reply_resumes_the_run(db_url: str) -> None:
    script = [
        {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
        {"content": "Thanks, looking at it."},
    ]
    agent = _agent(script, ask_principal)

    async def scenario(rt: Runtime) -> None:
        run_id, model = await _run(rt, agent, "help me", script)
        record = await rt.get_run(run_id)
        assert (record.status, record.waiting_for) == ("waiting", "message")
        assert record.ready_at is None
        assert record.lease_owner is None
        await _consistent_events(rt, run_id)

        await rt.send(run_id, "Order A1")
        await rt.work(run_id=run_id)

        events = await _consistent_events(rt, run_id)
        assert (await rt.get_run(run_id)).status == "succeeded"
        [resumed] = _bodies(events, RunResumed)
        assert resumed.reason == "message"
        last_request = model.requests[-1]
        assert last_request.step == 1
        assert Message(role="user", content="Order A1") in last_request.messages
        roles = [m.role for m in last_request.messages]
        assert roles == ["system", "user", "assistant", "tool", "user"]

    _in_runtime(db_url, scenario)


def test_sleep_parks_the_run_until_its_timer(db_url: str) -> None:
    script = [{"tool_calls": [{"name": "sleep", "arguments": {"seconds": 0.3}}]}, {"content": "up"}]
    agent = _agent(script, sleep)

    async def scenario(rt: Runtime) -> None:
        before = time.time()
        run_id, _ = await _run(rt, agent, "nap", script)
        record = await rt.get_run(run_id)
        assert (record.status, record.waiting_for) == ("waiting", "timer")
        assert record.ready_at is not None
        assert record.ready_at >= before + 0.3
        [waiting] = _bodies(await _consistent_events(rt, run_id), RunWaiting)
        assert waiting.wake_at == record.ready_at

        await rt.work(run_id=run_id)  # too early: the timer has not fired
        assert (await rt.get_run(run_id)).status == "waiting"

        await asyncio.sleep(max(0.0, record.ready_at - time.time()) + 0.05)
        await rt.work(run_id=run_id)
        events = await _consistent_events(rt, run_id)
        assert (await rt.get_run(run_id)).status == "succeeded"
        [resumed] = [e for e in events if isinstance(e.body, RunResumed)]
        assert resumed.body.reason == "timer"
        assert resumed.at >= record.ready_at

    _in_runtime(db_url, scenario)


# -- reading and verifying --------------------------------------------------------------------


@pytest.mark.replay_exempt("tampers with an event of the log")
def test_verify_is_empty_for_good_runs_and_names_a_tampered_event(
    db_url: str, db_path: Path
) -> None:
    agent = _agent(REFUND_SCRIPT, helper_tools.lookup, helper_tools.refund)

    async def scenario(rt: Runtime) -> None:
        good, _ = await _run(rt, agent, "refund order A1", REFUND_SCRIPT)
        bad, _ = await _run(rt, agent, "refund order A1", REFUND_SCRIPT)
        assert await rt.verify() == []
        assert await rt.verify(bad) == []

        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute(
                "UPDATE event_log SET payload = replace(payload, '\"A1\"', '\"B2\"')"
                " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) AND seq = 4",
                (bad,),
            )

        [broken] = await rt.verify()
        assert (broken.run_id, broken.seq) == (bad, 4)
        assert await rt.verify(good) == []

    _in_runtime(db_url, scenario)


@pytest.mark.replay_exempt("deletes the last event of a log")
def test_verify_reports_a_run_whose_last_event_was_deleted(db_url: str, db_path: Path) -> None:
    agent = _agent(REFUND_SCRIPT, helper_tools.lookup, helper_tools.refund)

    async def scenario(rt: Runtime) -> None:
        run_id, _ = await _run(rt, agent, "refund order A1", REFUND_SCRIPT)
        with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
            conn.execute(
                "DELETE FROM event_log"
                " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) AND seq = 11",
                (run_id,),
            )
        [broken] = await rt.verify()
        assert broken.run_id == run_id
        assert "head" in broken.reason

    _in_runtime(db_url, scenario)


def test_a_run_whose_stored_spec_spells_the_time_budget_timeout_seconds_still_runs(
    db_url: str, db_path: Path
) -> None:
    # An older Charter stored specs with ``timeout_seconds`` (now ``timeout_s``): a worker of
    # this version, which never saw the agent, rebuilds it from that spec and works the run.
    script = [{"content": "done"}]
    agent = _agent(script, budgets=Budgets(timeout_s=60))

    async def start(rt: Runtime) -> str:
        return await rt.start(agent, "go")

    run_id = _in_runtime(db_url, start)
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        [(agent_hash, text)] = conn.execute("SELECT agent_hash, spec FROM agents").fetchall()
        spec = json.loads(text)
        spec["budgets"]["timeout_seconds"] = spec["budgets"].pop("timeout_s")
        old = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        conn.execute("UPDATE agents SET spec = ? WHERE agent_hash = ?", (old, agent_hash))

    async def resume(rt: Runtime) -> None:
        await rt.work(run_id=run_id)
        record = await rt.get_run(run_id)
        assert (record.status, record.state["output"]) == ("succeeded", "done")

    _in_runtime(db_url, resume)


def test_events_of_an_unknown_run_is_not_found(db_url: str) -> None:
    async def scenario(rt: Runtime) -> None:
        with pytest.raises(NotFoundError):
            await rt.events("run_does_not_exist")

    _in_runtime(db_url, scenario)


def test_tools_lists_the_capabilities_registry(db_url: str) -> None:
    agent = _agent(REFUND_SCRIPT, helper_tools.refund, helper_tools.lookup)

    async def first(rt: Runtime) -> None:
        assert [t.name for t in await rt.tools([agent])] == ["lookup", "refund"]
        assert await rt.tools() == []
        await _run(rt, agent, "refund order A1", REFUND_SCRIPT)

    async def second(rt: Runtime) -> None:
        # A fresh runtime rebuilds the agent from its stored spec, importing its tools.
        listed = await rt.tools()
        assert [t.describe() for t in listed] == [
            helper_tools.lookup.describe(),
            helper_tools.refund.describe(),
        ]

    _in_runtime(db_url, first)
    _in_runtime(db_url, second)


# -- failures of the model and of the worker --------------------------------------------------


def test_a_model_error_fails_the_run_with_model_call_failed(db_url: str) -> None:
    script = [{"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]}]
    agent = _agent(script, helper_tools.lookup)

    async def scenario(rt: Runtime) -> None:
        run_id, _ = await _run(rt, agent, "go", script)  # the script runs out at step 1
        events = await _consistent_events(rt, run_id)
        assert (await rt.get_run(run_id)).status == "failed"
        assert events[-2].type == "model_call_failed"
        [finished] = _bodies(events, RunFinished)
        assert finished.reason is not None and "model call failed" in finished.reason

    _in_runtime(db_url, scenario)


def test_time_spent_queued_does_not_count_against_timeout_s(db_url: str) -> None:
    script = [{"content": "quick answer"}]
    agent = _agent(script, budgets=Budgets(timeout_s=0.3))

    async def scenario(rt: Runtime) -> None:
        run_id = await rt.start(agent, "hello")
        await asyncio.sleep(0.5)  # longer than the budget, but the run has not started work
        await rt.work(run_id=run_id)
        assert (await rt.get_run(run_id)).status == "succeeded"
        await _consistent_events(rt, run_id)

    _in_runtime(db_url, scenario)


def _unimportable_agent() -> Agent:
    @tool
    def local_only(x: int) -> int:  # its reference names a function's locals: not importable
        return x

    return _agent([{"content": "hi"}], local_only, name="unimportable")


@pytest.mark.replay_exempt("its agent's tool is made unimportable on purpose")
def test_work_on_a_run_whose_agent_cannot_be_rebuilt_reports_the_error_and_returns(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="charter.worker")  # one line per retry otherwise

    async def start(rt: Runtime) -> str:
        return await rt.start(_unimportable_agent(), "hello")

    run_id = _in_runtime(db_url, start)

    async def work_elsewhere(rt: Runtime) -> None:
        # Another process: the agent is not registered here and must be rebuilt from its spec.
        try:
            report = await asyncio.wait_for(rt.work(run_id=run_id), timeout=3)
        except TimeoutError:
            pytest.fail("work(run_id=...) kept reclaiming a run that fails the same way each time")
        assert run_id in report.errors
        assert "local_only" in report.errors[run_id]

    _in_runtime(db_url, work_elsewhere)


def test_a_model_raising_an_unexpected_exception_does_not_hang_run(db_url: str) -> None:
    class BrokenModel:
        provider = "scripted"
        name = "broken"

        async def respond(self, request: ModelRequest) -> ModelResponse:
            raise RuntimeError("provider SDK bug")

    agent = _agent([{"content": "unused"}], name="broken")

    async def scenario(rt: Runtime) -> None:
        rt.register(agent, model=BrokenModel())
        try:
            await asyncio.wait_for(rt.run(agent, "hello"), timeout=3)
        except TimeoutError:
            pytest.fail("Runtime.run() never returned after the model raised RuntimeError")
        except Exception:
            pass  # surfacing an error to the caller is an acceptable ending; hanging is not

    _in_runtime(db_url, scenario)


@pytest.mark.replay_exempt(
    "its tools are functions local to the test, which do not import by reference:"
    " replay is unavailable outside the test by design"
)
def test_a_message_sent_while_the_run_works_is_answered_before_it_finishes(db_url: str) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    @tool(effect="read")
    async def slow() -> str:
        entered.set()
        await gate.wait()
        return "looked"

    script = [
        {"tool_calls": [{"name": "slow", "arguments": {}}]},
        {"content": "first answer"},
        {"content": "answer to the late message"},
    ]
    agent = _agent(script, slow)

    async def scenario(rt: Runtime) -> list[Event]:
        run_id = await rt.start(agent, "hello")
        work = asyncio.create_task(rt.work(run_id=run_id))
        await entered.wait()
        await rt.send(run_id, "one more thing")
        gate.set()
        await work
        return await _consistent_events(rt, run_id)

    events = _in_runtime(db_url, scenario)
    types = [e.type for e in events]
    late = types.index("message_received", 2)
    assert types[late - 1] == "model_responded"  # read right after the would-be final answer
    assert events[late].body.text == "one more thing"  # type: ignore[union-attr]
    assert events[-1].body.output == "answer to the late message"  # type: ignore[union-attr]


def test_the_instructions_hash_is_recorded_once_not_on_every_response(db_url: str) -> None:
    agent = _agent(REFUND_SCRIPT, helper_tools.lookup, helper_tools.refund)

    async def scenario(rt: Runtime) -> list[Event]:
        run_id, _ = await _run(rt, agent, "refund order A1", REFUND_SCRIPT)
        return await rt.events(run_id)

    events = _in_runtime(db_url, scenario)
    started, responses = events[0], [e for e in events if e.type == "model_responded"]
    assert isinstance(started.body, RunStarted)
    assert started.body.instructions_hash == agent.instructions_hash
    assert len(responses) == 3
    assert all("prompt_hash" not in e.payload and e.schema_version == 3 for e in responses)
