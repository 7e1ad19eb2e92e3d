"""`charter schedules` as a user types it (exit codes, --json, no traceback) and
`/v1/schedules` through a real `charter serve`: operator role only, tenant-scoped, refusals
recorded."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.helpers.cli import run_charter
from tests.helpers.server import serving


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    (tmp_path / "script.json").write_text(json.dumps([{"content": "done"}] * 10))
    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent:\n  name: helper\n  instructions: |\n    Help.\n"
        "  model: {provider: scripted, script: script.json}\n"
    )
    return path


def test_schedules_from_the_command_line(tmp_path: Path, agent: Path, store_url: str) -> None:
    def charter(*args: str) -> tuple[int, str, str]:
        done = run_charter(tmp_path, "schedules", *args, "--db", store_url)
        assert "Traceback" not in done.stderr
        return done.returncode, done.stdout, done.stderr

    add = ("add", "nightly", "--cron", "0 3 * * *", "--agent", "agent.yaml", "--input", "go")
    code, out, err = charter(*add, "--tenant", "acme", "--missed", "catch-up", "--json")
    assert code == 0, err
    made = json.loads(out)
    assert (made["name"], made["tenant"], made["missed"], made["state"]) == (
        "nightly", "acme", "catch-up", "active",
    )  # fmt: skip
    assert charter(*add)[0] == 5  # the name is taken (conflict)
    bad_cron = charter("add", "x", "--cron", "61 * * * *", "--agent", "agent.yaml", "--input", "go")
    assert bad_cron[0] == 2 and "not valid" in bad_cron[2]
    no_agent = charter("add", "x", "--cron", "* * * * *", "--agent", "nope.yaml", "--input", "go")
    assert no_agent[0] == 2 and "nope.yaml" in no_agent[2]
    no_input = charter("add", "x", "--cron", "* * * * *", "--agent", "agent.yaml")
    assert no_input[0] == 2 and "--input" in no_input[2]
    bad_missed = charter(*add[:-2], "--input", "go", "--missed", "all")
    assert bad_missed[0] == 2

    code, out, _ = charter("list", "--json")
    assert [s["name"] for s in json.loads(out)] == ["nightly"]
    assert "nightly" in charter("list")[1]
    assert json.loads(charter("pause", "nightly", "--json")[1])["state"] == "paused"
    assert "paused" in charter("show", "nightly")[1]
    assert json.loads(charter("resume", "nightly", "--json")[1])["state"] == "active"
    assert charter("show", "nope")[0] == 3
    assert charter("pause", "nope")[0] == 3
    assert charter("remove", "nightly")[0] == 0
    assert json.loads(charter("list", "--json")[1]) == []


def _token(tmp_path: Path, db: str, principal: str, tenant: str, *roles: str) -> str:
    more = [arg for role in roles for arg in ("--role", role)]
    made = run_charter(
        tmp_path, "tokens", "create", principal, "--tenant", tenant, "--db", db, "--json", *more
    )
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["token"])


def test_schedules_over_http_need_the_operator_role_and_stay_in_their_tenant(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    ops = _token(tmp_path, store_url, "ops@acme.com", "acme", "operator")
    other_ops = _token(tmp_path, store_url, "ops@globex.com", "globex", "operator")
    support = _token(tmp_path, store_url, "ann@acme.com", "acme", "support")
    with serving(tmp_path, store_url, "agent.yaml") as base:

        def api(token: str) -> httpx.Client:
            return httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )

        with api(ops) as a, api(other_ops) as g, api(support) as s:
            body = {"name": "digest", "cron": "*/15 * * * *", "agent": "helper", "input": "sum"}
            made = a.post("/v1/schedules", json=body)
            assert made.status_code == 201, made.text
            assert (made.json()["tenant"], made.json()["principal"]) == ("acme", "ops@acme.com")
            assert a.post("/v1/schedules", json=body).status_code == 409
            unknown = a.post("/v1/schedules", json={**body, "name": "x", "agent": "nobody"})
            assert unknown.status_code == 404
            bad = a.post("/v1/schedules", json={**body, "name": "y", "cron": "soon"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "input"
            assert [x["name"] for x in a.get("/v1/schedules").json()] == ["digest"]
            assert a.post("/v1/schedules/digest/pause").json()["state"] == "paused"
            assert a.post("/v1/schedules/digest/resume").json()["state"] == "active"

            refused = s.get("/v1/schedules")
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
            assert s.post("/v1/schedules", json={**body, "name": "z"}).status_code == 403
            assert httpx.get(f"{base}/v1/schedules", timeout=30).status_code == 401
            # another tenant's operator cannot see or touch it, nor tell that it exists
            assert g.get("/v1/schedules").json() == []
            assert g.get("/v1/schedules/digest").status_code == 404
            assert g.delete("/v1/schedules/digest").status_code == 404
            assert a.delete("/v1/schedules/digest").status_code == 200
    audit = run_charter(tmp_path, "audit", "log", "--json", "--db", store_url)
    assert audit.returncode == 0, audit.stderr
    records = json.loads(audit.stdout)
    kinds = [r["kind"] for r in records]
    refused = [r for r in records if r["kind"] == "api_refused"]
    assert [(r["actor"], r["detail"]["status"]) for r in refused] == [
        ("ann@acme.com", 403),
        ("ann@acme.com", 403),
        (None, 401),
    ]
    assert {"schedule_added", "schedule_paused", "schedule_removed"} <= set(kinds)
