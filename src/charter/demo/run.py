"""``charter demo``: a support agent works tickets against a simulated CRM, tickets and billing.

1. Six tickets are worked in this process: a how-to answered from the knowledge base, a refund
   for a damaged item, a malformed call corrected after Charter's structured error, a missing
   order number asked of the customer, a search loop stopped by a budget, and an email whose
   outcome is unknown (escalated: Charter will not send it twice, nor pretend it knows).
2. The approval and the crash: policy holds a 120.00 refund for a support lead (the run waits;
   the requester cannot approve it; the lead grants it, bound to the arguments hash). A real
   ``charter worker`` process takes the granted run and is killed with SIGKILL in the middle
   of the billing call. Another worker resumes the run, asks billing whether the refund
   happened (reconcile) and finishes: billing's ledger holds one refund.
3. The audit: every run's hash chain is verified.

Every claim is checked against the systems' own database and Charter's; a failed check makes
:func:`run_demo` return 1.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from charter.agents import Agent
from charter.demo import load_demo_agent
from charter.errors import ForbiddenError
from charter.events import (
    ApprovalDecided,
    BudgetExceeded,
    Event,
    ToolCallProposed,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
    summarize,
)
from charter.runtime import Runtime
from charter.testing.systems import DEFAULT_FILE, Systems

SYSTEMS_FILE = DEFAULT_FILE
"""The systems database in the demo's directory (where its worker processes find it too)."""
TENANT = "acme"
ASKING_TICKET, REPLY = "T-2004", "Oh sorry, it's order 1007."
CRASH_LATENCY_S = 1.2
"""During the crash scene billing takes 1.2 s per refund and writes the refund at 0.6 s..."""
CRASH_AFTER_S = 0.9
"""...and the worker kills itself 0.9 s into the call: after the money moved, before the answer."""


@dataclass(frozen=True)
class Scenario:
    ticket_id: str
    title: str
    expect: str


SCENARIOS = (
    Scenario("T-2001", "how-to, answered from the knowledge base", "succeeded"),
    Scenario("T-2002", "damaged item: refund 35.00", "succeeded"),
    Scenario("T-2003", "malformed call, corrected after the error", "succeeded"),
    Scenario("T-2004", "order number missing: asks the customer", "succeeded"),
    Scenario("T-2005", "searches in circles until a budget stops it", "escalated"),
    Scenario("T-2006", "email whose outcome is unknown", "escalated"),
)
CRASH = Scenario("T-2007", "refund 120.00: approved by a lead; worker killed mid-call", "succeeded")
LEAD = "lee"
"""The support lead who approves the crash scene's refund (role ``support_lead``)."""


def run_demo(workdir: Path, *, echo: Callable[[str], None], db_url: str | None = None) -> int:
    """Run the whole demo in ``workdir``; return 0 when every check passed, else 1."""
    return _run(_Demo, workdir, echo=echo, db_url=db_url)


def _run(
    demo: type[_Demo], workdir: Path, *, echo: Callable[[str], None], db_url: str | None
) -> int:
    """Run ``demo`` in ``workdir``, its simulated systems kept there too; its exit code."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    url = db_url or f"sqlite:///{workdir / 'charter.db'}"
    return asyncio.run(demo(workdir, url, echo).main())


class _Demo:
    def __init__(self, workdir: Path, url: str, echo: Callable[[str], None]) -> None:
        self.workdir, self.url, self.echo = workdir, url, echo
        self.systems = Systems(workdir / SYSTEMS_FILE)
        self.agent: Agent = load_demo_agent()
        self.runs: dict[str, str] = {}
        self.checks: list[tuple[str, bool]] = []

    def check(self, ok: bool, what: str) -> None:
        self.checks.append((what, ok))
        self.echo(f"  {'✓' if ok else '✗ FAILED:'} {what}")

    def section(self, title: str) -> None:
        self.echo(f"\n== {title} ==")

    async def main(self) -> int:
        self.systems.seed()
        self.intro()
        self.echo(f"  systems (simulated, own SQLite file): {self.systems.path}")
        self.echo(f"  charter store: {self.url}")
        async with Runtime.open(self.url, resources=self.systems.resources()) as rt:
            await self.scenes(rt)
            await self.audit(rt)
        return self.verdict()

    def intro(self) -> None:
        self.echo(
            "Charter demo: a support agent works tickets on a CRM, a ticket system and billing"
        )
        tools = ", ".join(t.name for t in self.agent.tools)
        self.echo(f"  agent: {self.agent.name} v{self.agent.version}; tools: {tools}")

    async def scenes(self, rt: Runtime) -> None:
        await self.tickets(rt)
        await self.crash(rt)

    def verdict(self) -> int:
        failed = [what for what, ok in self.checks if not ok]
        if failed:
            self.echo(f"\n{len(failed)} of {len(self.checks)} checks FAILED:")
            for what in failed:
                self.echo(f"  - {what}")
            return 1
        self.echo(f"\nall {len(self.checks)} checks passed")
        return 0

    async def start(self, rt: Runtime, ticket_id: str) -> str:
        ticket = self.systems.ticket(ticket_id)
        customer = self.systems.customer(ticket["customer_id"])
        text = (
            f"Ticket {ticket_id} from {customer['name']} ({customer['customer_id']},"
            f" {customer['tier']} tier)\nSubject: {ticket['subject']}\n\n{ticket['body']}"
        )
        principal = f"customer:{customer['customer_id']}"
        run_id = await rt.start(self.agent, text, tenant=TENANT, principal=principal)
        self.runs[ticket_id] = run_id
        return run_id

    # -- 1. the tickets -----------------------------------------------------------------------

    async def tickets(self, rt: Runtime) -> None:
        self.section("1. Six tickets, worked by a worker in this process")
        for scenario in SCENARIOS:
            await self.start(rt, scenario.ticket_id)
            ticket = self.systems.ticket(scenario.ticket_id)
            self.echo(f"  {scenario.ticket_id}  {ticket['subject']:<38}  -> {scenario.title}")
        self.echo(f"started {len(SCENARIOS)} runs for tenant {TENANT!r}; working them until idle")
        await rt.work(until_idle=True)
        asking = self.runs[ASKING_TICKET]
        record = await rt.get_run(asking)
        question = next(
            (str(e.body.arguments.get("question")) for e in await rt.events(asking)
             if isinstance(e.body, ToolCallProposed) and e.body.arguments
             and e.body.tool == "ask_principal"),
            "?",
        )  # fmt: skip
        self.echo(f"{ASKING_TICKET} is {record.status}; the agent asked the customer: {question!r}")
        self.check(
            record.status == "waiting" and record.lease_owner is None,
            f"{ASKING_TICKET} waits for the customer's reply, holding no worker",
        )
        self.echo(f"the customer replies {REPLY!r} (rt.send); working again")
        await rt.send(asking, REPLY)
        await rt.work(until_idle=True)
        for scenario in SCENARIOS:
            await self.timeline(rt, scenario)
        await self.status_table(rt, SCENARIOS)
        await self.ticket_checks(rt)

    async def ticket_checks(self, rt: Runtime) -> None:
        self.echo("checks:")
        for scenario in SCENARIOS:
            status = (await rt.get_run(self.runs[scenario.ticket_id])).status
            self.check(status == scenario.expect, f"{scenario.ticket_id} {status}")
        events = await self.events(rt, "T-2003")
        codes = sorted(e.body.error.code for e in events if isinstance(e.body, ToolCallRejected))
        self.check(
            codes == ["invalid_arguments", "unknown_tool"],
            f"T-2003: the bad calls were rejected before running ({', '.join(codes) or 'none'})",
        )
        events = await self.events(rt, "T-2005")
        budgets = [e.body.budget for e in events if isinstance(e.body, BudgetExceeded)]
        self.check(budgets == ["max_steps"], "T-2005: stopped by the max_steps budget")
        unknown = self.unknown(await self.events(rt, "T-2006"))
        sent = [m for m in self.systems.emails() if m["run_id"] == self.runs["T-2006"]]
        self.check(
            unknown == ["escalate"] and len(sent) == 1,
            f"T-2006: email outcome unknown -> escalated, not resent (outbox holds {len(sent)})",
        )
        for ticket_id, amount in (("T-2002", 35.0), ("T-2003", 20.0)):
            rows = [r for r in self.systems.refunds() if r["run_id"] == self.runs[ticket_id]]
            amounts = ", ".join(f"{r['amount']:.2f}" for r in rows) or "none"
            self.check(
                [r["amount"] for r in rows] == [amount],
                f"{ticket_id}: billing's ledger holds one refund of {amount:.2f} (found {amounts})",
            )

    # -- 2. the crash -------------------------------------------------------------------------

    async def crash(self, rt: Runtime) -> None:
        self.section(
            f"2. {CRASH.ticket_id}: a refund a lead must approve; the worker dies in the middle"
        )
        run_id = await self.start(rt, CRASH.ticket_id)
        await self.approval(rt, run_id)
        self.systems.latency_s = CRASH_LATENCY_S
        command = [
            sys.executable, "-m", "charter", "worker", "--db", self.url, "--until-idle",
            "--lease-seconds", "1", "--fault-point", "during_tool_call",
            "--fault-delay", str(CRASH_AFTER_S),
        ]  # fmt: skip
        self.echo(f"billing now takes {CRASH_LATENCY_S:g}s per refund; starting a worker process:")
        self.echo(
            "  $ charter worker --until-idle --lease-seconds 1"
            f" --fault-point during_tool_call --fault-delay {CRASH_AFTER_S:g}"
        )
        child = await asyncio.to_thread(
            subprocess.run, command, cwd=self.workdir, capture_output=True, text=True, timeout=120
        )
        code = child.returncode
        died = code == -signal.SIGKILL
        self.echo(f"  the worker exited with {code}" + (" (killed by SIGKILL)" if died else ""))
        if not died:
            self.echo(
                "  its stderr ended with:\n    " + "\n    ".join(child.stderr.splitlines()[-8:])
            )
        self.check(died, "the worker died by SIGKILL during the refund call")

        rows = [r for r in self.systems.refunds() if r["run_id"] == run_id]
        for r in rows:
            self.echo(f"  billing's ledger: {r['refund_id']} {r['amount']:.2f} {r['currency']}"
                      f" for order {r['order_id']}, key {r['idempotency_key']}")  # fmt: skip
        self.echo(f"  billing's ledger holds {len(rows)} refund(s) for this run: "
                  + ("the money moved, but the worker died before it heard so" if rows
                     else "the worker died before billing wrote the refund"))  # fmt: skip
        record, events = await rt.get_run(run_id), await rt.events(run_id)
        self.echo(f"  Charter's log for the run ends with: {events[-1].seq} {events[-1].type}"
                  f" ({summarize(events[-1].body)}); status {record.status}")  # fmt: skip

        self.echo(
            "  the intent is committed, the result is not: the outcome is unknown. refund is not"
            "\n  idempotent, so Charter must not simply call it again; it has a reconcile hook."
        )
        self.systems.latency_s = 0
        self.echo("resuming in this process; the new worker waits for the dead one's lease (1s)")
        began = time.monotonic()
        await rt.work(until_idle=True, lease_s=1)
        self.echo(f"  resumed and finished in {time.monotonic() - began:.1f}s")
        await self.timeline(rt, CRASH)

        self.echo("checks:")
        events = await rt.events(run_id)
        status = (await rt.get_run(run_id)).status
        self.check(status == CRASH.expect, f"{CRASH.ticket_id} {status} after the resume")
        self.check(
            self.unknown(events) == ["reconcile"],
            "the unknown refund outcome was settled by asking billing (reconcile), not by guessing",
        )
        keys = [e.body.idempotency_key for e in events if isinstance(e.body, ToolCallStarted)
                and e.body.tool == "refund"]  # fmt: skip
        counts = self.systems.ledger_counts()
        found = [counts.get(key, 0) for key in keys]
        self.check(
            len(keys) == 1 and found == [1],
            f"billing's ledger holds exactly one refund for key {keys[0] if keys else '?'}"
            f" (found {found[0] if found else 0})",
        )
        self.check(
            all(n == 1 for n in counts.values()),
            f"every refund key in billing's ledger has exactly one row ({len(counts)} keys)",
        )
        decided = [(e.seq, e.body) for e in events if isinstance(e.body, ApprovalDecided)]
        intents = [e.seq for e in events if isinstance(e.body, ToolCallStarted)]
        self.check(
            [(d.decision, d.decided_by) for _, d in decided] == [("granted", LEAD)]
            and decided[0][0] < min(intents, default=0),
            f"the log records the grant by {LEAD}, once, before the refund's intent",
        )

    async def approval(self, rt: Runtime, run_id: str) -> None:
        """Work the run until policy holds its 120.00 refund; a support lead grants it."""
        await rt.work(run_id=run_id)
        record = await rt.get_run(run_id)
        requests = await rt.approvals(tenant=TENANT)
        self.echo(f"the run is {record.status} (for {record.waiting_for}); policy held the refund:")
        for a in requests:
            changes = "; ".join(f"{c['field']}: {c['old']} -> {c['new']}" for c in a.changes or ())
            self.echo(f"  $ charter approvals show {a.approval_id}")
            self.echo(f"    call      {a.tool} {a.arguments}  (risk {a.risk})")
            self.echo(f"    held by   {', '.join(a.rule_ids)}: needs role {a.role} ({a.tier})")
            self.echo(f"    changes   {changes or '-'}")
            self.echo(f"    hash      {a.arguments_hash}")
        held = [a for a in requests if a.run_id == run_id and a.tool == "refund"]
        self.check(
            record.status == "waiting"
            and len(held) == 1
            and held[0].rule_ids == ("refund-medium",),
            f"{CRASH.ticket_id}: the 120.00 refund waits for a support lead (rule refund-medium)",
        )
        if not held:
            return
        request = held[0]
        try:
            await rt.grant(request.approval_id, by=request.requested_by)
            refused = "granted?!"
        except ForbiddenError as exc:
            refused = exc.message
        self.echo(f"  the requester tries to approve it: {refused}")
        self.check(
            "separation of duties" in refused, "the requester cannot approve its own request"
        )
        await rt.store.set_role(principal=LEAD, role="support_lead", tenant=TENANT, on=True)
        self.echo(f"  $ charter roles add {LEAD} support_lead --tenant {TENANT}")
        self.echo(
            f"  $ charter approvals grant {request.approval_id} --as {LEAD}"
            f" --arguments-hash {request.arguments_hash[:12]}…"
        )
        granted = await rt.grant(
            request.approval_id,
            by=LEAD,
            note="dent confirmed on the photos",
            arguments_hash=request.arguments_hash,
        )
        self.echo(f"  {granted.approval_id} {granted.status} by {granted.decided_by}")

    # -- 3. the audit -------------------------------------------------------------------------

    async def audit(self, rt: Runtime) -> None:
        self.section("3. The audit")
        breaks = await rt.verify()
        total = len(await rt.list_runs(limit=100_000))
        for b in breaks:
            self.echo(f"  run {b.run_id}: chain breaks at seq {b.seq}: {b.reason}")
        what = "every hash chain verifies" if not breaks else f"{len(breaks)} chain(s) broken"
        self.check(not breaks, f"audit: {total} runs, {what}")

    # -- helpers ------------------------------------------------------------------------------

    async def events(self, rt: Runtime, ticket_id: str) -> list[Event]:
        return await rt.events(self.runs[ticket_id])

    @staticmethod
    def unknown(events: Sequence[Event]) -> list[str]:
        return [e.body.resolution for e in events if isinstance(e.body, ToolOutcomeUnknown)]

    async def timeline(self, rt: Runtime, scenario: Scenario) -> None:
        run_id = self.runs[scenario.ticket_id]
        events = await rt.events(run_id)
        status = (await rt.get_run(run_id)).status
        self.echo(f"\n-- {scenario.ticket_id} {scenario.title}: {status}  ({run_id})")
        shown: list[Event | None] = list(events)
        if len(events) > 24:
            shown = [*events[:8], None, *events[-6:]]
        for e in shown:
            if e is None:
                self.echo(f"  {'':>3}  ... {len(events) - 14} more events ...")
            else:
                via = e.body.via if isinstance(e.body, ToolCallSucceeded) else ""
                mark = "  <- settled by asking billing" if via == "reconcile" else ""
                self.echo(f"  {e.seq:>3}  {e.type:<20}  {summarize(e.body)}{mark}")

    async def status_table(self, rt: Runtime, scenarios: Sequence[Scenario]) -> None:
        self.echo("\nticket  status     steps  calls  tokens  scenario")
        for s in scenarios:
            if s.ticket_id not in self.runs:
                continue
            record = await rt.get_run(self.runs[s.ticket_id])
            st = record.state
            self.echo(
                f"{s.ticket_id}  {record.status:<9}  {st['step']:>5}  {st['tool_calls']:>5}"
                f"  {st['tokens']:>6}  {s.title}"
            )
            if record.status == "escalated" and st.get("reason"):
                self.echo(f"{'':8}reason: {_clip(str(st['reason']), 92)}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
