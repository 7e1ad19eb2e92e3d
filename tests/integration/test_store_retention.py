"""Retention over both stores: expired payloads of finished runs go, skeleton and chain stay."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from tests.helpers.cli import run_charter
from tests.helpers.models import Recording

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import ModelResponded, PolicyEvaluated, RunStarted, ToolCallSucceeded
from charter.retention import REMOVED, RetentionPolicy, apply

DAY = 86400.0


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look an order up."""
    return {"order": order_id, "email": "ann@example.com"}


def _agent() -> Agent:
    script = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "7"}}]},
        {"content": "order 7 is ann's"},
    ]
    return Agent(
        name="a", instructions="x", model=ModelSpec(provider="scripted", script=script),
        tools=[lookup],
    )  # fmt: skip


async def _runs(rt: Runtime) -> dict[str, str]:
    agent = _agent()
    rt.register(agent, model=Recording(agent.model.script))
    done = {t: (await rt.run(agent, f"whose is order 7? ({t})", tenant=t)).run_id
            for t in ("acme", "globex")}  # fmt: skip
    done["waiting"] = await rt.start(agent, "not worked yet", tenant="acme")
    return done


_POLICY_DOC = {
    "retention": {
        "default": {"prompts": "7d", "tool_payloads": "30d"},
        "tenants": {"globex": {"prompts": "forever"}},
    }
}
POLICY = RetentionPolicy.from_dict(_POLICY_DOC)


@pytest.mark.replay_exempt("applies retention, which removes payloads a replay needs")
def test_retention_removes_expired_payloads_and_the_chain_still_verifies(store_url: str) -> None:
    async def main() -> None:
        async with Runtime.open(store_url) as rt:
            runs = await _runs(rt)
            later = time.time() + 8 * DAY  # prompts expired, tool payloads not yet
            dry = await apply(rt.store, POLICY, dry_run=True, now=later)
            assert dry.removed == {"acme/prompts": 5}  # started, message, 2 responses, finished
            before = await rt.events(runs["acme"])
            assert [e.payload for e in before] == [e.payload for e in await rt.events(runs["acme"])]
            report = await apply(rt.store, POLICY, now=later)
            assert report.removed == dry.removed
            events = await rt.events(runs["acme"])
            started = events[0].body
            assert isinstance(started, RunStarted) and started.input == REMOVED
            assert started.tenant == "acme"  # the skeleton stays
            final = [e.body for e in events if isinstance(e.body, ModelResponded)][-1]
            assert final.content == REMOVED and final.usage.total > 0
            assert events[0].to_dict()["removed"]["fields"] == ["input"]
            output = next(e.body for e in events if isinstance(e.body, ToolCallSucceeded))
            assert output.output["email"] == "ann@example.com"  # 30 days not over
            globex = await rt.events(runs["globex"])
            assert all("removed" not in e.to_dict() for e in globex)  # prompts: forever
            waiting = await rt.events(runs["waiting"])
            assert "not worked yet" in waiting[0].payload  # not finished: never touched
            assert await rt.verify() == []
            again = await apply(rt.store, POLICY, now=later + 30 * DAY)
            assert again.removed == {"acme/tool_payloads": 2, "globex/tool_payloads": 2}
            events = await rt.events(runs["acme"])
            assert events[0].to_dict()["removed"]["fields"] == ["input"]
            output = next(e.body for e in events if isinstance(e.body, ToolCallSucceeded))
            assert output.output == REMOVED
            assert await rt.verify() == []
            assert (await apply(rt.store, POLICY, now=later + 30 * DAY)).total == 0

    asyncio.run(main())


def test_decisions_are_kept_forever_unless_a_ttl_says_otherwise() -> None:
    from charter.retention import strip

    body = PolicyEvaluated(
        call_id="c", tool="t", outcome="allow", reason="r1 allows", policy_hash="h",
        rule_ids=("r1",), arguments={"x": 1},
    )  # fmt: skip
    payload = body.model_dump_json(exclude_defaults=True)
    assert RetentionPolicy.from_dict({"retention": {}}).ttl("decisions", "acme") is None
    once = strip(payload, "policy_evaluated", ("tool_payloads",), now=1.0)
    assert once is not None and '"reason":"r1 allows"' in once
    twice = strip(once, "policy_evaluated", ("decisions",), now=2.0)
    assert twice is not None and '"rule_ids":["r1"]' in twice
    assert '"fields":["arguments","reason"]' in twice


@pytest.mark.replay_exempt("applies retention, which removes payloads a replay needs")
def test_the_cli_applies_retention_and_audit_verify_still_passes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"

    async def make() -> str:
        async with Runtime.open(url) as rt:
            return (await _runs(rt))["acme"]

    run_id = asyncio.run(make())
    dry = run_charter(tmp_path, "retention", "apply", "--ttl", "prompts=0s", "--dry-run",
                      "--json", "--db", url)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["removed"] == {"acme/prompts": 5, "globex/prompts": 5}
    done = run_charter(tmp_path, "retention", "apply", "--ttl", "acme:prompts=0s", "--db", url)
    assert done.returncode == 0 and "removed 5 payload(s)" in done.stdout, done.stderr
    assert run_charter(tmp_path, "audit", "verify", "--all", "--db", url).returncode == 0
    shown = run_charter(tmp_path, "events", run_id, "--json", "--db", url)
    first = json.loads(shown.stdout)[0]
    assert first["body"]["input"] == REMOVED and first["removed"]["fields"] == ["input"]
    bad = run_charter(tmp_path, "retention", "apply", "--ttl", "prompts=soon", "--db", url)
    assert bad.returncode != 0 and "not a duration" in bad.stderr
