"""Policy between proposal and execution: decisions are events, denials reach the model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.helpers.cli import run_charter
from tests.helpers.models import Recording

from charter import Agent, ConfigError, ModelSpec, Runtime, ToolContext, load_agent, tool
from charter._engine.state import RunState, fold_all
from charter.events import (
    ApprovalRequested,
    Event,
    PolicyEvaluated,
    RunFinished,
    ToolCallRejected,
)
from charter.policy import PolicySet

T = TypeVar("T")
EXECUTED: list[dict[str, Any]] = []

POLICY = {
    "policy": {
        "name": "refunds",
        "version": "1",
        "allowlists": {"customers": ["example.com"]},
        "rules": [
            {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
            {
                "id": "test-mode-in-staging",
                "when": {"environment": "staging", "tool": "pay_back"},
                "then": {"rewrite": {"set": {"test_mode": True}}},
            },
            {
                "id": "mail-customers-only",
                "when": {"tool": "notify", "destinations": {"not_in": "customers"}},
                "then": {"deny": "recipient outside the customer domains"},
            },
            {"id": "notify", "when": {"tool": "notify"}, "then": "allow"},
            {
                "id": "small",
                "when": {
                    "tool": "pay_back",
                    "roles_any": ["support"],
                    "args": {"amount": {"lte": 50}},
                },
                "then": "allow",
            },
            {
                "id": "medium",
                "when": {"tool": "pay_back", "args": {"amount": {"gt": 50, "lte": 300}}},
                "then": {
                    "require_approval": {"tier": "manager", "role": "lead", "expires_in": "1h"}
                },
            },
        ],
    }
}


@tool(effect="read")
def look(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}"


@tool(effect="write", risk="high", owner="billing")
def pay_back(ctx: ToolContext, order_id: str, amount: float, test_mode: bool = False) -> str:
    """Refund an order."""
    EXECUTED.append({"order_id": order_id, "amount": amount, "test_mode": test_mode})
    return "refunded"


@tool(effect="write", destinations=["to"])
def notify(to: str, text: str) -> str:
    """Email someone."""
    EXECUTED.append({"to": to})
    return "sent"


@tool(effect="write")
def wipe(order_id: str) -> str:
    """Delete an order: no rule allows it."""
    EXECUTED.append({"wiped": order_id})
    return "gone"


def _scenario(
    url: str, calls: list[dict[str, Any]], *, roles: tuple[str, ...] = ("support",),
    environment: str = "dev",
) -> tuple[str, list[Event], Recording]:  # fmt: skip
    EXECUTED.clear()
    script = [{"tool_calls": calls}, {"content": "done"}]
    agent = Agent(
        name="refunder",
        instructions="Refund when asked.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[look, pay_back, notify, wipe],
        policy=PolicySet.from_dict(POLICY),
    )
    model = Recording(script)

    async def main() -> tuple[str, list[Event]]:
        async with Runtime.open(url, environment=environment) as rt:
            rt.register(agent, model=model)
            run = await rt.run(agent, "refund please", roles=roles)
            events = await rt.events(run.run_id)
            assert RunState.model_validate(run.state) == fold_all(events)
            return run.status, events

    status, events = asyncio.run(main())
    return status, events, model


def _bodies(events: list[Event], kind: type[T]) -> list[T]:
    return [e.body for e in events if isinstance(e.body, kind)]


def test_an_allowed_call_runs_and_its_decision_is_recorded(db_url: str) -> None:
    status, events, _ = _scenario(
        db_url, [{"name": "pay_back", "arguments": {"order_id": "7", "amount": 20}}]
    )
    assert status == "succeeded"
    [decision] = _bodies(events, PolicyEvaluated)
    assert (decision.outcome, decision.rule_ids) == ("allow", ("small",))
    assert decision.policy_hash == PolicySet.from_dict(POLICY).hash
    assert EXECUTED == [{"order_id": "7", "amount": 20.0, "test_mode": False}]


def test_a_denied_call_never_runs_and_the_model_is_told_why(db_url: str) -> None:
    calls = [{"name": "notify", "arguments": {"to": "eve@evil.test", "text": "hi"}}]
    status, events, model = _scenario(db_url, calls)
    assert status == "succeeded"  # the run goes on: the model answers without the call
    assert EXECUTED == []
    [decision] = _bodies(events, PolicyEvaluated)
    assert (decision.outcome, decision.rule_ids) == ("deny", ("mail-customers-only",))
    [rejected] = _bodies(events, ToolCallRejected)
    assert rejected.error.code == "policy_denied"
    told = json.loads(model.requests[1].messages[-1].content or "")
    assert told["error"]["message"] == "recipient outside the customer domains"


def test_no_rule_allows_means_denied(db_url: str) -> None:
    _, events, _ = _scenario(
        db_url, [{"name": "pay_back", "arguments": {"order_id": "7", "amount": 20}}], roles=()
    )
    [decision] = _bodies(events, PolicyEvaluated)
    assert decision.outcome == "deny" and decision.rule_ids == ()
    assert EXECUTED == []


def test_a_rewrite_changes_what_executes_and_is_recorded(db_url: str) -> None:
    calls = [{"name": "pay_back", "arguments": {"order_id": "7", "amount": 20}}]
    status, events, _ = _scenario(db_url, calls, environment="staging")
    assert status == "succeeded"
    [decision] = _bodies(events, PolicyEvaluated)
    assert decision.rewritten and decision.rule_ids == ("test-mode-in-staging", "small")
    assert decision.arguments == {"order_id": "7", "amount": 20.0, "test_mode": True}
    assert EXECUTED == [{"order_id": "7", "amount": 20.0, "test_mode": True}]


def test_a_call_that_needs_approval_waits_without_running(db_url: str) -> None:
    calls = [{"name": "pay_back", "arguments": {"order_id": "7", "amount": 120}}]
    status, events, _ = _scenario(db_url, calls)
    assert status == "waiting"  # for a human: see test_approvals.py
    assert EXECUTED == []
    assert _bodies(events, RunFinished) == []
    [requested] = _bodies(events, ApprovalRequested)
    assert (requested.role, requested.tier, requested.rule_ids) == ("lead", "manager", ("medium",))


def test_the_model_is_shown_only_tools_policy_could_allow(db_url: str) -> None:
    _, _, model = _scenario(db_url, [{"name": "look", "arguments": {"order_id": "7"}}])
    shown = {t.name for t in model.requests[0].tools}
    assert shown == {"look", "pay_back", "notify"}  # no rule could ever allow wipe


def test_agent_files_name_their_policy(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("Refund.")
    (tmp_path / "script.json").write_text("[]")
    (tmp_path / "policy.yaml").write_text(
        "policy:\n  name: p\n  rules:\n    - id: reads\n      when: {effect: read}\n"
        "      then: allow\n"
    )
    text = (
        "agent:\n  name: a\n  instructions: prompt.md\n  trust_tier: sandbox\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["tests.helpers.tools:lookup"]\n  policy: policy.yaml\n'
    )
    (tmp_path / "agent.yaml").write_text(text)
    agent = load_agent(tmp_path / "agent.yaml")
    assert agent.policy is not None and agent.trust_tier == "sandbox"
    assert Agent.from_spec(agent.spec()).policy.hash == agent.policy.hash  # type: ignore[union-attr]

    (tmp_path / "agent.yaml").write_text(text.replace("policy.yaml", "missing.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_agent(tmp_path / "agent.yaml")
    (tmp_path / "policy.yaml").write_text(
        "policy:\n  name: p\n  rules:\n    - id: x\n      when: {tool: nowhere}\n"
        "      then: allow\n"
    )
    (tmp_path / "agent.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"policy.yaml:\d+.*nowhere"):
        load_agent(tmp_path / "agent.yaml")


def test_a_worker_in_another_process_applies_the_same_policy(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("Refund.")
    script = [
        {"tool_calls": [{"name": "refund", "arguments": {"order_id": "1", "amount": 5}}]},
        {"content": "done"},
    ]
    (tmp_path / "script.json").write_text(json.dumps(script))
    (tmp_path / "policy.yaml").write_text(
        "policy:\n  name: p\n  rules:\n    - id: no-refunds\n      when: {tool: refund}\n"
        "      then: {deny: no refunds today}\n"
    )
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: a\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["tests.helpers.tools:refund"]\n  policy: policy.yaml\n'
    )
    run_id = run_charter(tmp_path, "start", "agent.yaml", "--input", "x").stdout.strip()
    assert run_charter(tmp_path, "worker", "--until-idle").returncode == 0
    events = json.loads(run_charter(tmp_path, "events", run_id, "--json").stdout)
    decisions = [e["body"] for e in events if e["type"] == "policy_evaluated"]
    assert [(d["outcome"], d["rule_ids"]) for d in decisions] == [("deny", ["no-refunds"])]
    assert decisions[0]["policy_hash"] == PolicySet.load(tmp_path / "policy.yaml").hash


def _policy_agent(tmp: Path) -> Path:
    (tmp / "prompt.md").write_text("Refund.")
    (tmp / "script.json").write_text("[]")
    (tmp / "policy.yaml").write_text(
        "policy:\n  name: p\n  rules:\n"
        "    - id: small\n"
        "      when: {tool: refund, roles_any: [support], args: {amount: {lte: 50}}}\n"
        "      then: allow\n"
        "    - id: medium\n      when: {tool: refund, args: {amount: {gt: 50, lte: 300}}}\n"
        "      then: {require_approval: {tier: manager, role: lead, expires_in: 1h}}\n"
    )
    (tmp / "agent.yaml").write_text(
        "agent:\n  name: a\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["tests.helpers.tools:refund"]\n  policy: policy.yaml\n'
    )
    return tmp / "agent.yaml"


def test_policy_check_prints_the_decision_and_its_rules(tmp_path: Path) -> None:
    _policy_agent(tmp_path)
    args = ["policy", "check", "agent.yaml", "--tool", "refund", "--role", "support"]
    small = run_charter(tmp_path, *args, "--args", '{"order_id": "1", "amount": 20}', "--json")
    assert small.returncode == 0, small.stderr
    assert (json.loads(small.stdout)["outcome"], json.loads(small.stdout)["rule_ids"]) == (
        "allow",
        ["small"],
    )
    medium = run_charter(tmp_path, *args, "--args", '{"order_id": "1", "amount": 120}')
    assert medium.stdout.splitlines()[0].startswith("require_approval")
    assert "tier manager, role lead" in medium.stdout
    bad = run_charter(tmp_path, *args, "--args", '{"order_id": "1"}')
    assert bad.returncode == 2 and "amount" in bad.stderr and "Traceback" not in bad.stderr


def test_policy_test_fails_on_a_mismatch(tmp_path: Path) -> None:
    _policy_agent(tmp_path)
    (tmp_path / "cases.yaml").write_text(
        "- {tool: refund, args: {order_id: '1', amount: 20}, roles: [support], expect: allow,"
        " rule: small}\n"
        "- {tool: refund, args: {order_id: '1', amount: 20}, expect: deny}\n"
        "- {tool: refund, args: {order_id: '1', amount: 500}, expect: allow}\n"
    )
    done = run_charter(tmp_path, "policy", "test", "agent.yaml", "cases.yaml", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert (report["cases"], report["failed"]) == (3, 1)
    assert [r["ok"] for r in report["results"]] == [True, True, False]


def test_the_kill_switch_stops_writes_in_runs_already_in_flight(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("Refund.")
    script = [
        {"tool_calls": [{"name": "ask_principal", "arguments": {"question": "Which order?"}}]},
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "1"}},
                        {"name": "refund", "arguments": {"order_id": "1", "amount": 5}}]},
        {"content": "done"},
    ]  # fmt: skip
    (tmp_path / "script.json").write_text(json.dumps(script))
    (tmp_path / "agent.yaml").write_text(
        "agent:\n  name: a\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["tests.helpers.tools:lookup", "tests.helpers.tools:refund",'
        ' "charter.tools:ask_principal"]\n'
    )

    def run_for(tenant: str) -> str:
        ran = run_charter(tmp_path, "run", "agent.yaml", "--input", "x", "--tenant", tenant)
        return ran.stdout.split()[0]  # the run waits for the reply: it is in flight

    in_flight = run_for("acme")
    other = run_for("globex")
    on = run_charter(
        tmp_path, "killswitch", "on", "--tenant", "acme", "--reason", "incident 7",
        "--action", "reject",
    )  # fmt: skip
    assert on.returncode == 0 and "incident 7" in on.stdout and "reject" in on.stdout
    for run_id in (in_flight, other):
        assert run_charter(tmp_path, "send", run_id, "order 1").returncode == 0
    assert run_charter(tmp_path, "worker", "--until-idle").returncode == 0

    def outcomes(run_id: str) -> dict[str, str]:
        events = json.loads(run_charter(tmp_path, "events", run_id, "--json").stdout)
        found = {}
        for e in events:
            if e["type"] in ("tool_call_succeeded", "tool_call_rejected"):
                code = e["body"].get("error", {}).get("code", "ok")
                found[e["body"]["tool"]] = code
        return found

    assert outcomes(in_flight) == {"ask_principal": "ok", "lookup": "ok", "refund": "kill_switch"}
    assert outcomes(other) == {"ask_principal": "ok", "lookup": "ok", "refund": "ok"}

    off = run_charter(tmp_path, "killswitch", "off", "--tenant", "acme", "--json")
    assert json.loads(off.stdout) == []
    again = run_for("acme")
    run_charter(tmp_path, "send", again, "order 1")
    run_charter(tmp_path, "worker", "--until-idle")
    assert outcomes(again)["refund"] == "ok"


def _kill_switch_agent(tmp: Path) -> None:
    (tmp / "prompt.md").write_text("Refund.")
    script = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "1"}},
                        {"name": "refund", "arguments": {"order_id": "1", "amount": 5}}]},
        {"content": "done"},
    ]  # fmt: skip
    (tmp / "script.json").write_text(json.dumps(script))
    (tmp / "agent.yaml").write_text(
        "agent:\n  name: a\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["tests.helpers.tools:lookup", "tests.helpers.tools:refund"]\n'
    )


def _event_types(tmp: Path, run_id: str) -> list[str]:
    return [e["type"] for e in json.loads(run_charter(tmp, "events", run_id, "--json").stdout)]


def test_a_blocked_write_waits_for_the_switch_to_go_off_then_runs(tmp_path: Path) -> None:
    _kill_switch_agent(tmp_path)
    on = run_charter(tmp_path, "killswitch", "on", "--tenant", "acme", "--reason", "incident 8")
    assert on.returncode == 0 and "wait" in on.stdout  # the default action
    run_id = run_charter(
        tmp_path, "run", "agent.yaml", "--input", "x", "--tenant", "acme"
    ).stdout.split()[0]
    shown = json.loads(run_charter(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert (shown["status"], shown["waiting_for"]) == ("waiting", "kill_switch")
    types = _event_types(tmp_path, run_id)
    assert types[-2:] == ["tool_call_blocked", "run_waiting"]
    assert "tool_call_started" not in types  # the refund never began

    assert run_charter(tmp_path, "killswitch", "off", "--tenant", "acme").returncode == 0
    assert run_charter(tmp_path, "worker", "--until-idle").returncode == 0  # woken at once
    types = _event_types(tmp_path, run_id)
    assert types.count("tool_call_started") == 1 and types[-1] == "run_finished"
    shown = json.loads(run_charter(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded"


def test_a_blocked_write_can_escalate_the_run_instead(tmp_path: Path) -> None:
    _kill_switch_agent(tmp_path)
    run_charter(tmp_path, "killswitch", "on", "--agent", "a", "--action", "escalate")
    ran = run_charter(tmp_path, "run", "agent.yaml", "--input", "x", "--json")
    record = json.loads(ran.stdout)
    assert record["status"] == "escalated"
    assert "blocked" in record["state"]["reason"]
    types = _event_types(tmp_path, record["run_id"])
    assert "tool_call_blocked" in types and "tool_call_started" not in types


def test_policy_rules_see_the_kill_switch(db_url: str) -> None:
    policy = PolicySet.from_dict(
        {
            "policy": {
                "name": "p",
                "rules": [
                    {
                        "id": "kill-switch",
                        "when": {"kill_switch": True, "effect": "write"},
                        "then": {"deny": "writes are off"},
                    },
                    {"id": "all", "when": {}, "then": "allow"},
                ],
            }
        }
    )
    script = [
        {"tool_calls": [{"name": "look", "arguments": {"order_id": "7"}},
                        {"name": "pay_back", "arguments": {"order_id": "7", "amount": 5}}]},
        {"content": "done"},
    ]  # fmt: skip
    agent = Agent(
        name="refunder",
        instructions="Refund.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[look, pay_back],
        policy=policy,
    )

    async def main() -> list[Event]:
        async with Runtime.open(db_url) as rt:
            await rt.store.set_kill_switch(tenant="*", agent="*", on=True, reason="r")
            run = await rt.run(agent, "refund")
            return await rt.events(run.run_id)

    EXECUTED.clear()
    events = asyncio.run(main())
    decisions = {d.tool: (d.outcome, d.rule_ids) for d in _bodies(events, PolicyEvaluated)}
    assert decisions == {"look": ("allow", ("all",)), "pay_back": ("deny", ("kill-switch",))}
    assert EXECUTED == []


def test_the_principals_tenant_is_given_on_the_command_line(tmp_path: Path) -> None:
    _kill_switch_agent(tmp_path)
    (tmp_path / "policy.yaml").write_text(
        "policy:\n  name: p\n  rules:\n"
        "    - id: own-tenant\n      when: {tenant_matches_principal: true}\n      then: allow\n"
    )
    with (tmp_path / "agent.yaml").open("a") as f:
        f.write("  policy: policy.yaml\n")

    def decisions(*extra: str) -> list[str]:
        ran = run_charter(tmp_path, "run", "agent.yaml", "--input", "x", "--tenant", "acme",
                          *extra, "--json")  # fmt: skip
        events = run_charter(tmp_path, "events", json.loads(ran.stdout)["run_id"], "--json")
        found = json.loads(events.stdout)
        return [e["body"]["outcome"] for e in found if e["type"] == "policy_evaluated"]

    assert decisions("--principal-tenant", "acme") == ["allow", "allow"]
    assert decisions("--principal-tenant", "globex") == ["deny", "deny"]
    assert decisions() == ["deny", "deny"]  # unknown: never matches


def test_policy_check_answers_what_if_questions_a_run_would_decide(tmp_path: Path) -> None:
    _kill_switch_agent(tmp_path)
    (tmp_path / "policy.yaml").write_text(
        "policy:\n  name: p\n  rules:\n"
        "    - id: kill-switch\n      when: {kill_switch: true, effect: write}\n"
        "      then: {deny: writes are off}\n"
        "    - id: foreign\n      when: {tenant_matches_principal: false}\n"
        "      then: {deny: not your tenant}\n"
        "    - id: from-untrusted-text\n      when: {provenance: {untrusted_in_args: true}}\n"
        "      then: {require_approval: {tier: t, role: lead, expires_in: 1h}}\n"
        "    - id: rest\n      when: {}\n      then: allow\n"
    )
    with (tmp_path / "agent.yaml").open("a") as f:
        f.write("  policy: policy.yaml\n")

    def rule(*extra: str) -> str:
        checked = run_charter(
            tmp_path, "policy", "check", "agent.yaml", "--tool", "refund",
            "--args", '{"order_id": "1", "amount": 5}', "--tenant", "acme",
            "--principal-tenant", "acme", *extra, "--json",
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        return str(json.loads(checked.stdout)["rule_ids"][-1])

    assert rule() == "rest"
    assert rule("--untrusted-args") == "from-untrusted-text"
    assert rule("--kill-switch") == "kill-switch"
    assert rule("--principal-tenant", "globex") == "foreign"
