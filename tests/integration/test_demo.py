"""The support-desk demo end to end, asserted on the systems' database and Charter's, not on text.

It starts a real ``charter worker`` process and kills it with SIGKILL in the middle of a refund.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from charter.demo.run import CRASH, SCENARIOS, SYSTEMS_FILE, run_demo
from charter.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    RunStarted,
    ToolCallStarted,
    ToolCallSucceeded,
    ToolOutcomeUnknown,
)
from charter.runtime import Runtime
from charter.store import RunRecord
from charter.testing.systems import Systems

pytestmark = pytest.mark.durability

EXPECTED = {
    "T-2001": "succeeded",  # how-to from the knowledge base
    "T-2002": "succeeded",  # damaged item, refund 35.00
    "T-2003": "succeeded",  # malformed call corrected
    "T-2004": "succeeded",  # asked for the order number, then answered
    "T-2005": "escalated",  # max_steps budget
    "T-2006": "escalated",  # email with an unknown outcome
    "T-2007": "succeeded",  # refund 120.00, worker killed mid-call, resumed
}


async def _read_runs(url: str) -> dict[str, tuple[RunRecord, list[Event]]]:
    async with Runtime.open(url) as rt:
        found = {}
        for record in await rt.list_runs(limit=1000):
            events = await rt.events(record.run_id)
            started = events[0].body
            assert isinstance(started, RunStarted)
            found[started.input.split()[1]] = (record, events)  # "Ticket T-2001 from ..."
        assert await rt.verify() == []
        return found


def test_demo_runs_every_scenario_and_refunds_exactly_once(tmp_path: Path) -> None:
    lines: list[str] = []
    code = run_demo(tmp_path, echo=lines.append)

    assert code == 0, "\n".join(lines)
    assert {s.ticket_id for s in (*SCENARIOS, CRASH)} == set(EXPECTED)

    runs = asyncio.run(_read_runs(f"sqlite:///{tmp_path / 'charter.db'}"))
    assert {ticket: record.status for ticket, (record, _) in runs.items()} == EXPECTED
    assert all(record.tenant == "acme" for record, _ in runs.values())

    systems = Systems(tmp_path / SYSTEMS_FILE, create=False)
    ledger = systems.refunds()
    by_ticket = {
        ticket: [(r["order_id"], r["amount"]) for r in ledger if r["run_id"] == rec.run_id]
        for ticket, (rec, _) in runs.items()
    }
    assert by_ticket["T-2002"] == [("1002", 35.0)]
    assert by_ticket["T-2003"] == [("1003", 20.0)]  # the rejected "a lot" call never ran
    assert by_ticket["T-2007"] == [("1010", 120.0)]
    assert sum(len(rows) for rows in by_ticket.values()) == len(ledger) == 3

    counts = systems.ledger_counts()
    refund_keys = [
        e.body.idempotency_key
        for _, events in runs.values()
        for e in events
        if isinstance(e.body, ToolCallStarted) and e.body.tool == "refund"
    ]
    assert sorted(refund_keys) == sorted(counts)
    assert set(counts.values()) == {1}

    # The crash run: the intent was committed, the worker died, the resume asked billing.
    crash_events = runs["T-2007"][1]
    unknown = [e.body for e in crash_events if isinstance(e.body, ToolOutcomeUnknown)]
    assert [(u.tool, u.resolution) for u in unknown] == [("refund", "reconcile")]
    settled = [
        e.body
        for e in crash_events
        if isinstance(e.body, ToolCallSucceeded) and e.body.tool == "refund"
    ]
    # The worker is killed after billing wrote the refund (the usual case: billing's row is
    # older than the recovery) and reconcile finds it; had it died before, reconcile says "not
    # applied" and the one call is made then. Either way the ledger above holds one row.
    recovered_at = next(e.at for e in crash_events if isinstance(e.body, ToolOutcomeUnknown))
    row = next(r for r in ledger if r["run_id"] == runs["T-2007"][0].run_id)
    expected_via = "reconcile" if row["created_at"] < recovered_at else "call"
    assert [s.via for s in settled] == [expected_via]
    assert any(e.type == "run_resumed" for e in crash_events)
    # Before any of that, policy held the 120.00 refund and a support lead granted it.
    requested = [e.body for e in crash_events if isinstance(e.body, ApprovalRequested)]
    assert [(r.tool, r.rule_ids, r.role) for r in requested] == [
        ("refund", ("refund-medium",), "support_lead")
    ]
    decided = [e.body for e in crash_events if isinstance(e.body, ApprovalDecided)]
    assert [(d.decision, d.decided_by) for d in decided] == [("granted", "lee")]

    # The email went out once and its unknown outcome escalated instead of a second send.
    email_run = runs["T-2006"][0].run_id
    assert [m["recipient"] for m in systems.emails() if m["run_id"] == email_run] == [
        "farid@lagoon-mail.example"
    ]
    assert [
        e.body.resolution for e in runs["T-2006"][1] if isinstance(e.body, ToolOutcomeUnknown)
    ] == ["escalate"]

    # The ticket system holds the agents' updates, once each.
    assert systems.ticket("T-2002")["status"] == "resolved"
    assert len(systems.ticket("T-2007")["notes"]) == 1
    assert systems.ticket("T-2005")["status"] == "open"


def test_ticket_updates_honour_the_key_and_refunds_do_not(tmp_path: Path) -> None:
    systems = Systems(tmp_path / "systems.db")
    systems.seed()
    first = systems.update_ticket("T-2001", "resolved", "answered", "key-1")
    again = systems.update_ticket("T-2001", "open", "changed?", "key-1")
    assert again == first
    assert systems.ticket("T-2001")["status"] == "resolved"

    systems.refund("1001", 10.0, "key-2", "run-x")
    systems.refund("1001", 10.0, "key-2", "run-x")
    assert systems.ledger_counts() == {"key-2": 2}  # billing is not idempotent: that is the point
    assert systems.find_refund("key-2") is not None
    assert systems.find_refund("nope") is None
    with pytest.raises(ValueError, match="refundable remainder"):
        systems.refund("1001", 250.0, "key-3", "run-x")
    with pytest.raises(LookupError):
        systems.refund("9999", 1.0, "key-4", "run-x")


def test_two_runtimes_in_one_process_point_the_tools_at_their_own_systems(
    tmp_path: Path,
) -> None:
    """Nothing process-wide: each runtime names its systems database in ``resources``."""
    from charter import Agent, ModelSpec
    from charter.demo.tools import read_ticket

    script = [
        {"tool_calls": [{"name": "read_ticket", "arguments": {"ticket_id": "T-9"}}]},
        {"content": "read"},
    ]
    agent = Agent(
        name="reader",
        instructions="Read the ticket.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[read_ticket],
    )

    async def read(systems: Systems) -> str:
        url = f"sqlite:///{systems.path.with_suffix('.charter.db')}"
        async with Runtime.open(url, resources=systems.resources()) as rt:
            record = await rt.run(agent, "read T-9")
            events = await rt.events(record.run_id)
        [output] = [e.body.output for e in events if e.body.type == "tool_call_succeeded"]
        return str(output["subject"])

    subjects = []
    for name in ("a", "b"):
        systems = Systems(tmp_path / f"{name}.db")
        systems.seed()
        systems.add_ticket("T-9", "C-101", f"subject {name}", "body")
        subjects.append(asyncio.run(read(systems)))
    assert subjects == ["subject a", "subject b"]
