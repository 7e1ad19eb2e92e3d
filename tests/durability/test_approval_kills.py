"""A worker killed right after it takes a grant: the approved refund still happens exactly once.

Refund runs wait for approval (policy holds refunds over 50); a lead grants them through the
real CLI; then a `charter worker` SIGKILLs itself at a fault point after taking the grants, and
a second worker finishes. Billing's own ledger must hold one refund per run, each decision must
be in the log once, and no run may ask for approval twice.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from tests.durability._harness import (
    agent_file,
    assert_no_step_twice,
    inspect,
    run_worker,
    start_runs,
    systems,
    write_key,
)
from tests.helpers.cli import run_charter

from charter.events import ApprovalDecided, ApprovalRequested

pytestmark = pytest.mark.durability

RUNS = 3
POLICY = """\
policy:
  name: refunds
  rules:
    - id: reads
      when: {effect: read}
      then: allow
    - id: large-refunds
      when: {tool: refund, args: {amount: {gt: 50}}}
      then: {require_approval: {tier: manager, role: lead, expires_in: 1h}}
    - id: writes
      when: {effect: write}
      then: allow
"""


@pytest.mark.parametrize("point", ["after_commit", "after_intent_commit", "during_tool_call"])
def test_a_granted_refund_happens_once_when_the_worker_dies_after_the_grant(
    tmp_path: Path, store_url: str, point: str
) -> None:
    billing = systems(tmp_path, latency_s=0.6 if point == "during_tool_call" else 0.0)
    # order 1001 is 249.00: three refunds of 60.00 fit
    agent = agent_file(tmp_path, ("refund", {"order_id": "1001", "amount": 60.0}))
    (tmp_path / "policy.yaml").write_text(POLICY)
    with agent.open("a") as f:
        f.write("  policy: policy.yaml\n")
    run_ids = start_runs(store_url, agent, RUNS)

    assert run_worker(tmp_path, store_url).returncode == 0  # every run now waits
    listed = run_charter(tmp_path, "approvals", "list", "--db", store_url, "--json")
    requests = json.loads(listed.stdout)
    assert sorted(r["run_id"] for r in requests) == sorted(run_ids)
    assert (
        run_charter(
            tmp_path, "roles", "add", "lead-1", "lead", "--all-tenants", "--db", store_url
        ).returncode
        == 0
    )
    for request in requests:
        granted = run_charter(
            tmp_path, "approvals", "grant", request["approval_id"], "--as", "lead-1",
            "--arguments-hash", request["arguments_hash"], "--db", store_url,
        )  # fmt: skip
        assert granted.returncode == 0, granted.stderr

    # The first commit after the claim records the decision (after_commit), the next one the
    # refund's intent (after_intent_commit); during_tool_call dies inside billing's call.
    fault = f"{point}:1"
    killed = run_worker(tmp_path, store_url, "--fault-point", fault, "--fault-delay", "0.45")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_worker(tmp_path, store_url)
    assert resumed.returncode == 0, resumed.stderr

    statuses, breaks, events = inspect(store_url, run_ids)
    assert statuses == dict.fromkeys(run_ids, "succeeded")
    assert breaks == []
    assert_no_step_twice(events)
    counts = billing.ledger_counts()
    keys = {write_key(r, 0) for r in run_ids}
    assert {k: counts.get(k, 0) for k in keys} == dict.fromkeys(keys, 1)
    assert sum(counts.values()) == RUNS
    for run_id in run_ids:
        bodies = [e.body for e in events[run_id]]
        assert len([b for b in bodies if isinstance(b, ApprovalRequested)]) == 1
        decided = [b for b in bodies if isinstance(b, ApprovalDecided)]
        assert [(d.decision, d.decided_by) for d in decided] == [("granted", "lead-1")]
