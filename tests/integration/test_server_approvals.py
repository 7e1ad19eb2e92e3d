"""The approvals inbox of a real `charter serve` with a real `charter worker`, on SQLite and
PostgreSQL: a lead grants a held 120.00 refund as the authenticated principal; the requester
cannot grant their own; every refusal and action lands in the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers.cli import run_charter
from tests.helpers.server import serving, wait_for, working

from charter.demo import AGENT_FILE
from charter.testing.systems import DEFAULT_FILE, Systems

TICKET = (
    "Ticket T-2007 from Dev (C-104, gold tier)\nSubject: Dual boiler arrived dented\n\n"
    "The dual-boiler machine (order 1010) arrived with a dented side panel; it works fine "
    "otherwise. As agreed on the phone: a partial refund of 120.00 instead of a replacement."
)

_open: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def token(tmp_path: Path, db_url: str, principal: str, tenant: str, *roles: str) -> str:
    args = [a for r in roles for a in ("--role", r)]
    made = run_charter(
        tmp_path, "tokens", "create", principal, "--tenant", tenant, *args, "--db", db_url,
        "--json", "--as", "admin@example.com",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["token"])


def client(base: str, secret: str) -> httpx.Client:
    _open.append(
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    )
    return _open[-1]


def audit(tmp_path: Path, db_url: str, *kinds: str) -> list[dict[str, Any]]:
    log = run_charter(tmp_path, "audit", "log", "--db", db_url, "--json")
    assert log.returncode == 0, log.stderr
    return [r for r in json.loads(log.stdout) if r["kind"] in kinds]


def test_a_lead_grants_a_held_refund_and_the_requester_cannot(
    tmp_path: Path, store_url: str
) -> None:
    systems = Systems(tmp_path / DEFAULT_FILE)
    systems.seed()
    desk = token(tmp_path, store_url, "desk@acme.com", "acme")
    lee = token(tmp_path, store_url, "lee@acme.com", "acme")
    ops = token(tmp_path, store_url, "ops@acme.com", "acme", "operator")
    eve = token(tmp_path, store_url, "eve@globex.com", "globex", "operator")
    with serving(tmp_path, store_url, str(AGENT_FILE)) as base, working(tmp_path, store_url):
        requester, lead = client(base, desk), client(base, lee)
        started = requester.post("/v1/runs", json={"agent": "support_triage", "input": TICKET})
        assert started.status_code == 201, started.text
        run_id = started.json()["run_id"]
        wait_for(requester, f"/v1/runs/{run_id}", status="waiting")

        [held] = lead.get("/v1/approvals").json()["approvals"]
        shown = lead.get(f"/v1/approvals/{held['approval_id']}").json()
        assert shown == held
        assert (shown["tool"], shown["run_id"], shown["requested_by"]) == (
            "refund", run_id, "desk@acme.com",
        )  # fmt: skip
        assert shown["arguments"]["amount"] == 120.0 and shown["rule_ids"] == ["refund-medium"]
        assert shown["role"] == "support_lead" and shown["changes"], shown
        approval, digest = shown["approval_id"], shown["arguments_hash"]

        other = client(base, eve)
        assert other.get("/v1/approvals").json()["approvals"] == []
        theirs = other.get(f"/v1/approvals/{approval}")
        unknown = other.get("/v1/approvals/apr_unknown")
        assert (theirs.status_code, unknown.status_code) == (404, 404)
        assert theirs.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "apr_unknown", approval
        )
        stolen = other.post(f"/v1/approvals/{approval}/grant", json={"arguments_hash": digest})
        assert stolen.status_code == 404

        own = requester.post(f"/v1/approvals/{approval}/grant", json={"arguments_hash": digest})
        assert own.status_code == 403 and "separation of duties" in own.json()["error"]["message"]
        no_role = lead.post(f"/v1/approvals/{approval}/grant", json={"arguments_hash": digest})
        assert no_role.status_code == 403 and "support_lead" in no_role.json()["error"]["message"]
        not_ops = lead.post("/v1/roles", json={"principal": "lee@acme.com", "role": "support_lead"})
        assert not_ops.status_code == 403

        added = client(base, ops).post(
            "/v1/roles", json={"principal": "lee@acme.com", "role": "support_lead"}
        )
        assert added.status_code == 200, added.text
        assert [(g["role"], g["tenant"]) for g in added.json()["roles"]] == [
            ("support_lead", "acme")
        ]
        listed = client(base, ops).get("/v1/roles").json()["roles"]
        assert ("lee@acme.com", "support_lead") in {(g["principal"], g["role"]) for g in listed}
        assert lead.get("/v1/roles").status_code == 403

        wrong = lead.post(f"/v1/approvals/{approval}/grant", json={"arguments_hash": "0" * 64})
        assert wrong.status_code == 409, wrong.text
        granted = lead.post(
            f"/v1/approvals/{approval}/grant", json={"arguments_hash": digest, "note": "agreed"}
        )
        assert granted.status_code == 200, granted.text
        assert (granted.json()["status"], granted.json()["decided_by"]) == (
            "granted",
            "lee@acme.com",
        )
        again = lead.post(f"/v1/approvals/{approval}/grant", json={"arguments_hash": digest})
        assert again.status_code == 409
        wait_for(requester, f"/v1/runs/{run_id}", status="succeeded")

    refunds = [r for r in systems.refunds() if r["run_id"] == run_id]
    assert len(refunds) == 1 and refunds[0]["amount"] == 120.0

    refused = audit(tmp_path, store_url, "api_refused")
    by_actor = {(r["actor"], r["detail"]["action"], r["detail"]["status"]) for r in refused}
    assert {
        ("desk@acme.com", "approval.grant", 403),
        ("lee@acme.com", "approval.grant", 403),
        ("lee@acme.com", "approval.grant", 409),
        ("lee@acme.com", "roles.set", 403),
        ("lee@acme.com", "roles.list", 403),
        ("eve@globex.com", "approval.grant", 404),
    } <= by_actor, by_actor
    assert all(r["detail"]["authenticated"] == "api_token" for r in refused)
    done = audit(tmp_path, store_url, "api_action")
    assert [(r["actor"], r["detail"]["action"]) for r in done] == [
        ("ops@acme.com", "roles.set"),
        ("lee@acme.com", "approval.grant"),
    ]
    assert done[1]["detail"]["run_id"] == run_id and done[1]["detail"]["token_id"]
    [decided] = audit(tmp_path, store_url, "approval_decided")
    assert decided["actor"] == "lee@acme.com"


def test_a_denial_is_the_authenticated_principals(tmp_path: Path, store_url: str) -> None:
    systems = Systems(tmp_path / DEFAULT_FILE)
    systems.seed()
    desk = token(tmp_path, store_url, "desk@acme.com", "acme")
    lead = token(tmp_path, store_url, "lee@acme.com", "acme", "support_lead")
    with serving(tmp_path, store_url, str(AGENT_FILE)) as base, working(tmp_path, store_url):
        api = client(base, desk)
        run_id = api.post("/v1/runs", json={"agent": "support_triage", "input": TICKET}).json()[
            "run_id"
        ]
        wait_for(api, f"/v1/runs/{run_id}", status="waiting")
        [held] = client(base, lead).get("/v1/approvals").json()["approvals"]
        empty = client(base, lead).post(f"/v1/approvals/{held['approval_id']}/deny", json={})
        assert empty.status_code == 400
        denied = client(base, lead).post(
            f"/v1/approvals/{held['approval_id']}/deny", json={"reason": "not agreed"}
        )
        assert denied.status_code == 200, denied.text  # the token's own role suffices
        assert (denied.json()["status"], denied.json()["decided_by"]) == ("denied", "lee@acme.com")
        wait_for(api, f"/v1/runs/{run_id}", status="succeeded")
        statuses = client(base, lead).get("/v1/approvals", params={"status": "all"}).json()
        assert [a["status"] for a in statuses["approvals"]] == ["denied"]
    assert [r for r in systems.refunds() if r["run_id"] == run_id] == []
