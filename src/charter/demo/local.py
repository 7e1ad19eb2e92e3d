"""``charter demo --model local``: the support desk worked by a real model on this machine.

The same agent (instructions, tools, policy) as the scripted demo, with its model replaced by
the local Qwen2.5-Coder-0.5B-Instruct (``scripts/get-local-model`` fetches it) and its time
budget widened for CPU inference. A 0.5B model does not follow the scripted story, so the
checks are structural: every run finished or waits cleanly, every chain verifies, billing's
ledger holds no duplicate effect, every write that ran was allowed by policy, and every call
the policy held was decided by the support lead (refunds granted, anything else denied) and
taken into its run.

This is a reduced variant: the crash scene (a worker SIGKILLed mid-refund) needs the model to
call ``refund`` at a known moment, which a real model does not promise, so it is left to the
scripted demo.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from charter.agents import Agent
from charter.demo.run import (
    ASKING_TICKET,
    CRASH,
    LEAD,
    REPLY,
    SCENARIOS,
    TENANT,
    Scenario,
    _Demo,
    _run,
)
from charter.events import (
    ApprovalDecided,
    Event,
    ModelResponded,
    PolicyEvaluated,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
)
from charter.models import ModelSpec
from charter.runtime import Runtime

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"
TICKETS = (*SCENARIOS, CRASH)


def local_agent(agent: Agent) -> Agent:
    """``agent`` driven by the local model; its policy and tools unchanged."""
    model = ModelSpec(provider="local", name=MODEL, max_output_tokens=256)
    budgets = agent.budgets.model_copy(update={"timeout_s": 600})
    return dataclasses.replace(agent, model=model, budgets=budgets)


def run_local_demo(workdir: Path, *, echo: Callable[[str], None], db_url: str | None = None) -> int:
    """Run the local-model demo in ``workdir``; return 0 when every check passed, else 1."""
    return _run(_LocalDemo, workdir, echo=echo, db_url=db_url)


class _LocalDemo(_Demo):
    def __init__(self, workdir: Path, url: str, echo: Callable[[str], None]) -> None:
        super().__init__(workdir, url, echo)
        self.agent = local_agent(self.agent)
        self.decided: list[str] = []

    def intro(self) -> None:
        self.echo("Charter demo on a local model: the support agent, driven by a real 0.5B model")
        self.echo(f"  model: {MODEL} (local, in this process, on the CPU)")

    async def scenes(self, rt: Runtime) -> None:
        await self.work_tickets(rt)
        await self.local_checks(rt)

    async def work_tickets(self, rt: Runtime) -> None:
        self.section(f"1. {len(TICKETS)} tickets, worked by the local model in this process")
        for scenario in TICKETS:
            await self.start(rt, scenario.ticket_id)
            subject = self.systems.ticket(scenario.ticket_id)["subject"]
            self.echo(f"  {scenario.ticket_id}  {subject}")
        began = time.monotonic()
        await rt.work(until_idle=True, concurrency=1)  # one at a time: the model is one
        for scenario in TICKETS:
            record = await rt.get_run(self.runs[scenario.ticket_id])
            if record.status == "waiting" and scenario.ticket_id == ASKING_TICKET:
                self.echo(f"{scenario.ticket_id} waits; the customer replies {REPLY!r}")
                await rt.send(record.run_id, REPLY)
                await rt.work(until_idle=True)
        await self.decide_held(rt)
        self.echo(f"worked in {time.monotonic() - began:.0f}s")
        for scenario in TICKETS:
            await self.timeline(rt, Scenario(scenario.ticket_id, "local model", "any"))
        await self.status_table(rt, TICKETS)

    async def decide_held(self, rt: Runtime) -> None:
        """The support lead decides what policy held: refunds granted, anything else denied."""
        held = await rt.approvals(tenant=TENANT)
        if not held:
            return
        await rt.store.set_role(principal=LEAD, role="support_lead", tenant=TENANT, on=True)
        for request in held:
            if request.tool == "refund":
                decided = await rt.grant(request.approval_id, by=LEAD, note="checked the order")
            else:
                reason = f"{LEAD} does not send {request.tool} on the model's word alone"
                decided = await rt.deny(request.approval_id, by=LEAD, reason=reason)
            self.echo(
                f"  {request.tool} {request.arguments} held by {', '.join(request.rule_ids)}:"
                f" {decided.status} by {LEAD}"
            )
        await rt.work(until_idle=True, concurrency=1)
        self.decided = [a.approval_id for a in held]

    async def local_checks(self, rt: Runtime) -> None:
        self.echo("\nchecks (structural: a small model does not follow the script's story):")
        for scenario in TICKETS:
            record = await rt.get_run(self.runs[scenario.ticket_id])
            events = await rt.events(record.run_id)
            settled = record.status in {"succeeded", "escalated", "failed"} or (
                record.status == "waiting" and record.lease_owner is None
            )
            self.check(settled, f"{scenario.ticket_id} {record.status}, holding no worker")
            self.check(
                self.calls_fit(events), f"{scenario.ticket_id}: every proposal fits a tool or was"
                " rejected with a structured error; every write that ran was allowed by policy"
            )  # fmt: skip
        counts = self.systems.ledger_counts()
        self.check(
            all(n == 1 for n in counts.values()),
            f"billing's ledger: every refund key has exactly one row ({len(counts)} keys)",
        )
        sent = [m["idempotency_key"] for m in self.systems.emails() if m["idempotency_key"]]
        self.check(len(sent) == len(set(sent)), f"the outbox holds no email twice ({len(sent)})")
        taken = set()
        for scenario in TICKETS:
            for e in await rt.events(self.runs[scenario.ticket_id]):
                if isinstance(e.body, ApprovalDecided):
                    taken.add(e.body.approval_id)
        self.check(
            set(self.decided) <= taken,
            f"every call policy held ({len(self.decided)}) was decided by {LEAD},"
            " and its run recorded the decision",
        )

    def calls_fit(self, events: list[Event]) -> bool:
        tools = {t.name: t for t in self.agent.tools}
        rejected = {e.body.call_id for e in events if isinstance(e.body, ToolCallRejected)}
        decided = {e.body.call_id: e.body for e in events if isinstance(e.body, PolicyEvaluated)}
        for e in events:
            body = e.body
            if isinstance(body, ModelResponded) and body.provider != "local":
                return False
            if (
                isinstance(body, ToolCallProposed)
                and body.call_id not in rejected
                and (body.tool not in tools or body.arguments is None)
            ):
                return False
            if isinstance(body, ToolCallStarted):
                decision = decided.get(body.call_id)
                if body.call_id in rejected or (decision and decision.outcome == "deny"):
                    return False
                if self.agent.policy is not None and decision is None:
                    return False
        return True
