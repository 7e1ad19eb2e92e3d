"""Principals are compared canonically (Unicode NFKC, case-folded, trimmed) wherever they
enter or are compared: run start, `approvals grant|deny --as`, `roles add|remove|list`.
Through the real `charter` command on a real SQLite file and on PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter
from tests.helpers.refund_agent import REFUNDS_POLICY, write_refund_agent


def _held(tmp: Path, db: str, principal: str) -> tuple[str, str]:
    """A run whose refund waits for a lead: (run_id, approval_id)."""
    write_refund_agent(tmp)
    started = run_charter(
        tmp, "start", "agent.yaml", "--input", "refund", "--tenant", "acme",
        "--principal", principal, "--db", db,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert run_charter(tmp, "worker", "--until-idle", "--db", db).returncode == 0
    [request] = json.loads(run_charter(tmp, "approvals", "list", "--json", "--db", db).stdout)
    return started.stdout.strip(), str(request["approval_id"])


def test_a_principal_cannot_approve_their_own_request_under_another_spelling(
    tmp_path: Path, store_url: str
) -> None:
    _, approval_id = _held(tmp_path, store_url, "ann")
    added = run_charter(
        tmp_path, "roles", "add", "ANN", "lead", "--tenant", "acme", "--db", store_url
    )
    assert added.returncode == 0, added.stderr
    for spelling in ("Ann", " ann ", "\uff21\uff2e\uff2e", "\uff41\uff4e\uff4e"):  # fullwidth
        own = run_charter(
            tmp_path, "approvals", "grant", approval_id, "--as", spelling, "--db", store_url
        )
        assert own.returncode == 9, (spelling, own.stderr)
        assert "separation of duties" in own.stderr
    shown = json.loads(run_charter(tmp_path, "approvals", "show", approval_id, "--json",
                                   "--db", store_url).stdout)  # fmt: skip
    assert shown["status"] == "pending"


def test_roles_are_looked_up_canonically(tmp_path: Path, store_url: str) -> None:
    _, approval_id = _held(tmp_path, store_url, "ann")
    added = run_charter(
        tmp_path, "roles", "add", " Bob ", "lead", "--tenant", "acme", "--json", "--db", store_url
    )
    assert [g["principal"] for g in json.loads(added.stdout)] == ["bob"]
    listed = run_charter(tmp_path, "roles", "list", "--principal", "BOB", "--json",
                         "--db", store_url)  # fmt: skip
    assert [g["role"] for g in json.loads(listed.stdout)] == ["lead"]
    granted = run_charter(
        tmp_path, "approvals", "grant", approval_id, "--as", "BOB", "--json", "--db", store_url
    )
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout)["decided_by"] == "bob"


def test_a_run_records_its_principal_canonically(tmp_path: Path, db_url: str) -> None:
    run_id, _ = _held(tmp_path, db_url, "  Ann ")
    shown = json.loads(
        run_charter(tmp_path, "runs", "show", run_id, "--json", "--db", db_url).stdout
    )
    assert shown["principal"] == "ann"


@pytest.mark.parametrize("bad", ["", "   ", "ann\x07", "ann\u200bx", "ann\nbob"])
def test_an_empty_or_control_character_principal_is_refused(tmp_path: Path, bad: str) -> None:
    (tmp_path / "prompt.md").write_text("Hi.")
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: a\n  instructions: prompt.md\n  model: {provider: scripted, script: []}\n"
    )
    started = run_charter(tmp_path, "start", "agent.yaml", "--input", "x", "--principal", bad)
    assert started.returncode == 2, started.stderr
    assert started.stderr.startswith("error: principal") and "Traceback" not in started.stderr
    role = run_charter(tmp_path, "roles", "add", bad, "lead", "--tenant", "acme")
    assert role.returncode == 2 and role.stderr.startswith("error: principal")
    assert json.loads(run_charter(tmp_path, "runs", "list", "--json").stdout) == []


def test_role_grants_stored_before_canonical_names_still_count(tmp_path: Path) -> None:
    """Rows written by an older Charter ("Bob") are compared canonically, not rewritten."""
    db = f"sqlite:///{tmp_path / 'charter.db'}"
    _, approval_id = _held(tmp_path, db, "ann")
    with sqlite3.connect(tmp_path / "charter.db") as conn:
        conn.execute("INSERT INTO role_grants VALUES ('Bob', 'lead', 'acme', 0)")
        conn.execute("UPDATE approvals SET requested_by = 'Ann'")
    own = run_charter(tmp_path, "approvals", "grant", approval_id, "--as", "ann")
    assert own.returncode == 9 and "separation of duties" in own.stderr
    granted = run_charter(tmp_path, "approvals", "grant", approval_id, "--as", "bob")
    assert granted.returncode == 0, granted.stderr


def test_a_policy_rule_names_principals_canonically(tmp_path: Path) -> None:
    """A deny rule for `Mallory` still stops the run mallory starts (run principals are
    canonical, so the rule's names are too)."""
    policy = REFUNDS_POLICY.replace(
        "  rules:\n",
        "  rules:\n    - id: no-mallory\n      when: {principal: [' Mallory ']}\n"
        "      then: {deny: blocked}\n",
    )
    _, _ = _held(tmp_path, f"sqlite:///{tmp_path / 'first.db'}", "ann")  # writes the files
    (tmp_path / "policy.yaml").write_text(policy)
    started = run_charter(
        tmp_path, "start", "agent.yaml", "--input", "refund", "--tenant", "acme",
        "--principal", "MALLORY",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert run_charter(tmp_path, "worker", "--until-idle").returncode == 0
    events = json.loads(run_charter(tmp_path, "events", run_id, "--json").stdout)
    decided = [e["body"] for e in events if e["type"] == "policy_evaluated"]
    assert [d["outcome"] for d in decided] == ["deny"]
    assert [d["rule_ids"] for d in decided] == [["no-mallory"]]
    checked = run_charter(
        tmp_path, "policy", "check", "agent.yaml", "--tool", "refund", "--principal", "mallory",
        "--args", '{"order_id": "7", "amount": 120}', "--json",
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["rule_ids"] == ["no-mallory"]
