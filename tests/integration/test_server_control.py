"""The operator endpoints of a real `charter serve` with a real `charter worker`, on SQLite and
PostgreSQL: the kill switch (operators only, a run parks), cancel (the run's principal or an
operator), stats, who-can, capabilities and the runs filters; refusals audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter
from tests.helpers.server import serving, wait_for, working
from tests.integration.test_server_approvals import audit, client, token

ASKING = [
    {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
    {"content": "Thanks, all done."},
]
REFUNDING = [
    {"tool_calls": [{"name": "refund", "arguments": {"order_id": "7", "amount": 10}}]},
    {"content": "refunded"},
]


def agent_file(tmp_path: Path, name: str, script: list[dict[str, object]], tool: str) -> str:
    (tmp_path / "prompt.md").write_text("You help.")
    (tmp_path / f"{name}.json").write_text(json.dumps(script * 10))
    (tmp_path / f"{name}.yaml").write_text(
        f"agent:\n  name: {name}\n  instructions: prompt.md\n"
        f"  model: {{provider: scripted, name: scripted-{name}, script: {name}.json}}\n"
        f'  tools: ["{tool}"]\n'
    )
    return f"{name}.yaml"


@pytest.fixture
def agents(tmp_path: Path) -> tuple[str, str]:
    return (
        agent_file(tmp_path, "helper", ASKING, "charter.tools:ask_principal"),
        agent_file(tmp_path, "refunder", REFUNDING, "tests.helpers.tools:refund"),
    )


def test_only_an_operator_flips_the_kill_switch_and_a_run_parks(
    tmp_path: Path, store_url: str, agents: tuple[str, str]
) -> None:
    desk = token(tmp_path, store_url, "desk@acme.com", "acme")
    ops = token(tmp_path, store_url, "ops@acme.com", "acme", "operator")
    root = token(tmp_path, store_url, "root@acme.com", "acme")
    eve = token(tmp_path, store_url, "eve@globex.com", "globex", "operator")
    every = run_charter(
        tmp_path, "roles", "add", "root@acme.com", "operator", "--all-tenants", "--db", store_url
    )
    assert every.returncode == 0, every.stderr
    with serving(tmp_path, store_url, *agents) as base, working(tmp_path, store_url):
        api, operator = client(base, desk), client(base, ops)
        off = {"on": True, "reason": "incident 42"}
        refused = api.post("/v1/killswitch", json=off)
        assert refused.status_code == 403 and "operator" in refused.json()["error"]["message"]
        assert api.get("/v1/killswitch").json()["switches"] == []
        global_off = operator.post("/v1/killswitch", json={**off, "tenant": "*"})
        assert global_off.status_code == 403  # a token's roles stop at its tenant

        flipped = operator.post("/v1/killswitch", json=off)
        assert flipped.status_code == 200, flipped.text
        state = flipped.json()
        assert state["writes_blocked"] and state["switches"][0]["tenant"] == "acme"
        assert client(base, eve).get("/v1/killswitch").json() == {
            "switches": [], "writes_blocked": False, "history": [],
        }  # fmt: skip
        run_id = api.post("/v1/runs", json={"agent": "refunder", "input": "refund 7"}).json()[
            "run_id"
        ]
        parked = wait_for(api, f"/v1/runs/{run_id}", status="waiting")
        assert parked["waiting_for"] == "kill_switch"

        on_again = operator.put("/v1/killswitch", json={"on": False})
        assert on_again.status_code == 200 and on_again.json()["switches"] == []
        wait_for(api, f"/v1/runs/{run_id}", status="succeeded")
        history = api.get("/v1/killswitch").json()["history"]
        assert [(h["on"], h["actor"], h["reason"]) for h in history] == [
            (False, "ops@acme.com", None),
            (True, "ops@acme.com", "incident 42"),
        ]
        everywhere = client(base, root).post("/v1/killswitch", json={**off, "tenant": "*"})
        assert everywhere.status_code == 200, everywhere.text
        assert client(base, eve).get("/v1/killswitch").json()["writes_blocked"]
        client(base, root).post("/v1/killswitch", json={"on": False, "tenant": "*"})

    refusals = [
        (r["actor"], r["detail"]["status"]) for r in audit(tmp_path, store_url, "api_refused")
    ]
    assert refusals == [("desk@acme.com", 403), ("ops@acme.com", 403)]
    flips = [(r["kind"], r["actor"]) for r in audit(tmp_path, store_url, "killswitch_on")]
    assert flips == [("killswitch_on", "ops@acme.com"), ("killswitch_on", "root@acme.com")]
    actions = audit(tmp_path, store_url, "api_action")
    assert [(r["actor"], r["detail"]["target"]["tenant"]) for r in actions] == [
        ("ops@acme.com", "acme"),
        ("ops@acme.com", "acme"),
        ("root@acme.com", "*"),
        ("root@acme.com", "*"),
    ]


def test_a_run_is_cancelled_by_its_principal_or_an_operator_only(
    tmp_path: Path, store_url: str, agents: tuple[str, str]
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    bob = token(tmp_path, store_url, "bob@acme.com", "acme")
    ops = token(tmp_path, store_url, "ops@acme.com", "acme", "operator")
    eve = token(tmp_path, store_url, "eve@globex.com", "globex", "operator")
    with serving(tmp_path, store_url, *agents) as base, working(tmp_path, store_url):
        api = client(base, alice)
        first, second = (
            api.post("/v1/runs", json={"agent": "helper", "input": f"n{i}"}).json()["run_id"]
            for i in range(2)
        )
        wait_for(api, f"/v1/runs/{first}", status="waiting")
        wait_for(api, f"/v1/runs/{second}", status="waiting")
        why = {"reason": "customer withdrew"}
        assert client(base, eve).post(f"/v1/runs/{first}/cancel", json=why).status_code == 404
        assert client(base, bob).post(f"/v1/runs/{first}/cancel", json=why).status_code == 403
        anonymous = client(base, "charter_tok_0_guess").post(f"/v1/runs/{first}/cancel", json=why)
        assert anonymous.status_code == 401
        assert api.post(f"/v1/runs/{first}/cancel", json={"reason": ""}).status_code == 400

        own = api.post(f"/v1/runs/{first}/cancel", json=why)
        assert own.status_code == 202, own.text
        assert own.json()["requested_by"] == "alice@acme.com"
        by_ops = client(base, ops).post(f"/v1/runs/{second}/cancel", json={"reason": "cleanup"})
        assert by_ops.status_code == 202, by_ops.text
        wait_for(api, f"/v1/runs/{first}", status="cancelled")
        wait_for(api, f"/v1/runs/{second}", status="cancelled")
        finished = api.post(f"/v1/runs/{first}/cancel", json=why)
        assert finished.status_code in (202, 409)

    refused = audit(tmp_path, store_url, "api_refused")
    assert [(r["actor"], r["detail"]["status"]) for r in refused][:3] == [
        ("eve@globex.com", 404),
        ("bob@acme.com", 403),
        (None, 401),
    ]
    assert refused[2]["detail"]["target"] == {"run_id": first}
    cancels = [(r["run_id"], r["actor"]) for r in audit(tmp_path, store_url, "cancel_requested")]
    assert cancels == [(first, "alice@acme.com"), (second, "ops@acme.com")]


def test_stats_who_can_capabilities_and_run_filters_stay_in_the_tenant(
    tmp_path: Path, store_url: str, agents: tuple[str, str]
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    bob = token(tmp_path, store_url, "bob@acme.com", "acme")
    eve = token(tmp_path, store_url, "eve@globex.com", "globex")
    with serving(tmp_path, store_url, *agents) as base, working(tmp_path, store_url):
        api = client(base, alice)
        mine = api.post("/v1/runs", json={"agent": "refunder", "input": "r"}).json()["run_id"]
        wait_for(api, f"/v1/runs/{mine}", status="succeeded")
        theirs = client(base, bob).post("/v1/runs", json={"agent": "helper", "input": "h"})
        wait_for(api, f"/v1/runs/{theirs.json()['run_id']}", status="waiting")  # settled
        client(base, eve).post("/v1/runs", json={"agent": "refunder", "input": "e"})

        by_alice = api.get("/v1/runs", params={"principal": "Alice@ACME.com"}).json()["runs"]
        assert [r["run_id"] for r in by_alice] == [mine]
        by_model = api.get("/v1/runs", params={"model": "scripted-refunder"}).json()["runs"]
        assert [r["run_id"] for r in by_model] == [mine]  # not eve's, of another tenant
        assert api.get("/v1/runs", params={"model": "other"}).json()["runs"] == []
        assert len(api.get("/v1/runs").json()["runs"]) == 2 and theirs.status_code == 201

        stats = api.get("/v1/stats", params={"since": "1h"})
        assert stats.status_code == 200, stats.text
        assert stats.json()["tenant"] == "acme" and stats.json()["runs"] == 2
        cli = run_charter(
            tmp_path, "stats", "--tenant", "acme", "--since", "1h", "--db", store_url, "--json"
        )
        assert cli.returncode == 0, cli.stderr
        expected = json.loads(cli.stdout)
        assert stats.json()["runs"] == expected["runs"]
        assert stats.json()["by_status"].keys() == expected["by_status"].keys()
        assert api.get("/v1/stats", params={"since": "soon"}).status_code == 400

        who = api.get("/v1/who-can", params={"selector": "refund"})
        assert who.status_code == 200, who.text
        assert [(p["agent"], p["tool"]) for p in who.json()["paths"]] == [("refunder", "refund")]
        assert who.json()["tenant"] == "acme"
        assert api.get("/v1/who-can", params={"selector": "write"}).json()["paths"]
        assert api.get("/v1/who-can", params={"selector": ""}).status_code == 400

        caps = api.get("/v1/capabilities").json()
        assert sorted(a["name"] for a in caps["agents"]) == ["helper", "refunder"]
        assert {t["name"]: t["effect"] for t in caps["tools"]} == {
            "ask_principal": "control",
            "refund": "write",
        }
        schema = api.get("/v1/openapi.json").json()
        for path in ("/v1/approvals/{approval_id}/grant", "/v1/killswitch", "/v1/who-can"):
            assert path in schema["paths"], path
        assert "ApprovalView" in schema["components"]["schemas"]


def _report(created_at: float, pass_rate: float) -> dict[str, object]:
    metrics = {
        "cases": 2, "runs": 2, "pass_rate": pass_rate, "run_pass_rate": pass_rate,
        "completion_rate": 1.0, "escalation_rate": 0.0, "policy_violations": 0.0,
        "cost_per_success_usd": None, "p95_latency_ms": 10.0,
    }  # fmt: skip
    return {
        "suite": "support", "suite_kind": "world", "suite_hash": "ab" * 32,
        "agent_name": "helper", "agent_version": "1", "agent_hash": "cd" * 32, "repeat": 1,
        "created_at": created_at, "thresholds": {}, "metrics": metrics,
        "cases": [{"case_id": "c1", "passed": True, "runs": []}],
    }  # fmt: skip


def test_eval_reports_and_a_gate_are_served_from_their_directory(
    tmp_path: Path, store_url: str, agents: tuple[str, str]
) -> None:
    reports = tmp_path / "evals"
    reports.mkdir()
    (reports / "baseline.json").write_text(json.dumps(_report(1000.0, 1.0)))
    (reports / "candidate.json").write_text(json.dumps(_report(2000.0, 0.5)))
    (reports / "notes.json").write_text("not a report")
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    options = ["--eval-reports", str(reports)]
    with serving(tmp_path, store_url, *agents, options=options) as base:
        api = client(base, alice)
        listed = api.get("/v1/evals").json()
        assert [r["name"] for r in listed["reports"]] == ["candidate", "baseline"]
        assert listed["unreadable"] == ["notes"]
        assert api.get("/v1/evals/baseline").json()["metrics"]["pass_rate"] == 1.0
        assert api.get("/v1/evals/../charter").status_code == 404
        assert api.get("/v1/evals/nope").status_code == 404
        gated = api.get("/v1/evals/gate", params={"baseline": "baseline", "candidate": "candidate"})
        assert gated.status_code == 200, gated.text
        assert not gated.json()["passed"]
        [failed] = [r["metric"] for r in gated.json()["rows"] if not r["passed"]]
        assert failed == "pass_rate"
        assert client(base, "charter_tok_0_guess").get("/v1/evals").status_code == 401
