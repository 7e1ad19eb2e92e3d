"""The decider: pure decisions from a folded state and the answers the shell brought.

No store, model, tool, clock or event loop here: the state and the answers are plain values.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from charter import Budgets
from charter._engine import decider
from charter._engine.decider import (
    AskModel,
    Decision,
    Outcome,
    Park,
    Recall,
    Reconcile,
    RunCalls,
    Settle,
    TakeDecisions,
    Verdict,
)
from charter._engine.state import PendingCall, RunState
from charter.events import (
    ApprovalDecided,
    BudgetExceeded,
    CancelSeen,
    ErrorInfo,
    KillSwitchSeen,
    RunFinished,
    RunWaiting,
    ToolCallBlocked,
    ToolCallFailed,
    ToolCallReconciled,
    ToolCallRejected,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
)

SRC = Path(decider.__file__).resolve().parents[2]
BLOCKED = ("charter.store", "charter.models", "charter.tools", "charter.clock", "asyncio")


def test_the_decider_imports_with_the_store_model_and_tool_packages_blocked() -> None:
    """Its whole import closure is I/O-free: a finder refuses the store, models, tools, the
    clock and asyncio, and ``charter/__init__`` (which imports the runtime) is not run."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys, types
        BLOCKED = {BLOCKED!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ImportError("blocked: " + name)
                return None
        sys.meta_path.insert(0, Block())
        package = types.ModuleType("charter")
        package.__path__ = [{str(SRC / "charter")!r}]
        sys.modules["charter"] = package
        import charter._engine.decider
        loaded = sorted(m for m in sys.modules if m.startswith("charter"))
        print(" ".join(loaded))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "charter._engine.decider" in loaded
    assert not [m for m in loaded if m.startswith(BLOCKED)]


def test_the_decider_has_no_await_and_no_async_function() -> None:
    tree = ast.parse(Path(decider.__file__).read_text())
    found = [
        type(node).__name__
        for node in ast.walk(tree)
        if isinstance(node, ast.Await | ast.AsyncFunctionDef | ast.AsyncFor | ast.AsyncWith)
    ]
    assert found == []


# -- fixtures: plain values ---------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    name: str = "refund"
    idempotent: bool = False
    reconcile: object = None
    cost_usd: float = 0.0
    untrusted_output: bool = False


def call(stage: str = "proposed", call_id: str = "c1", **fields: object) -> PendingCall:
    return PendingCall(
        call_id=call_id,
        tool="refund",
        effect="write",
        arguments={"order": "7"},
        stage=stage,  # type: ignore[arg-type]
        idempotency_key=f"run:1:{call_id}" if stage == "started" else None,
        **fields,  # type: ignore[arg-type]
    )


def running(*pending: PendingCall, **fields: object) -> RunState:
    return RunState(status="running", pending=pending, **fields)  # type: ignore[arg-type]


BUDGETS = Budgets(max_steps=10, max_tool_calls=20)


def effect(state: RunState, budgets: Budgets = BUDGETS, now: float | None = None) -> Decision:
    return decider.next_effect(state, budgets, active_s=0.0 if now is None else 5.0, now=now)


# -- the next effect ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        RunState(status="succeeded"),
        RunState(status="escalated", step=99),
        RunState(status="waiting", waiting_for="message"),
    ],
)
def test_a_finished_or_waiting_run_parks(state: RunState) -> None:
    assert effect(state) == Decision(effect=Park())


def test_a_started_write_is_settled_before_anything_else() -> None:
    started = call("started", "c2")
    state = running(call("held", "c1"), started, step=99)  # over budget too: settle first
    assert effect(state) == Decision(effect=Settle(started))


CANCEL = CancelSeen(
    request_id="cancel_1", requested_by="lead@acme", reason="withdrawn", requested_at=50.0
)


def cancel(state: RunState) -> Decision:
    return decider.next_effect(state, BUDGETS, active_s=0.0, now=None, cancel=CANCEL)


def test_a_cancel_waits_for_a_write_whose_outcome_is_unknown() -> None:
    started = call("started", "c2")
    assert cancel(running(call("proposed", "c1"), started)) == Decision(effect=Settle(started))


def test_a_cancel_finishes_the_run_withdrawing_held_calls_and_dropping_the_rest() -> None:
    state = running(
        call("held", "c1", approval_id="ap_1"), call("proposed", "c2"), call("held", "c3"), step=99
    )
    [finished] = cancel(state).events  # over budget too: the request comes first
    withdrawn = CANCEL.model_copy(update={"withdrawn": ("ap_1",)})
    assert finished == RunFinished(
        status="cancelled", reason="cancelled by lead@acme: withdrawn", cancel=withdrawn
    )
    assert cancel(running()).effect is None  # nothing runs, the model is not asked


@pytest.mark.parametrize(
    "state", [RunState(status="succeeded"), RunState(status="waiting", waiting_for="timer")]
)
def test_a_cancel_does_nothing_to_a_finished_or_parked_state(state: RunState) -> None:
    assert cancel(state) == Decision(effect=Park())


def test_the_decisions_are_taken_when_every_call_left_is_held() -> None:
    held = (call("held", "c1"), call("held", "c2"))
    assert effect(running(*held)) == Decision(effect=TakeDecisions(held))


def test_held_calls_beside_runnable_ones_do_not_stop_the_others() -> None:
    assert effect(running(call("held", "c1"), call("proposed", "c2"))).effect == RunCalls()


def test_pending_calls_run_and_an_empty_step_asks_the_model() -> None:
    assert effect(running(call())).effect == RunCalls()
    assert effect(running()).effect == AskModel()


def test_an_exhausted_step_budget_escalates_with_the_figures() -> None:
    decision = effect(running(step=10))
    assert decision.effect is None  # commit the escalation, then park
    exceeded, finished = decision.events
    assert exceeded == BudgetExceeded(budget="max_steps", limit=10, used=10, measured_at=None)
    assert isinstance(finished, RunFinished) and finished.status == "escalated"
    assert finished.reason == "budget max_steps exhausted: used 10 of 10"


def test_a_time_budget_is_decided_on_the_clock_reading_it_records() -> None:
    budgets = Budgets(timeout_s=4.0)
    decision = decider.next_effect(running(), budgets, active_s=4.25, now=1000.5)
    exceeded = decision.events[0]
    assert isinstance(exceeded, BudgetExceeded)
    assert (exceeded.budget, exceeded.used, exceeded.measured_at) == (
        "timeout_seconds",
        4.25,
        1000.5,
    )
    # Without a clock reading there is no time decision at all.
    assert decider.next_effect(running(), budgets, active_s=99.0, now=None).effect == AskModel()


def test_work_time_counts_from_the_later_of_the_last_event_and_the_claim() -> None:
    state = running(active_s=2.0, last_at=100.0)
    assert decider.active_s(state, claimed_at=90.0, now=103.0) == 5.0
    assert decider.active_s(state, claimed_at=102.0, now=103.0) == 3.0
    assert decider.active_s(state, claimed_at=110.0, now=103.0) == 2.0  # never negative


def test_parking_wakes_timers_at_their_time_and_messages_never() -> None:
    assert decider.parking(RunState(status="waiting", waiting_for="message"), 5.0) == (None, True)
    timer = RunState(status="waiting", waiting_for="timer", wake_at=60.0)
    assert decider.parking(timer, 5.0) == (60.0, True)
    assert decider.parking(running(), 5.0) == (5.0, False)
    assert decider.parking(RunState(status="failed"), 5.0) == (None, True)


# -- the model's answer ---------------------------------------------------------------------------


def test_an_outage_is_waited_out_with_backoff_then_escalated() -> None:
    def failed(outages: int, code: str = "model_unavailable", retryable: bool = True) -> object:
        (body,) = decider.after_model_failure(
            running(model_outages=outages),
            code=code,
            retryable=retryable,
            message="down",
            outage_waits=3,
            outage_wait_s=10.0,
            now=1000.0,
        )
        return body

    assert failed(1) == RunWaiting(waiting_for="timer", wake_at=1010.0)
    assert failed(3) == RunWaiting(waiting_for="timer", wake_at=1040.0)
    escalated = failed(4)
    assert isinstance(escalated, RunFinished) and escalated.status == "escalated"
    assert escalated.reason == "model call failed (after waiting 3 time(s)): down"
    refused = failed(1, code="model_bad_request", retryable=False)
    assert isinstance(refused, RunFinished) and refused.status == "failed"


def test_an_answer_without_calls_finishes_unless_new_messages_came_in() -> None:
    assert decider.after_answer("done", new_messages=0) == (
        RunFinished(status="succeeded", output="done"),
    )
    assert decider.after_answer("done", new_messages=2) == ()


# -- tool calls ---------------------------------------------------------------------------------


def test_an_outcome_is_charged_per_attempt_made() -> None:
    priced = Tool(cost_usd=0.5, untrusted_output=True)
    ok = decider.after_outcome(call(), priced, Outcome(ok=True, output={"id": 1}, attempts=2))
    assert isinstance(ok, ToolCallSucceeded)
    assert (ok.cost_usd, ok.untrusted, ok.attempts) == (1.0, True, 2)
    open_circuit = ErrorInfo(code=decider.CIRCUIT_OPEN, message="open")
    refused = decider.after_outcome(call(), priced, Outcome(ok=False, error=open_circuit))
    assert isinstance(refused, ToolCallFailed) and refused.cost_usd == 0.0  # no call was made
    cached = Outcome(ok=True, output=1, cached=True, cache_key="k")
    assert decider.after_outcome(call(), priced, cached).cost_usd == 0.0  # type: ignore[union-attr]


def test_a_granted_call_runs_only_with_the_arguments_approved() -> None:
    from charter.events import arguments_hash

    bound = arguments_hash({"order": "7"})
    assert decider.mismatch(call(approved_hash=bound)) is None
    assert decider.mismatch(call()) is None  # nothing was approved: nothing to compare
    rejected = decider.mismatch(call(approved_hash=arguments_hash({"order": "8"})))
    assert rejected is not None and rejected.error.code == "approval_mismatch"


SWITCH = KillSwitchSeen(tenant="acme", agent="*", reason="incident 12")


def test_a_kill_switch_waits_escalates_or_tells_the_model_as_its_action_says() -> None:
    wait = decider.blocked(call(), SWITCH, "wait", now=100.0)
    assert isinstance(wait[0], ToolCallBlocked) and wait[0].switch == SWITCH
    assert wait[1] == RunWaiting(waiting_for="kill_switch", call_id="c1", wake_at=160.0)
    escalate = decider.blocked(call(), SWITCH, "escalate", now=100.0)
    assert isinstance(escalate[1], RunFinished) and escalate[1].status == "escalated"
    (reject,) = decider.blocked(call(), SWITCH, "reject", now=100.0)
    assert isinstance(reject, ToolCallRejected) and reject.error.code == "kill_switch"
    assert reject.switch == SWITCH and "incident 12" in reject.error.message


def test_control_calls_park_the_run() -> None:
    sleep = PendingCall(call_id="s", tool="sleep", effect="control", arguments={"seconds": 30})
    assert decider.control(sleep, now=100.0)[1] == RunWaiting(
        waiting_for="timer", call_id="s", wake_at=130.0
    )
    ask = PendingCall(call_id="a", tool="ask_user", effect="control", arguments={})
    assert decider.control(ask, now=100.0)[1] == RunWaiting(waiting_for="message", call_id="a")


# -- approvals ----------------------------------------------------------------------------


def _decided(decision: str, note: str | None = None) -> ApprovalDecided:
    return ApprovalDecided(
        approval_id="ap-1",
        call_id="c1",
        decision=decision,  # type: ignore[arg-type]
        decided_by="lead@acme" if decision != "expired" else None,
        decided_at=50.0,
        note=note,
        arguments_hash="h",
    )


def test_a_decision_becomes_the_events_the_model_and_the_log_see() -> None:
    held = call("held")
    granted = _decided("granted")
    assert decider.after_decision(held, granted, role="lead", on_expiry="reject") == (granted,)
    _, denied = decider.after_decision(held, _decided("denied", "too much"), role="lead",
                                       on_expiry="reject")  # fmt: skip
    assert isinstance(denied, ToolCallRejected) and denied.error.code == "approval_denied"
    assert denied.error.message == "lead@acme (lead) denied this refund call: too much"
    _, expired = decider.after_decision(held, _decided("expired"), role="lead", on_expiry="reject")
    assert isinstance(expired, ToolCallRejected) and expired.error.code == "approval_expired"
    _, escalated = decider.after_decision(
        held, _decided("expired"), role="lead", on_expiry="escalate"
    )
    assert isinstance(escalated, RunFinished) and escalated.status == "escalated"


def test_waiting_for_decisions_wakes_at_the_first_expiry_but_not_at_once() -> None:
    assert decider.await_decisions(call("held"), [500.0, 300.0], now=100.0).wake_at == 300.0
    assert decider.await_decisions(call("held"), [100.5], now=100.0).wake_at == 101.0


# -- unknown outcomes of writes -----------------------------------------------------------


def test_an_idempotent_write_is_called_again_with_a_higher_fencing_token() -> None:
    started = call("started", rounds=1)
    events, then = decider.settle(started, Tool(idempotent=True), cause="crashed", epoch=3)
    (unknown,) = events
    assert isinstance(unknown, ToolOutcomeUnknown)
    assert (unknown.resolution, unknown.cause) == ("recall", "connection")
    assert unknown.fencing_token == (3 << 20) | 2
    assert then == Recall("c1")


def test_an_idempotent_write_escalates_after_its_recalls() -> None:
    started = call("started", rounds=decider.MAX_RECALLS)
    events, then = decider.settle(started, Tool(idempotent=True), cause="timeout", epoch=1)
    assert then is None
    assert isinstance(events[0], ToolOutcomeUnknown) and events[0].resolution == "escalate"
    assert isinstance(events[1], RunFinished) and events[1].status == "escalated"


def test_a_write_without_key_or_hook_escalates_and_one_with_a_hook_is_reconciled() -> None:
    events, then = decider.settle(call("started"), Tool(), cause="recovery", epoch=1)
    assert then is None and isinstance(events[-1], RunFinished)
    events, then = decider.settle(call("started"), Tool(reconcile=print), cause="recovery", epoch=1)
    assert then == Reconcile("c1")
    assert isinstance(events[0], ToolOutcomeUnknown) and events[0].resolution == "reconcile"


@pytest.mark.parametrize(
    ("verdict", "then", "last"),
    [
        (Verdict(applied=True, output={"id": 9}), None, ToolCallSucceeded),
        (Verdict(applied=False, fenced=True), Recall("c1"), ToolCallReconciled),
        (Verdict(applied=False, fenced=False), None, RunFinished),
        (Verdict(applied=None, problem="ValueError: boom"), None, RunFinished),
    ],
)
def test_a_reconcile_verdict_is_recorded_and_acted_on_only_when_safe(
    verdict: Verdict, then: Recall | None, last: type
) -> None:
    tool = Tool(reconcile=print, cost_usd=0.25)
    events, after = decider.after_reconcile(call("started", rounds=1), tool, verdict, epoch=2)
    reconciled = events[0]
    assert isinstance(reconciled, ToolCallReconciled)
    assert (reconciled.applied, reconciled.fenced, reconciled.error) == (
        verdict.applied,
        verdict.fenced,
        verdict.problem,
    )
    assert reconciled.fencing_token == (2 << 20) | 1
    assert after == then and isinstance(events[-1], last)
    if verdict.applied:
        landed = events[-1]
        assert isinstance(landed, ToolCallSucceeded)
        assert (landed.via, landed.cost_usd, landed.output) == ("reconcile", 0.25, {"id": 9})


def test_the_same_state_and_answers_give_the_same_events() -> None:
    state = running(call("started", rounds=2))
    first = decider.settle(state.pending[0], Tool(idempotent=True), cause="timeout", epoch=7)
    second = decider.settle(state.pending[0], Tool(idempotent=True), cause="timeout", epoch=7)
    assert first == second
