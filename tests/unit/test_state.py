"""The durable state is a pure fold over the event log."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from tests.helpers.strategies import event_chains, seal_chain

from charter._engine.state import RunState, fold, fold_all
from charter.events import (
    ErrorInfo,
    Event,
    MessageReceived,
    ModelResponded,
    ProposedCall,
    RunFinished,
    RunResumed,
    RunStarted,
    RunWaiting,
    ToolCallFailed,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallSucceeded,
    Usage,
)


def _responded(step: int, tokens: tuple[int, int], *calls: str) -> ModelResponded:
    return ModelResponded(
        step=step,
        provider="scripted",
        model="scripted",
        prompt_hash="h",
        content=None if calls else "all done",
        tool_calls=tuple(ProposedCall(call_id=c, name="t", arguments="{}") for c in calls),
        usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]),
    )


def _realistic_run() -> list[Event]:
    """A run that looks up, is rejected once, asks the principal, waits, writes, and answers."""
    bodies = [
        RunStarted(
            agent_name="a", agent_version="1", agent_hash="h", tenant="t", principal="p", input="hi"
        ),
        MessageReceived(text="hi", source="input"),
        _responded(1, (10, 5), "c1", "c2"),
        ToolCallProposed(step=1, call_id="c1", tool="lookup", effect="read", arguments={"q": 1}),
        ToolCallProposed(step=1, call_id="c2", tool="nope", effect="unknown", arguments={}),
        ToolCallRejected(
            call_id="c2", tool="nope", error=ErrorInfo(code="unknown_tool", message="x")
        ),
        ToolCallSucceeded(call_id="c1", tool="lookup", output={"ok": True}),
        _responded(2, (20, 3), "c3"),
        ToolCallProposed(step=2, call_id="c3", tool="ask_principal", effect="control"),
        ToolCallSucceeded(call_id="c3", tool="ask_principal", output={"status": "asked"}),
        RunWaiting(waiting_for="message", call_id="c3"),
        RunResumed(reason="message", worker="w1"),
        MessageReceived(text="order A1", inbox_id=1),
        _responded(3, (30, 4), "c4"),
        ToolCallProposed(step=3, call_id="c4", tool="refund", effect="write", arguments={}),
        ToolCallStarted(call_id="c4", tool="refund", idempotency_key="r:3:c4"),
        ToolCallFailed(
            call_id="c4", tool="refund", error=ErrorInfo(code="tool_raised", message="x")
        ),
        _responded(4, (40, 2)),
        RunFinished(status="succeeded", output="all done"),
    ]
    return seal_chain("run_1", bodies)


def test_fold_over_a_realistic_run_gives_the_expected_counters() -> None:
    state = fold_all(_realistic_run())
    assert state.status == "succeeded"
    assert state.step == 4
    assert state.tool_calls == 4
    assert state.tokens == 15 + 23 + 34 + 42
    assert state.pending == ()
    assert state.output == "all done"
    assert state.waiting_for is None
    assert state.finished


def test_fold_moves_status_queued_running_waiting_running_succeeded() -> None:
    statuses = []
    state = RunState()
    for event in _realistic_run():
        state = fold(state, event)
        if not statuses or statuses[-1] != state.status:
            statuses.append(state.status)
    assert statuses == ["queued", "running", "waiting", "running", "succeeded"]


def test_fold_tracks_pending_calls_through_their_stages() -> None:
    events = _realistic_run()
    states = []
    state = RunState()
    for event in events:
        state = fold(state, event)
        states.append(state)

    after_proposals = states[4]  # c1 and c2 proposed
    assert [p.call_id for p in after_proposals.pending] == ["c1", "c2"]
    assert after_proposals.pending[0].arguments == {"q": 1}
    assert [p.call_id for p in states[6].pending] == []  # c2 rejected, c1 succeeded

    waiting = states[10]
    assert waiting.status == "waiting"
    assert waiting.waiting_for == "message"

    started = states[15]
    assert len(started.pending) == 1
    assert started.pending[0].stage == "started"
    assert started.pending[0].idempotency_key == "r:3:c4"
    assert states[16].pending == ()


def test_time_spent_waiting_is_not_active_time() -> None:
    # Events are one second apart; the run waits between RunWaiting (index 10) and
    # RunResumed (index 11), and is queued before its first model response (index 2).
    state = fold_all(_realistic_run())
    assert state.active_s == (len(_realistic_run()) - 1) - 2 - 1
    assert state.last_at == _realistic_run()[-1].at


def test_fold_is_pure() -> None:
    events = _realistic_run()
    assert fold_all(events) == fold_all(events)
    first = RunState()
    fold(first, events[0])
    assert first == RunState()  # the input state is not changed


@settings(max_examples=60)
@given(chain=event_chains(min_size=0, max_size=12), data=st.data())
def test_folding_in_two_parts_equals_folding_at_once(
    chain: list[Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(chain)), label="cut")
    a, b = chain[:cut], chain[cut:]
    assert fold_all(b, fold_all(a)) == fold_all(a + b)
