"""`charter approvals` and `charter roles` through the real command, on a SQLite file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter
from tests.helpers.refund_agent import write_refund_agent


def _held_run(tmp: Path) -> tuple[str, dict[str, object]]:
    """A run by ann whose 120.00 refund waits for a lead; its one pending request."""
    write_refund_agent(tmp)
    started = run_charter(
        tmp, "start", "agent.yaml", "--input", "refund", "--tenant", "acme", "--principal", "ann"
    )
    run_id = started.stdout.strip()
    assert run_charter(tmp, "worker", "--until-idle").returncode == 0
    [request] = json.loads(run_charter(tmp, "approvals", "list", "--json").stdout)
    return run_id, request


def test_list_show_and_grant_through_the_cli(tmp_path: Path) -> None:
    run_id, request = _held_run(tmp_path)
    approval_id = str(request["approval_id"])
    assert (request["run_id"], request["status"], request["role"]) == (run_id, "pending", "lead")

    listed = run_charter(tmp_path, "approvals", "list", "--tenant", "acme")
    assert approval_id in listed.stdout and "refund" in listed.stdout
    assert (
        "no pending approval requests"
        in run_charter(tmp_path, "approvals", "list", "--tenant", "other").stdout
    )

    shown = run_charter(tmp_path, "approvals", "show", approval_id)
    assert shown.returncode == 0
    assert str(request["arguments_hash"]) in shown.stdout
    assert "role lead (tier manager); not ann" in shown.stdout
    assert "medium" in shown.stdout

    own = run_charter(tmp_path, "approvals", "grant", approval_id, "--as", "ann")
    assert own.returncode == 9 and "separation of duties" in own.stderr
    assert "Traceback" not in own.stderr
    no_role = run_charter(tmp_path, "approvals", "grant", approval_id, "--as", "bob")
    assert no_role.returncode == 9 and "charter roles add bob lead" in no_role.stderr

    added = run_charter(tmp_path, "roles", "add", "bob", "lead", "--tenant", "acme", "--json")
    assert json.loads(added.stdout)[0] | {"granted_at": 0} == {
        "principal": "bob",
        "role": "lead",
        "tenant": "acme",
        "granted_at": 0,
    }
    granted = run_charter(
        tmp_path, "approvals", "grant", approval_id, "--as", "bob", "--note", "ok", "--json"
    )
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout)["status"] == "granted"
    again = run_charter(tmp_path, "approvals", "deny", approval_id, "--as", "bob", "--reason", "x")
    assert again.returncode == 5 and "already granted by bob" in again.stderr

    assert run_charter(tmp_path, "worker", "--until-idle").returncode == 0
    shown_run = json.loads(run_charter(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert shown_run["status"] == "succeeded"
    everything = json.loads(
        run_charter(tmp_path, "approvals", "list", "--status", "all", "--json").stdout
    )
    assert [(a["status"], a["decided_by"], a["note"]) for a in everything] == [
        ("granted", "bob", "ok")
    ]


def test_deny_needs_a_reason_and_unknown_ids_are_clear_errors(tmp_path: Path) -> None:
    _, request = _held_run(tmp_path)
    no_reason = run_charter(tmp_path, "approvals", "deny", str(request["approval_id"]), "--as", "x")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    unknown = run_charter(tmp_path, "approvals", "show", "ap-nope")
    assert unknown.returncode == 3
    assert unknown.stderr.strip().startswith("error: no approval request 'ap-nope'")
    assert "charter approvals list" in unknown.stderr


@pytest.mark.replay_exempt("forges the arguments hash of an approval decision")
def test_a_grant_for_other_arguments_is_refused_before_execution(tmp_path: Path) -> None:
    """The run re-checks the grant's arguments hash: a tampered request never executes."""
    run_id, request = _held_run(tmp_path)
    assert run_charter(tmp_path, "roles", "add", "bob", "lead", "--tenant", "acme").returncode == 0
    granted = run_charter(
        tmp_path, "approvals", "grant", str(request["approval_id"]), "--as", "bob"
    )
    assert granted.returncode == 0
    with sqlite3.connect(tmp_path / "charter.db") as db:  # what an attacker with SQL could do
        db.execute("UPDATE approvals SET arguments_hash = 'forged'")
    assert run_charter(tmp_path, "worker", "--until-idle").returncode == 0
    events = json.loads(run_charter(tmp_path, "events", run_id, "--json").stdout)
    rejected = [e["body"] for e in events if e["type"] == "tool_call_rejected"]
    assert [r["error"]["code"] for r in rejected] == ["approval_mismatch"]
    assert not [e for e in events if e["type"] == "tool_call_started"]


def test_roles_add_needs_an_explicit_tenant_or_all_tenants(tmp_path: Path) -> None:
    """A grant never silently covers every tenant: `--tenant` or `--all-tenants` must be said."""
    bare = run_charter(tmp_path, "roles", "add", "bob", "lead")
    assert bare.returncode == 2
    assert "--tenant" in bare.stderr and "--all-tenants" in bare.stderr
    assert "Traceback" not in bare.stderr
    both = run_charter(tmp_path, "roles", "add", "bob", "lead", "--tenant", "a", "--all-tenants")
    assert both.returncode == 2 and "not both" in both.stderr
    assert not (tmp_path / "charter.db").exists()  # refused before the database was opened

    everywhere = run_charter(tmp_path, "roles", "add", "bob", "lead", "--all-tenants", "--json")
    assert everywhere.returncode == 0, everywhere.stderr
    assert [g["tenant"] for g in json.loads(everywhere.stdout)] == ["*"]
    star = run_charter(tmp_path, "roles", "add", "cy", "lead", "--tenant", "*")
    assert star.returncode == 2 and "--all-tenants" in star.stderr
    removed = run_charter(tmp_path, "roles", "remove", "bob", "lead", "--all-tenants", "--json")
    assert json.loads(removed.stdout) == []
