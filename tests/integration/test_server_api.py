"""`charter serve` as a real process on SQLite and PostgreSQL, with a real `charter worker`:
runs started, listed, read and messaged over HTTP; tokens refused; tenants kept apart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.helpers.cli import run_charter
from tests.helpers.server import HELPER_SCRIPT, serving, wait_for, working, write_helper_agent

from charter.runtime import Runtime

SCRIPT = HELPER_SCRIPT
"""The helper agent's answers (tests/helpers/server.py), for the tests that import them."""


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    return write_helper_agent(tmp_path)


def token(tmp_path: Path, db_url: str, principal: str, tenant: str, *more: str) -> dict:  # type: ignore[type-arg]
    made = run_charter(
        tmp_path, "tokens", "create", principal, "--tenant", tenant, "--db", db_url, "--json",
        "--as", "admin@example.com", *more,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)  # type: ignore[no-any-return]


_open: list[httpx.Client] = []


def client(base: str, secret: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    _open.append(httpx.Client(base_url=base, headers=headers, timeout=30))
    return _open[-1]


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def test_a_run_started_over_http_is_worked_messaged_and_read(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme", "--role", "support")
    with serving(tmp_path, store_url, "agent.yaml") as base, working(tmp_path, store_url):
        api = client(base, alice["token"])
        start = {"agent": "helper", "input": "refund my order"}
        first = api.post("/v1/runs", json=start, headers={"Idempotency-Key": "ticket-1"})
        assert first.status_code == 201, first.text
        run_id = first.json()["run_id"]
        again = api.post("/v1/runs", json=start, headers={"Idempotency-Key": "ticket-1"})
        assert again.json() == {"run_id": run_id}  # a redelivered POST starts no second run

        waiting = wait_for(api, f"/v1/runs/{run_id}", status="waiting")
        assert (waiting["tenant"], waiting["principal"]) == ("acme", "alice@acme.com")
        sent = api.post(f"/v1/runs/{run_id}/messages", json={"text": "order 7"})
        assert sent.status_code == 202, sent.text
        wait_for(api, f"/v1/runs/{run_id}", status="succeeded")

        events = api.get(f"/v1/runs/{run_id}/events").json()
        types = [e["type"] for e in events]
        assert types[0] == "run_started" and types[-1] == "run_finished", types
        assert any(e["type"] == "message_received" and "order 7" in json.dumps(e) for e in events)
        listed = api.get("/v1/runs").json()
        assert [r["run_id"] for r in listed["runs"]] == [run_id]


def test_runs_are_listed_by_filter_a_page_at_a_time(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    with serving(tmp_path, store_url, "agent.yaml") as base:
        api = client(base, alice["token"])
        started = [
            api.post("/v1/runs", json={"agent": "helper", "input": f"n{i}"}).json()["run_id"]
            for i in range(5)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            page = api.get(
                "/v1/runs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            )
            assert page.status_code == 200, page.text
            body = page.json()
            seen += [r["run_id"] for r in body["runs"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == started[::-1]  # newest first, each once
        assert len(api.get("/v1/runs", params={"status": "queued"}).json()["runs"]) == 5
        assert api.get("/v1/runs", params={"status": "succeeded"}).json()["runs"] == []
        assert api.get("/v1/runs", params={"agent": "other"}).json()["runs"] == []
        assert len(api.get("/v1/runs", params={"since": "1h"}).json()["runs"]) == 5
        bad = api.get("/v1/runs", params={"cursor": "nonsense!"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "input"
        unknown = api.post("/v1/runs", json={"agent": "nobody", "input": "x"})
        assert unknown.status_code == 404 and "helper" in unknown.json()["error"]["hint"]


def _expired_token(db_url: str) -> str:
    """A token made an hour ago that lived a minute (the runtime's clock set back)."""

    async def make() -> str:
        an_hour_ago = time.time() - 3600
        async with Runtime(store=Runtime.open(db_url).store, clock=lambda: an_hour_ago) as rt:
            secret, _ = await rt.operations.create_token(
                principal="old@acme.com", tenant="acme", expires_in_s=60
            )
            return secret

    return asyncio.run(make())


def test_missing_unknown_expired_and_revoked_tokens_are_refused(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    bob = token(tmp_path, store_url, "bob@acme.com", "acme")
    expired = _expired_token(store_url)
    with serving(tmp_path, store_url, "agent.yaml") as base:
        assert client(base, None).get("/v1/health").status_code == 200
        assert (
            "/v1/runs/{run_id}/events" in client(base, None).get("/v1/openapi.json").json()["paths"]
        )
        for secret, why in [
            (None, "no API token"),
            ("charter_tok_0_guess", "unknown API token"),
            (expired, "has expired"),
        ]:
            refused = client(base, secret).get("/v1/runs")
            assert refused.status_code == 401, (why, refused.text)
            assert refused.headers["www-authenticate"] == "Bearer"
            error = refused.json()["error"]
            assert error["code"] == "unauthenticated" and why in error["message"]

        api = client(base, bob["token"])
        assert api.get("/v1/runs").status_code == 200
        revoked = run_charter(tmp_path, "tokens", "revoke", bob["token_id"], "--db", store_url)
        assert revoked.returncode == 0, revoked.stderr
        after = api.get("/v1/runs")
        assert after.status_code == 401 and "was revoked" in after.json()["error"]["message"]
        assert api.post("/v1/runs", json={"agent": "helper", "input": "x"}).status_code == 401


def test_a_token_of_another_tenant_cannot_tell_a_run_exists(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    eve = token(tmp_path, store_url, "eve@globex.com", "globex")
    with serving(tmp_path, store_url, "agent.yaml") as base:
        run_id = (
            client(base, alice["token"])
            .post("/v1/runs", json={"agent": "helper", "input": "x"})
            .json()["run_id"]
        )
        other = client(base, eve["token"])
        unknown = other.get("/v1/runs/run_000000000000deadbeef")
        theirs = other.get(f"/v1/runs/{run_id}")
        assert (unknown.status_code, theirs.status_code) == (404, 404)
        assert theirs.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "run_000000000000deadbeef", run_id
        )  # the same answer as for a run that does not exist
        assert other.get(f"/v1/runs/{run_id}/events").status_code == 404
        sent = other.post(f"/v1/runs/{run_id}/messages", json={"text": "hijack"})
        assert sent.status_code == 404
        assert other.get("/v1/runs").json()["runs"] == []
        events = client(base, alice["token"]).get(f"/v1/runs/{run_id}/events").json()
        assert "hijack" not in json.dumps(events)


def test_tokens_are_listed_without_secrets_and_audited(tmp_path: Path, store_url: str) -> None:
    made = token(
        tmp_path, store_url, "carol@acme.com", "acme", "--role", "lead", "--expires", "30d"
    )
    assert made["token"].startswith(f"charter_{made['token_id']}_")
    listed = run_charter(tmp_path, "tokens", "list", "--db", store_url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert made["token"] not in listed.stdout and "hash" not in listed.stdout
    [row] = json.loads(listed.stdout)
    assert (row["principal"], row["tenant"], row["roles"]) == ("carol@acme.com", "acme", ["lead"])
    assert row["expires_at"] - row["created_at"] == pytest.approx(30 * 86_400)
    run_charter(tmp_path, "tokens", "revoke", made["token_id"], "--db", store_url, "--as", "dan")
    log = run_charter(tmp_path, "audit", "log", "--db", store_url, "--json")
    records = [r for r in json.loads(log.stdout) if r["kind"].startswith("token_")]
    assert [(r["kind"], r["actor"]) for r in records] == [
        ("token_created", "admin@example.com"),
        ("token_revoked", "dan"),
    ]
    assert made["token"] not in log.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "*"], "a token belongs to one tenant"),
        (["--tenant", "acme", "--expires", "soon"], "--expires 'soon' is not a duration"),
    ],
)
def test_a_bad_token_request_is_one_clear_line(
    tmp_path: Path, db_url: str, args: list[str], message: str
) -> None:
    made = run_charter(tmp_path, "tokens", "create", "x", "--db", db_url, *args)
    assert made.returncode == 2 and message in made.stderr, made.stderr
    assert "Traceback" not in made.stderr
