"""`charter runs show` and `charter events` render a run's timeline as plain text when piped."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.cli import run_charter
from tests.helpers.models import Recording

from charter import Agent, ModelSpec, Runtime, ToolContext, TransientToolError, tool
from charter.cli._timeline import describe
from charter.events import (
    GENESIS_HASH,
    ApprovalRequested,
    Event,
    ModelResponded,
    ToolCallFailed,
    ToolCallOverdue,
    ToolCallReconciled,
    ToolCallStarted,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
)
from charter.models import ModelRequest, ModelResponse
from charter.policy import PolicySet
from charter.redaction import LoggingSettings
from charter.retention import RetentionPolicy, apply
from charter.store import open_store
from charter.tools import RetryPolicy

FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)
POLICY = {
    "policy": {
        "name": "refunds",
        "rules": [
            {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
            {"id": "no-wipes", "when": {"tool": "wipe"}, "then": {"deny": "never wipe orders"}},
            {
                "id": "big-refunds",
                "when": {"tool": "pay_back", "args": {"amount": {"gt": 50}}},
                "then": {
                    "require_approval": {"tier": "manager", "role": "lead", "expires_in": "1h"}
                },
            },
        ],
    }
}
SCRIPT = [
    {
        "tool_calls": [
            {"name": "look", "arguments": {"order_id": "7"}},
            {"name": "ledger", "arguments": {"order_id": "7"}},
            {"name": "wipe", "arguments": {"order_id": "7"}},
            {"name": "pay_back", "arguments": {"order_id": "7", "amount": 120}},
        ]
    },
    {"content": "refunded 120 on order 7"},
]


@tool(effect="read", cost_usd=0.002)
def look(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: mail ann@example.com"


@tool(effect="read", retry=FAST, cost_usd=0.01)
def ledger(order_id: str) -> str:
    """A ledger that is down: every attempt fails."""
    raise TransientToolError("ledger is down")


@tool(effect="write")
def wipe(order_id: str) -> str:
    """Delete an order (policy denies it)."""
    return "gone"


@tool(effect="write", risk="high")
def pay_back(ctx: ToolContext, order_id: str, amount: float) -> str:
    """Refund an order."""
    return "refunded"


class Clock:
    """A clock that moves only when the model answers: 250 ms a call (from the real now, which
    leases and approval expiry are checked against)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class SlowModel(Recording):
    def __init__(self, script: Any, clock: Clock) -> None:
        super().__init__(script)
        self._clock = clock

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self._clock.now += 0.25
        return await super().respond(request)


def _agent(logging: LoggingSettings | None = None) -> Agent:
    return Agent(
        name="refunder",
        version="3",
        instructions="Refund when asked.",
        model=ModelSpec(
            provider="scripted", script=SCRIPT, input_usd_per_mtok=1000, output_usd_per_mtok=2000
        ),
        tools=[look, ledger, wipe, pay_back],
        policy=PolicySet.from_dict(POLICY),
        **({"logging": logging} if logging else {}),
    )


def _make_run(url: str, *, logging: LoggingSettings | None = None) -> tuple[str, list[Event]]:
    """A real run: a denial, a call failing after retries, an approval granted by bob."""
    clock = Clock()
    agent = _agent(logging)

    async def main() -> tuple[str, list[Event]]:
        async with Runtime(store=open_store(url), clock=clock) as rt:
            rt.register(agent, model=SlowModel(SCRIPT, clock))
            await rt.store.set_role(principal="bob", role="lead", tenant="acme", on=True)
            run = await rt.run(
                agent, "refund 120 on 7", tenant="acme", principal="ann", roles=("support",)
            )
            assert (run.status, run.waiting_for) == ("waiting", "approval")
            [request] = await rt.approvals()
            await rt.grant(request.approval_id, by="bob", note="customer is right")
            await rt.work(run_id=run.run_id)
            return run.run_id, await rt.events(run.run_id)

    return asyncio.run(main())


def _lines(text: str, *needles: str) -> list[str]:
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def _usd(value: float) -> str:
    return f"${value:.4f}"


def test_runs_show_prints_the_summary_then_steps_with_calls_decisions_and_costs(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    run_id, events = _make_run(url)
    first, second = (e.body for e in events if isinstance(e.body, ModelResponded))
    [request] = (e.body for e in events if isinstance(e.body, ApprovalRequested))

    shown = run_charter(tmp_path, "runs", "show", run_id, "--db", url)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "\x1b[" not in out  # piped: plain text, no colour codes
    assert out.index("status") < out.index("timeline") < out.index("totals:")
    assert _lines(out, "run started: refunder v3", "tenant acme", "principal ann",
                  "roles support", "environment dev")  # fmt: skip
    # a step: its model, tokens, cost, latency, then what it proposed
    u = first.usage
    [step1] = _lines(out, "step 1 · scripted/scripted")
    assert f"{u.total} tokens ({u.input_tokens} in, {u.output_tokens} out)" in step1
    assert f"cost {_usd(first.cost_usd)}" in step1 and "latency 250.0 ms" in step1
    assert "calls look, ledger, wipe, pay_back" in step1
    assert "tools $0.0320 in" in step1  # look's $0.002 + ledger's 3 attempts at $0.01
    [step2] = _lines(out, "step 2 · scripted/scripted")
    assert "answers: refunded 120 on order 7" in step2 and "latency 250.0 ms" in step2
    # under the step: each call with its decision and its outcome
    assert _lines(out, 'look(order_id="7")', "read")
    assert _lines(out, "policy allow by reads")
    assert _lines(out, "succeeded in", "1 attempt", "cost $0.002", "via call", "order 7")
    assert _lines(
        out, "failed in", "3 attempts", "cost $0.0300", "tool_transient", "ledger is down"
    )
    assert _lines(out, "policy deny by no-wipes: never wipe orders")
    assert _lines(out, 'pay_back(order_id="7", amount=120.0)', "write")
    assert _lines(out, "policy require_approval by big-refunds")
    [asked] = _lines(out, f"approval {request.approval_id} requested from role lead (tier manager)")
    assert "risk high" in asked and "then deny" in asked
    assert _lines(out, "waiting for approval")
    assert _lines(out, f"approval {request.approval_id} granted by bob", 'note "customer is right"')
    assert _lines(out, "pay_back (call_0_3), continued:")
    assert _lines(out, "intent committed, idempotency key")
    assert _lines(out, "run finished: succeeded: refunded 120 on order 7")
    # the run's totals
    cost = first.cost_usd + second.cost_usd + 0.002 + 0.03
    [totals] = _lines(out, "totals:")
    assert "2 steps" in totals and "4 tool calls, 1 failed" in totals and "2 retries" in totals
    assert f"{first.usage.total + second.usage.total} tokens" in totals
    assert f"cost {_usd(cost)}" in totals and "tools $0.0320" in totals
    # the order: the step line, then its calls indented below it
    assert out.index(step1) < out.index("policy allow by reads") < out.index(step2)
    [look_line] = _lines(out, 'look(order_id="7")')
    [allowed] = _lines(out, "policy allow by reads", "look") or _lines(out, "policy allow")[:1]
    assert step1.index("step 1") < look_line.index("look(") < allowed.index("policy")


def test_events_lists_every_event_with_the_same_details(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    run_id, events = _make_run(url)
    [failed] = (e.body for e in events if isinstance(e.body, ToolCallFailed))

    listed = run_charter(tmp_path, "events", run_id, "--db", url)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split() == ["SEQ", "TIME", "TYPE", "SUMMARY"]
    assert len(rows) == len(events) + 1
    for event, row in zip(events, rows[1:], strict=True):
        assert row.split()[0] == str(event.seq) and event.type in row
    [model] = _lines(listed.stdout, "model_responded", "step 1")
    assert "latency 250.0 ms" in model and "cost $" in model
    [policy] = _lines(listed.stdout, "policy_evaluated", "wipe: policy deny by no-wipes")
    assert "never wipe orders" in policy
    [fail] = _lines(listed.stdout, "tool_call_failed")
    assert f"ledger: failed in {failed.duration_ms:.1f} ms · 3 attempts · cost $0.0300" in fail
    assert _lines(listed.stdout, "approval_decided", "pay_back: approval", "granted by bob")
    assert _lines(listed.stdout, "run_finished", "run finished: succeeded")

    # --json is the log as stored, unchanged by the rendering
    as_json = json.loads(run_charter(tmp_path, "events", run_id, "--db", url, "--json").stdout)
    assert [e["seq"] for e in as_json] == [e.seq for e in events]
    shown = json.loads(run_charter(tmp_path, "runs", "show", run_id, "--db", url, "--json").stdout)
    assert shown["run_id"] == run_id and shown["status"] == "succeeded"


@pytest.mark.replay_exempt("applies retention, which removes payloads a replay needs")
def test_redacted_values_and_payloads_removed_by_retention_are_marked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    run_id, _ = _make_run(url, logging=LoggingSettings(pii_redaction=True))

    async def expire() -> None:
        async with Runtime.open(url) as rt:
            policy = RetentionPolicy.from_dict({"retention": {"default": {"tool_payloads": "0s"}}})
            await apply(rt.store, policy, now=time.time() + 3600)  # the clock ran ahead

    asyncio.run(expire())
    out = run_charter(tmp_path, "runs", "show", run_id, "--db", url).stdout
    assert _lines(out, "look(arguments removed)", "[removed by retention at", ": arguments]")
    [looked] = _lines(out, "succeeded in", "1 attempt", "cost $0.002")
    assert looked.endswith(": output] [redacted: output]") and "-> [removed]" in looked
    assert _lines(out, "failed in", "3 attempts", "tool_transient: [removed]", "error.message]")
    assert _lines(out, "policy deny by no-wipes: never wipe orders")  # decisions are kept
    listed = run_charter(tmp_path, "events", run_id, "--db", url).stdout
    assert _lines(listed, "tool_call_proposed", "look(arguments removed)", "removed by retention")


def test_a_missing_run_is_one_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    assert run_charter(tmp_path, "db", "migrate", "--db", url).returncode == 0
    for args in (["runs", "show", "run_nope"], ["events", "run_nope"]):
        done = run_charter(tmp_path, *args, "--db", url)
        assert done.returncode == 3 and "run_nope" in done.stderr and not done.stdout


def test_a_kill_switch_block_shows_under_its_call_and_the_run_waits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    script = [{"tool_calls": [{"name": "pay_back", "arguments": {"order_id": "7", "amount": 5}}]}]
    agent = Agent(
        name="payer",
        instructions="Pay.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[pay_back],
    )

    async def main() -> str:
        async with Runtime.open(url) as rt:
            await rt.store.set_kill_switch(tenant="*", agent="*", on=True, reason="incident 12")
            run = await rt.run(agent, "pay 5")
            assert (run.status, run.waiting_for) == ("waiting", "kill_switch")
            return run.run_id

    run_id = asyncio.run(main())
    out = run_charter(tmp_path, "runs", "show", run_id, "--db", url).stdout
    [blocked] = _lines(out, "blocked by kill switch (wait)", "incident 12")
    [proposed] = _lines(out, 'pay_back(order_id="7", amount=5', "write")
    assert proposed.index("pay_back") < blocked.index("blocked")
    assert _lines(out, "waiting for kill_switch")
    assert "run finished" not in out and _lines(out, "totals: 1 step", "1 tool call ·")


def test_an_unknown_outcome_says_how_it_was_settled() -> None:
    def sealed(seq: int, body: Any) -> Event:
        return Event.seal(run_id="run_x", seq=seq, at=100.0 + seq, body=body, prev_hash="0" * 64)

    unknown = ToolOutcomeUnknown(call_id="c1", tool="refund", idempotency_key="k1",
                                 resolution="reconcile")  # fmt: skip
    settled = ToolCallSucceeded(call_id="c1", tool="refund", output="ok", via="reconcile",
                                duration_ms=12.5, attempts=1)  # fmt: skip
    assert describe(sealed(1, unknown)) == (
        "outcome unknown (its worker died, intent k1): settled by reconcile,"
        " asked the tool's reconcile whether it happened"
    )
    assert (
        describe(sealed(2, settled)) == 'succeeded in 12.5 ms · 1 attempt · via reconcile · -> "ok"'
    )


def test_timeouts_fences_and_late_results_have_timeline_lines() -> None:
    bodies = [
        ToolCallStarted(call_id="c", tool="pay", idempotency_key="k", fencing_token=1 << 20,
                        execution="process"),
        ToolCallOverdue(call_id="c", tool="pay", attempt=1, timeout_s=0.5, execution="thread",
                        waiting=True),
        ToolOutcomeUnknown(call_id="c", tool="pay", idempotency_key="k", resolution="reconcile",
                           fencing_token=(1 << 20) + 1, cause="timeout"),
        ToolCallReconciled(call_id="c", tool="pay", idempotency_key="k", applied=False,
                           fenced=True, fencing_token=(1 << 20) + 1),
        ToolCallSucceeded(call_id="c", tool="pay", output="ok", late=True),
    ]  # fmt: skip
    lines = [
        describe(Event.seal(run_id="run_t", seq=1, at=1.0, body=b, prev_hash=GENESIS_HASH))
        for b in bodies
    ]
    assert "fencing token 1048576" in lines[0] and "in a process" in lines[0]
    assert "past its 0.5s timeout" in lines[1] and "the run waits for it" in lines[1]
    assert "stopped at its timeout" in lines[2] and "settled by reconcile" in lines[2]
    assert "not applied" in lines[3] and "key fenced at token 1048577" in lines[3]
    assert "late (after its timeout)" in lines[4]
