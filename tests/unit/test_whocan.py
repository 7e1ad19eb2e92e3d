"""who-can: the symbolic walk over a policy's rules for each agent and tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from charter import Agent, ConfigError, ModelSpec, tool
from charter.policy import PolicySet
from charter.policy._whocan import WhoCanAnswer, parse_selector, who_can
from charter.tools import Tool

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies" / "support.yaml"


@tool(effect="read")
def lookup(order_id: str) -> str:
    """Look an order up."""
    return order_id


@tool(effect="write", risk="high")
def refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    return order_id


@tool(effect="write", risk="critical")
def wipe(customer_id: str) -> str:
    """Delete a customer."""
    return customer_id


@tool(effect="write", risk="medium", destinations=["to"])
def send_email(to: str) -> str:
    """Send mail."""
    return to


@tool(effect="control", name="ask")
def ask(question: str) -> str:
    """Ask the principal."""
    return question


def policy(*rules: dict[str, Any], allowlists: dict[str, list[str]] | None = None) -> PolicySet:
    doc: dict[str, Any] = {"name": "p", "rules": list(rules)}
    if allowlists:
        doc["allowlists"] = allowlists
    return PolicySet.from_dict({"policy": doc})


def agent(pol: PolicySet | None, *tools: Tool, name: str = "a", tier: str = "standard") -> Agent:
    return Agent(name=name, instructions="x", model=ModelSpec(provider="scripted", script=[]),
                 tools=tools or (lookup, refund, wipe), policy=pol, trust_tier=tier)  # fmt: skip


def ids(answer: WhoCanAnswer) -> list[tuple[str, str, str | None]]:
    return [(p.agent, p.tool, p.rule_id) for p in answer.paths]


def test_paths_are_the_allow_and_approval_rules_in_order_with_their_conditions() -> None:
    pol = policy(
        {"id": "small", "when": {"tool": "refund", "roles_any": ["support"],
                                 "args": {"amount": {"lte": 50}}}, "then": "allow"},
        {"id": "medium", "when": {"tool": "refund", "args": {"amount": {"lte": 300}}},
         "then": {"require_approval": {"tier": "manager", "role": "lead", "expires_in": "1h"}}},
        {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
    )  # fmt: skip
    answer = who_can("refund", [agent(pol)])
    assert ids(answer) == [("a", "refund", "small"), ("a", "refund", "medium")]
    small, medium = answer.paths
    assert small.outcome == "allow"
    assert small.conditions == ("role support", "amount <= 50")
    assert small.when == {"roles_any": ["support"], "args": {"amount": {"lte": 50}}}
    assert medium.outcome == "require_approval"
    assert medium.approval is not None
    assert (medium.approval.tier, medium.approval.role) == ("manager", "lead")
    assert [r.rule_id for r in medium.pre_empted_by] == ["small"]  # an earlier allow decides first


def test_rules_whose_static_conditions_cannot_match_are_skipped() -> None:
    pol = policy(
        {"id": "other-agent", "when": {"agent": "b", "tool": "refund"}, "then": "allow"},
        {"id": "old-version", "when": {"agent_version": "9"}, "then": "allow"},
        {"id": "sandbox", "when": {"trust_tier": "sandbox"}, "then": "allow"},
        {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
        {"id": "low", "when": {"risk": "low", "tool": "refund"}, "then": "allow"},
        {"id": "deny-b", "when": {"agent": "b"}, "then": "deny"},
        {"id": "refund-support", "when": {"tool": "refund", "roles_any": ["support"]},
         "then": "allow"},
    )  # fmt: skip
    answer = who_can("refund", [agent(pol)])
    assert ids(answer) == [("a", "refund", "refund-support")]
    assert answer.paths[0].pre_empted_by == ()


def test_an_unconditional_deny_blocks_and_hides_later_rules() -> None:
    pol = policy(
        {"id": "sandbox-read-only", "when": {"trust_tier": "sandbox", "effect": "write"},
         "then": {"deny": "sandboxed agents may not write"}},
        {"id": "refunds", "when": {"tool": "refund"}, "then": "allow"},
    )  # fmt: skip
    answer = who_can("refund", [agent(pol, name="boxed", tier="sandbox"), agent(pol)])
    assert ids(answer) == [("a", "refund", "refunds")]
    (blocked,) = answer.blocked
    assert (blocked.agent, blocked.tool) == ("boxed", "refund")
    assert blocked.reason == "always denied by rule 'sandbox-read-only'"


def test_no_rule_allowing_means_default_deny_and_nobody() -> None:
    pol = policy({"id": "reads", "when": {"effect": "read"}, "then": "allow"})
    answer = who_can("refund", [agent(pol)])
    assert answer.nobody
    assert answer.blocked[0].reason == "no rule allows it (default deny)"
    assert who_can("no_such_tool", [agent(pol)]).to_dict()["nobody"] is True


def test_earlier_conditional_denies_pre_empt_unless_they_cannot_hold_together() -> None:
    pol = policy(
        {"id": "kill", "when": {"kill_switch": True, "effect": "write"}, "then": "deny"},
        {"id": "foreign", "when": {"tenant_matches_principal": False}, "then": "deny"},
        {"id": "large", "when": {"tool": "refund", "args": {"amount": {"gt": 300}}},
         "then": {"deny": "finance only"}},
        {"id": "prod-only", "when": {"environment": "staging"}, "then": "deny"},
        {"id": "small", "when": {"tool": "refund", "environment": "prod",
                                 "args": {"amount": {"gt": 0, "lte": 50}}}, "then": "allow"},
        {"id": "any", "when": {"tool": "refund", "tenant_matches_principal": True},
         "then": "allow"},
    )  # fmt: skip
    small, anything = who_can("refund", [agent(pol)]).paths
    # "large" (amount > 300) and "prod-only" (staging) cannot hold with amount <= 50 in prod
    assert [r.rule_id for r in small.pre_empted_by] == ["kill", "foreign"]
    assert small.pre_empted_by[0].conditions == ("kill switch on",)
    assert small.pre_empted_by[1].conditions == ("principal from another tenant",)
    assert small.pre_empted_by[2:] == ()
    # "foreign" needs another tenant's principal, this path the run's own
    assert [r.rule_id for r in anything.pre_empted_by] == ["kill", "large", "prod-only", "small"]
    assert anything.pre_empted_by[1].action == "deny: finance only"


def test_a_path_that_an_earlier_rule_always_decides_for_this_agent_is_not_listed() -> None:
    pol = policy(
        {"id": "standard-denied", "when": {"trust_tier": "standard", "tool": "refund",
                                           "roles_any": ["support", "ops"]}, "then": "deny"},
        {"id": "support", "when": {"tool": "refund", "roles_any": ["support"]}, "then": "allow"},
        {"id": "lead", "when": {"tool": "refund", "roles_all": ["lead"]}, "then": "allow"},
    )  # fmt: skip
    answer = who_can("refund", [agent(pol), agent(pol, name="b", tier="trusted")])
    assert ids(answer) == [("a", "refund", "lead"), ("b", "refund", "support"),
                           ("b", "refund", "lead")]  # fmt: skip
    assert [r.rule_id for r in answer.paths[0].pre_empted_by] == ["standard-denied"]


def test_argument_conditions_that_exclude_each_other() -> None:
    pol = policy(
        {"id": "no-eu", "when": {"tool": "refund", "args": {"region": {"in": ["eu", "uk"]}}},
         "then": "deny"},
        {"id": "missing", "when": {"tool": "refund", "args": {"note": {"exists": False}}},
         "then": "deny"},
        {"id": "us", "when": {"tool": "refund", "args": {"region": {"eq": "us"},
                                                          "note": {"regex": ".+"}}},
         "then": "allow"},
        {"id": "eu-big", "when": {"tool": "refund", "args": {"region": {"eq": "eu"}}},
         "then": "allow"},
    )  # fmt: skip
    us, eu = who_can("refund", [agent(pol)]).paths
    assert us.pre_empted_by == ()
    assert [r.rule_id for r in eu.pre_empted_by] == ["no-eu", "missing"]  # not "us": eq differs


def test_rewrites_are_shown_as_rewrite_then_recheck_where_their_context_can_hold() -> None:
    pol = policy(
        {"id": "test-mode", "when": {"tool": "refund", "environment": ["dev", "staging"]},
         "then": {"rewrite": {"set": {"test_mode": True}}}},
        {"id": "cap", "when": {"tool": "refund"}, "then": {"rewrite": {"cap": {"amount": 50}}}},
        {"id": "prod", "when": {"tool": "refund", "environment": "prod"}, "then": "allow"},
        {"id": "dev", "when": {"tool": "refund", "environment": "dev"}, "then": "allow"},
    )  # fmt: skip
    prod, dev = who_can("refund", [agent(pol)]).paths
    assert [r.text() for r in prod.rewrites] == [
        "cap (rewrites amount capped at 50, then re-checks always)"
    ]
    assert [r.rule_id for r in dev.rewrites] == ["test-mode", "cap"]
    assert dev.rewrites[0].action == "rewrites test_mode=true, then re-checks"
    assert dev.rewrites[0].conditions == ("environment in [dev, staging]",)


def test_tenant_filter_keeps_only_paths_open_to_that_tenant() -> None:
    pol = policy(
        {"id": "acme-blocked", "when": {"tenant": "acme", "roles_any": ["intern"]},
         "then": "deny"},
        {"id": "acme", "when": {"tool": "refund", "tenant": ["acme", "globex"]}, "then": "allow"},
        {"id": "initech", "when": {"tool": "refund", "tenant": "initech"}, "then": "allow"},
        {"id": "anyone", "when": {"tool": "refund", "roles_any": ["lead"]}, "then": "allow"},
    )  # fmt: skip
    everyone = who_can("refund", [agent(pol)])
    assert [p.rule_id for p in everyone.paths] == ["acme", "initech", "anyone"]
    assert everyone.paths[0].conditions == ("tenant in [acme, globex]",)
    acme = who_can("refund", [agent(pol)], tenant="acme")
    assert [p.rule_id for p in acme.paths] == ["acme"]  # unconditional for acme: nothing after
    assert acme.paths[0].conditions == ()
    assert [r.rule_id for r in acme.paths[0].pre_empted_by] == ["acme-blocked"]
    initech = who_can("refund", [agent(pol)], tenant="initech")
    assert [p.rule_id for p in initech.paths] == ["initech"]
    assert initech.paths[0].pre_empted_by == ()  # acme's deny cannot apply to initech
    assert who_can("refund", [agent(pol)], tenant="hooli").paths[0].rule_id == "anyone"


def test_effect_and_risk_selectors_pick_the_tools() -> None:
    pol = policy({"id": "all", "when": {"roles_any": ["admin"]}, "then": "allow"})
    a = agent(pol, lookup, refund, wipe, send_email)
    assert [p.tool for p in who_can("write", [a]).paths] == ["refund", "wipe", "send_email"]
    assert [p.tool for p in who_can("read", [a]).paths] == ["lookup"]
    assert [p.tool for p in who_can("risk:critical", [a]).paths] == ["wipe"]
    assert [p.tool for p in who_can("risk:high+", [a]).paths] == ["refund", "wipe"]
    assert [p.tool for p in who_can("write,risk:medium", [a]).paths] == ["send_email"]
    assert [p.tool for p in who_can("tool:lookup", [a]).paths] == ["lookup"]


def test_without_a_policy_every_tool_is_unrestricted_and_control_tools_are_ungoverned() -> None:
    (free,) = who_can("refund", [agent(None)]).paths
    assert (free.outcome, free.rule_id, free.note) == ("allow", None, "no policy: unrestricted")
    deny_all = policy({"id": "reads", "when": {"effect": "read"}, "then": "allow"})
    (control,) = who_can("control", [agent(deny_all, ask)]).paths
    assert control.note == "control tool: not governed by policy"


def test_destination_and_provenance_conditions_are_described() -> None:
    pol = policy(
        {"id": "outside", "when": {"tool": "send_email", "destinations": {"not_in": "customers"}},
         "then": "deny"},
        {"id": "known", "when": {"tool": "send_email", "destinations": {"in": "customers"},
                                 "provenance": {"destination_from": ["principal"],
                                                "untrusted_in_context": False}},
         "then": "allow"},
        allowlists={"customers": ["example.com"]},
    )  # fmt: skip
    (known,) = who_can("send_email", [agent(pol, send_email)]).paths
    assert known.conditions == (
        "destinations on allowlist customers (example.com)",
        "no untrusted data in the run's context",
        "destinations only from principal",
    )
    assert known.pre_empted_by == ()  # in vs not_in the same allowlist


def test_the_example_policy_answers_who_can_delete_customers() -> None:
    pol = PolicySet.load(EXAMPLE)
    delete = tool(effect="write", risk="critical", name="delete_customer")(wipe.fn)
    answer = who_can(
        "write,risk:critical", [agent(pol, delete), agent(pol, delete, name="box", tier="sandbox")]
    )
    (path,) = answer.paths
    assert (path.agent, path.rule_id, path.outcome) == ("a", "critical-needs-admin",
                                                        "require_approval")  # fmt: skip
    assert path.approval is not None and path.approval.role == "support_admin"
    assert [r.rule_id for r in path.pre_empted_by] == ["kill-switch", "foreign-tenant-writes"]
    assert answer.blocked[0].reason == "always denied by rule 'sandboxed-agents-read-only'"


@pytest.mark.parametrize("text", ["", "risk:bogus", "effect:delete", "write,,read", "a,tool:b"])
def test_bad_selectors_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_selector(text)


def test_selector_terms_combine() -> None:
    sel = parse_selector("write,risk:high+")
    assert sel.effects == frozenset({"write"}) and sel.tool is None
    assert sel.risks == frozenset({"high", "critical"})
    assert parse_selector("read").effects == frozenset({"read"})
    assert parse_selector("refund").tool == "refund"
