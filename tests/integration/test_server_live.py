"""A run's timeline and its live events (SSE) from a real `charter serve`, with a real
`charter worker`, on SQLite and PostgreSQL; tenants kept apart; `Store.run_heads`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers.cli import run_charter
from tests.helpers.server import serving, wait_for, working, write_helper_agent
from tests.integration.test_server_api import SCRIPT, client, token

from charter.runtime import Runtime
from charter.store import open_store

__all__ = ["SCRIPT"]


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    return write_helper_agent(tmp_path)


def sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The messages of a Server-Sent Events stream: {"event", "id", "data"} (data parsed)."""
    msg: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "data" in msg:
                yield {"event": msg.get("event", "message"), "id": msg.get("id"), **msg}
            msg = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            msg[key] = json.loads(value) if key == "data" else value


def test_the_timeline_endpoint_shows_what_runs_show_prints(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    eve = token(tmp_path, store_url, "eve@evil.com", "evil")
    with serving(tmp_path, store_url, "agent.yaml") as base, working(tmp_path, store_url):
        api = client(base, alice["token"])
        run_id = api.post("/v1/runs", json={"agent": "helper", "input": "hi"}).json()["run_id"]
        wait_for(api, f"/v1/runs/{run_id}", status="waiting")
        api.post(f"/v1/runs/{run_id}/messages", json={"text": "order 7"})
        wait_for(api, f"/v1/runs/{run_id}", status="succeeded")
        got = api.get(f"/v1/runs/{run_id}/timeline")
        assert got.status_code == 200, got.text
        timeline = got.json()
        theirs = client(base, eve["token"]).get(f"/v1/runs/{run_id}/timeline")
        assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"

    shown = run_charter(tmp_path, "runs", "show", run_id, "--db", store_url).stdout
    printed = shown[shown.index("timeline\n") + len("timeline\n") :].splitlines()
    *body, totals = printed
    texts = [re.sub(r"^ *(\+\S+)? {2}", "", line).strip() for line in body]
    assert texts == [line["text"] for line in timeline["lines"]]
    assert totals == timeline["totals"]["text"]
    assert timeline["run"]["status"] == "succeeded"
    assert timeline["totals"]["steps"] == 2 and timeline["totals"]["tool_calls"] == 1
    steps = [line for line in timeline["lines"] if line["type"] == "model_responded"]
    assert [s["step"] for s in steps] == [1, 2] and "tokens" in steps[0]["text"]
    calls = [line for line in timeline["lines"] if line["type"] == "tool_call_proposed"]
    assert len(calls) == 1 and calls[0]["depth"] == 1 and calls[0]["call_id"]


def test_a_run_s_events_stream_live_until_it_finishes_and_resume_after_a_seq(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    eve = token(tmp_path, store_url, "eve@evil.com", "evil")
    with serving(tmp_path, store_url, "agent.yaml") as base, working(tmp_path, store_url):
        api = client(base, alice["token"])
        run_id = api.post("/v1/runs", json={"agent": "helper", "input": "hi"}).json()["run_id"]
        path = f"/v1/runs/{run_id}/events/stream"
        seen: list[dict[str, Any]] = []
        with api.stream("GET", path) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            for msg in sse(stream.iter_lines()):
                seen.append(msg)
                if msg["data"].get("type") == "run_waiting":  # live: the run waits for us
                    sent = api.post(f"/v1/runs/{run_id}/messages", json={"text": "order 7"})
                    assert sent.status_code == 202
                if msg["event"] == "end":
                    break
        *events, end = seen
        assert end["data"] == {"run_id": run_id, "status": "succeeded"}
        seqs = [int(m["id"]) for m in events]
        assert seqs == list(range(1, len(seqs) + 1))  # every event once, in order
        assert [m["data"]["seq"] for m in events] == seqs
        assert events[-1]["data"]["type"] == "run_finished"
        assert seqs == [e["seq"] for e in api.get(f"/v1/runs/{run_id}/events").json()]

        # Reconnecting with Last-Event-ID (or ?after=) sends only what came after.
        for how in ({"headers": {"Last-Event-ID": "3"}}, {"params": {"after": 3}}):
            with api.stream("GET", path, **how) as again:  # type: ignore[arg-type]
                rest = list(sse(again.iter_lines()))
            assert [int(m["id"]) for m in rest[:-1]] == seqs[3:] and rest[-1]["event"] == "end"

        bad = api.get(path, headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]["message"]
        theirs = client(base, eve["token"]).get(path)
        assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
        assert httpx.get(base + path).status_code == 401


def test_the_tenant_stream_tells_of_its_own_runs_only(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    alice = token(tmp_path, store_url, "alice@acme.com", "acme")
    eve = token(tmp_path, store_url, "eve@evil.com", "evil")
    with serving(tmp_path, store_url, "agent.yaml") as base, working(tmp_path, store_url):
        api, theirs = client(base, alice["token"]), client(base, eve["token"])
        with api.stream("GET", "/v1/events/stream") as stream:
            assert stream.status_code == 200
            other = theirs.post("/v1/runs", json={"agent": "helper", "input": "x"}).json()
            mine = api.post("/v1/runs", json={"agent": "helper", "input": "hi"}).json()
            statuses = []
            for msg in sse(stream.iter_lines()):
                assert msg["event"] == "run"
                assert msg["data"]["run_id"] != other["run_id"]  # another tenant's: never
                assert msg["data"]["tenant"] == "acme"
                statuses.append(msg["data"]["status"])
                if msg["data"]["status"] == "waiting":
                    break
        assert msg["data"]["run_id"] == mine["run_id"] and msg["data"]["last_seq"] > 2


def test_run_heads_name_runs_and_those_created_since(store_url: str) -> None:
    async def main() -> None:
        from charter.agents import Agent
        from charter.models import ModelSpec

        agent = Agent(name="a", instructions="x", model=ModelSpec(provider="scripted"))
        async with Runtime(store=open_store(store_url)) as rt:
            first = await rt.start(agent, "one", tenant="acme")
            record = await rt.get_run(first)
            second = await rt.start(agent, "two", tenant="evil")
            heads = await rt.run_heads([first, "run_unknown"])
            assert [(h.run_id, h.tenant, h.status, h.last_seq) for h in heads] == [
                (first, "acme", "queued", record.last_seq)
            ]
            later = await rt.run_heads([], created_since=(await rt.get_run(second)).created_at)
            assert [h.run_id for h in later] == [second]
            both = await rt.run_heads([first], created_since=record.created_at)
            assert sorted(h.run_id for h in both) == sorted([first, second])
            assert await rt.run_heads([]) == []

    asyncio.run(main())
