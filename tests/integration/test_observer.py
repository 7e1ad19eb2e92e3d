"""A run told to an observer of one's own (``WorkerOptions(observer=...)``), in plain values:
the claim, each step, model call, policy decision and tool call, each scope closed once."""

from __future__ import annotations

import asyncio
from typing import Any

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import PolicyEvaluated
from charter.observer import (
    ModelAnswered,
    ModelCalled,
    ModelFailed,
    RunClaimed,
    RunEnded,
    ToolCalled,
    ToolEnded,
)
from charter.policy import PolicySet
from charter.worker import WorkerOptions


@tool(effect="read")
def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}"


@tool(effect="write", cost_usd=0.01)
def refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    return "refunded"


POLICY = {
    "policy": {
        "name": "p",
        "rules": [
            {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
            {"id": "refunds", "when": {"tool": "refund"}, "then": "allow"},
        ],
    }
}


class Recorder:
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.open = 0

    def enabled(self) -> bool:
        return True

    def _scope(self, kind: str, value: Any) -> Recorder.Scope:
        self.log.append((kind, value))
        self.open += 1
        return Recorder.Scope(self, kind)

    def run_claimed(self, run: RunClaimed) -> Recorder.Scope:
        return self._scope("run", run)

    def step_started(self, run_id: str, step: int) -> Recorder.Scope:
        return self._scope("step", (run_id, step))

    def model_called(self, call: ModelCalled) -> Recorder.Scope:
        return self._scope("model", call)

    def policy_decided(self, decision: PolicyEvaluated) -> None:
        self.log.append(("decided", decision))

    def tool_called(self, call: ToolCalled) -> Recorder.Scope:
        return self._scope("tool", call)

    class Scope:
        def __init__(self, recorder: Recorder, kind: str) -> None:
            self.recorder, self.kind = recorder, kind

        def ended(self, result: RunEnded | ModelAnswered | ModelFailed | ToolEnded) -> None:
            self.recorder.log.append((f"{self.kind} ended", result))

        def failed(self, exc: Exception) -> None:
            self.recorder.log.append((f"{self.kind} failed", exc))

        def close(self) -> None:
            self.recorder.open -= 1
            self.recorder.log.append((f"{self.kind} closed", None))


def test_an_observer_is_told_the_run_in_plain_values(db_url: str) -> None:
    script = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "7"}}]},
        {"tool_calls": [{"name": "refund", "arguments": {"order_id": "7", "amount": 5}}]},
        {"content": "done"},
    ]
    agent = Agent(
        name="refunder",
        version="2",
        instructions="Refund when asked.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[lookup, refund],
        policy=PolicySet.from_dict(POLICY),
    )
    recorder = Recorder()

    async def main() -> str:
        async with Runtime.open(db_url) as rt:
            run_id = await rt.start(agent, "refund order 7", tenant="acme", principal="ann")
            await rt.worker(WorkerOptions(observer=recorder)).run(until_idle=True)
            return run_id

    run_id = asyncio.run(main())
    kinds = [kind for kind, _ in recorder.log]
    assert kinds[0] == "run" and kinds[-2:] == ["run ended", "run closed"]
    assert recorder.open == 0
    claimed = recorder.log[0][1]
    assert (claimed.run_id, claimed.agent_name, claimed.tenant) == (run_id, "refunder", "acme")
    assert [v[1] for k, v in recorder.log if k == "step"] == [1, 2, 3]
    assert [v.step for k, v in recorder.log if k == "model"] == [1, 2, 3]
    tools = [v for k, v in recorder.log if k == "tool"]
    assert [(t.tool, t.step) for t in tools] == [("lookup", 1), ("refund", 2)]
    assert tools[1].decision is not None and tools[1].decision.rule_ids == ("refunds",)
    assert tools[1].idempotency_key is not None
    assert [v.tool for k, v in recorder.log if k == "decided"] == ["lookup", "refund"]
    ended = [v for k, v in recorder.log if k == "tool ended"]
    assert [(e.outcome, e.attempts, e.cost_usd) for e in ended] == [
        ("succeeded", 1, 0.0),
        ("succeeded", 1, 0.01),
    ]
    finished = recorder.log[-2][1]
    assert isinstance(finished, RunEnded)
    assert (finished.status, finished.steps, finished.tool_calls) == ("succeeded", 3, 2)
