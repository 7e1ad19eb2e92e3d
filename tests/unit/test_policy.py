"""The policy engine's pure core: the grammar, evaluation, load-time checks and hashing."""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from charter import ConfigError
from charter.policy import (
    MAX_REWRITES,
    ApprovalRequirement,
    ApprovalSpec,
    ArgCondition,
    Decision,
    Deny,
    PolicyDocument,
    PolicyInput,
    PolicySet,
    RequireApproval,
    Rule,
    When,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies" / "support.yaml"
EXAMPLE_TOOLS = {
    "kb_search",
    "lookup_order",
    "lookup_customer",
    "fetch_url",
    "update_ticket",
    "update_customer",
    "refund",
    "send_email",
    "delete_customer",
}
EFFECTS = {"refund": "write", "update_customer": "write", "update_ticket": "write"}
EFFECTS |= {"send_email": "write", "delete_customer": "write"}


def call(tool: str = "refund", **overrides: Any) -> PolicyInput:
    """A proposed call by a support agent for its own tenant, provenance all trusted."""
    fields: dict[str, Any] = {
        "tool": tool,
        "effect": EFFECTS.get(tool, "read"),
        "risk": "critical" if tool == "delete_customer" else "high",
        "agent_name": "support_triage",
        "agent_version": "3",
        "tenant": "acme",
        "principal": "alice",
        "principal_tenant": "acme",
        "environment": "prod",
        "roles": frozenset({"support"}),
        "untrusted_in_args": False,
        "untrusted_in_context": False,
    }
    fields.update(overrides)
    return PolicyInput(**fields)


def policy(*rules: dict[str, Any], allowlists: dict[str, list[str]] | None = None) -> PolicySet:
    doc: dict[str, Any] = {"name": "t", "rules": list(rules)}
    if allowlists is not None:
        doc["allowlists"] = allowlists
    return PolicySet.from_dict({"policy": doc})


def allow_if(when: dict[str, Any]) -> PolicySet:
    return policy({"id": "r", "when": when, "then": "allow"})


def allowed(ps: PolicySet, inp: PolicyInput) -> bool:
    return ps.evaluate(inp).outcome == "allow"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


@functools.cache
def _example() -> PolicySet:
    return PolicySet.load(EXAMPLE, known_tools=EXAMPLE_TOOLS)


@pytest.fixture
def support() -> PolicySet:
    return _example()


# -- argument operators ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cond", "value", "expected"),
    [
        ({"eq": "refund"}, "refund", True),
        ({"eq": "refund"}, "Refund", False),
        ({"eq": 50}, 50.0, True),
        ({"eq": 1}, True, False),
        ({"eq": True}, 1, False),
        ({"eq": None}, None, True),
        ({"eq": [1, {"a": 2}]}, [1, {"a": 2}], True),
        ({"ne": "x"}, "y", True),
        ({"ne": "x"}, "x", False),
        ({"lt": 10}, 9.5, True),
        ({"lt": 10}, 10, False),
        ({"lte": 10}, 10, True),
        ({"gt": 10}, 10, False),
        ({"gt": 10}, 11, True),
        ({"gte": 10}, 10, True),
        ({"gte": "2024-01-01"}, "2024-06-30", True),
        ({"lt": "2024-01-01"}, "2024-06-30", False),
        ({"in": ["a", "b"]}, "b", True),
        ({"in": ["a", "b"]}, "c", False),
        ({"in": [1, 2]}, 2.0, True),
        ({"in": [1, "1"]}, True, False),
        ({"not_in": ["a", "b"]}, "c", True),
        ({"not_in": ["a", "b"]}, "a", False),
        ({"regex": "[A-Z]{2}-\\d+"}, "AB-12", True),
        ({"regex": "[A-Z]{2}-\\d+"}, "xAB-12", False),
        ({"exists": True}, "anything", True),
        ({"exists": True}, None, True),
        ({"exists": False}, 0, False),
    ],
)
def test_each_operator_compares_the_argument_as_documented(
    cond: dict[str, Any], value: Any, expected: bool
) -> None:
    ps = allow_if({"args": {"x": cond}})
    assert allowed(ps, call(arguments={"x": value})) is expected


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"eq": "a"}, False),
        ({"eq": None}, False),
        ({"ne": "a"}, True),
        ({"in": ["a"]}, False),
        ({"not_in": ["a"]}, True),
        ({"lt": 5}, False),
        ({"gte": 5}, False),
        ({"regex": ".*"}, False),
        ({"exists": True}, False),
        ({"exists": False}, True),
    ],
)
def test_a_missing_argument_equals_nothing(cond: dict[str, Any], expected: bool) -> None:
    ps = allow_if({"args": {"x": cond}})
    decision = ps.evaluate(call(arguments={"y": 1}))
    assert (decision.outcome == "allow") is expected
    assert decision.error is None


def test_all_operators_on_one_argument_must_hold() -> None:
    ps = allow_if({"args": {"amount": {"gt": 50, "lte": 300}}})
    assert [allowed(ps, call(arguments={"amount": a})) for a in (50, 51, 300, 301)] == [
        False,
        True,
        True,
        False,
    ]


def test_dotted_paths_reach_nested_fields_and_list_items() -> None:
    ps = allow_if(
        {"args": {"customer.address.country": {"in": ["DE", "FR"]}, "items.1.sku": {"eq": "B"}}}
    )
    args = {"customer": {"address": {"country": "DE"}}, "items": [{"sku": "A"}, {"sku": "B"}]}
    assert allowed(ps, call(arguments=args))
    assert not allowed(ps, call(arguments={**args, "items": [{"sku": "A"}]}))
    assert not allowed(ps, call(arguments={**args, "customer": {"address": "DE"}}))


def test_every_condition_in_when_must_match() -> None:
    ps = allow_if({"tool": "refund", "environment": "prod", "args": {"amount": {"lte": 50}}})
    assert allowed(ps, call(arguments={"amount": 10}))
    assert not allowed(ps, call(arguments={"amount": 10}, environment="staging"))
    assert not allowed(ps, call(arguments={"amount": 90}))


# -- context conditions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "attribute", "value"),
    [
        ("agent", "agent_name", "billing_bot"),
        ("agent_version", "agent_version", "4"),
        ("tenant", "tenant", "globex"),
        ("principal", "principal", "bob"),
        ("trust_tier", "trust_tier", "sandbox"),
        ("environment", "environment", "staging"),
        ("tool", "tool", "lookup_order"),
        ("effect", "effect", "read"),
        ("risk", "risk", "low"),
    ],
)
def test_a_list_in_when_means_any_of(field: str, attribute: str, value: str) -> None:
    base = getattr(call(), attribute)
    ps = allow_if({field: [base, value]})
    assert allowed(ps, call())
    assert allowed(ps, call(**{attribute: value}))
    other = "medium" if field == "risk" else "control" if field == "effect" else "other"
    assert not allowed(ps, call(**{attribute: other}))


def test_a_numeric_agent_version_in_yaml_is_read_as_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy:\n  name: t\n  version: 4\n  rules:\n"
        "    - {id: r, when: {agent_version: 3}, then: allow}\n",
    )
    ps = PolicySet.load(path)
    assert ps.version == "4"
    assert allowed(ps, call(agent_version="3"))


def test_roles_any_needs_one_of_the_roles() -> None:
    ps = allow_if({"roles_any": ["support", "billing"]})
    assert allowed(ps, call(roles={"billing", "other"}))
    assert not allowed(ps, call(roles={"other"}))
    assert not allowed(ps, call(roles=frozenset()))


def test_roles_all_needs_every_role() -> None:
    ps = allow_if({"roles_all": ["support", "customer_data"]})
    assert allowed(ps, call(roles=["support", "customer_data", "x"]))
    assert not allowed(ps, call(roles={"support"}))


def test_tenant_matches_principal_compares_the_principals_tenant() -> None:
    same, other = (
        allow_if({"tenant_matches_principal": True}),
        allow_if({"tenant_matches_principal": False}),
    )
    assert allowed(same, call()) and not allowed(other, call())
    assert allowed(other, call(principal_tenant="globex"))
    assert allowed(other, call(principal_tenant=None))  # unknown is not a match
    assert not allowed(same, call(principal_tenant=None))


def test_kill_switch_denies_writes_and_leaves_reads(support: PolicySet) -> None:
    refund = support.evaluate(call(arguments={"order_id": "A1", "amount": 10}, kill_switch=True))
    assert (refund.outcome, refund.rule_ids) == ("deny", ("kill-switch",))
    assert allowed(support, call("kb_search", arguments={"query": "x"}, kill_switch=True))


# -- provenance --------------------------------------------------------------------------------


def test_untrusted_data_conditions_match_the_input_flags() -> None:
    args_ps = allow_if({"provenance": {"untrusted_in_args": False}})
    context_ps = allow_if({"provenance": {"untrusted_in_context": True}})
    assert allowed(args_ps, call()) and not allowed(args_ps, call(untrusted_in_args=True))
    assert allowed(context_ps, call(untrusted_in_context=True))
    assert not allowed(context_ps, call())


def test_unknown_provenance_counts_as_untrusted() -> None:
    bare = PolicyInput(
        tool="refund", effect="write", risk="high", agent_name="a", tenant="t", principal="p",
        environment="prod",
    )  # fmt: skip
    assert bare.untrusted_in_args and bare.untrusted_in_context
    assert not allowed(allow_if({"provenance": {"untrusted_in_args": False}}), bare)


def test_destination_from_needs_every_destination_from_the_listed_sources() -> None:
    ps = allow_if({"provenance": {"destination_from": ["principal", "allowlist"]}})
    dests = {"to": "a@example.com", "cc": "b@example.com"}
    good = {"to": {"principal"}, "cc": {"allowlist", "principal"}}
    assert allowed(ps, call(destinations=dests, destination_sources=good))
    mixed = {"to": {"principal"}, "cc": {"principal", "retrieved"}}
    assert not allowed(ps, call(destinations=dests, destination_sources=mixed))
    unknown = {"to": {"principal"}}  # cc's origin is not known
    assert not allowed(ps, call(destinations=dests, destination_sources=unknown))


# -- destinations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "inside"),
    [
        ("bob@example.com", True),
        ("Bob@EXAMPLE.com", True),
        ("https://example.com/path?q=1", True),
        ("example.com", True),
        ("ops@eu.shop.example.org", True),
        ("example.org", False),
        ("#support", True),
        ("acct_42", True),
        (42, True),
        ("bob@evil.com", False),
        ("https://example.com@evil.com/x", False),
        ("https://example.com.evil.com/", False),
        ("bob@notexample.com", False),
        ("", False),
        ("eve@evil.test, bob@example.com", False),
        ("eve@evil.test bob@example.com", False),
        ("https://evil.test\\@example.com/", False),
        ("https://evil.test#@example.com", False),
        ("Eve <eve@evil.test>;bob@example.com", False),
    ],
)
def test_allowlist_entries_match_values_hosts_and_wildcards(value: Any, inside: bool) -> None:
    lists = {"ok": ["example.com", "*.example.org", "#support", "acct_42", "42"]}
    ps = policy(
        {"id": "r", "when": {"destinations": {"in": "ok"}}, "then": "allow"}, allowlists=lists
    )
    assert allowed(ps, call(destinations={"to": value})) is inside


def test_not_in_matches_when_any_destination_is_outside() -> None:
    ps = policy(
        {"id": "outside", "when": {"destinations": {"not_in": "ok"}}, "then": {"deny": "no"}},
        {"id": "rest", "when": {}, "then": "allow"},
        allowlists={"ok": ["example.com"]},
    )
    assert allowed(ps, call(destinations={"to": ["a@example.com", "b@example.com"]}))
    mixed = ps.evaluate(call(destinations={"to": ["a@example.com"], "cc": "c@evil.com"}))
    assert (mixed.outcome, mixed.reason) == ("deny", "no")
    assert allowed(ps, call(destinations={}))  # no destinations: nothing is outside


def test_destinations_are_checked_for_read_tools(support: PolicySet) -> None:
    docs = "https://docs.example.com/refunds"
    ok = support.evaluate(call("fetch_url", arguments={"url": docs}, destinations={"url": docs}))
    bad = "https://attacker.test/x"
    no = support.evaluate(call("fetch_url", arguments={"url": bad}, destinations={"url": bad}))
    assert ok.outcome == "allow"
    assert (no.outcome, no.rule_ids) == ("deny", ("fetch-only-docs",))


# -- order, outcomes, default deny -------------------------------------------------------------


def test_the_first_matching_terminal_rule_decides() -> None:
    ps = policy(
        {"id": "deny-big", "when": {"args": {"amount": {"gt": 100}}}, "then": {"deny": "big"}},
        {"id": "refunds", "when": {"tool": "refund"}, "then": "allow"},
    )
    assert ps.evaluate(call(arguments={"amount": 500})).rule_ids == ("deny-big",)
    assert ps.evaluate(call(arguments={"amount": 5})).rule_ids == ("refunds",)


def test_a_call_no_rule_allows_is_denied() -> None:
    decision = allow_if({"tool": "kb_search"}).evaluate(call("refund"))
    assert decision.outcome == "deny"
    assert decision.reason == "no rule allows this call"
    assert decision.rule_ids == ()
    assert decision.error is None


def test_deny_carries_its_reason_and_a_bare_deny_names_the_rule() -> None:
    ps = policy(
        {"id": "a", "when": {"tool": "refund"}, "then": {"deny": "refunds are closed"}},
        {"id": "b", "when": {}, "then": "deny"},
    )
    assert ps.evaluate(call("refund")).reason == "refunds are closed"
    assert ps.evaluate(call("kb_search")).reason == "denied by rule 'b'"


def test_require_approval_names_tier_role_expiry(support: PolicySet) -> None:
    decision = support.evaluate(call(arguments={"order_id": "A1", "amount": 120}))
    assert decision.outcome == "require_approval"
    assert decision.rule_ids == ("refund-medium",)
    assert decision.approval == ApprovalRequirement("manager", "support_lead", 86400, "escalate")
    assert decision.policy_hash == support.hash


# -- rewrites ----------------------------------------------------------------------------------

CAP_THEN_CHECK = (
    {"id": "cap", "when": {"tool": "refund"}, "then": {"rewrite": {"cap": {"amount": 300}}}},
    {"id": "small", "when": {"args": {"amount": {"lte": 50}}}, "then": "allow"},
    {
        "id": "medium",
        "when": {"args": {"amount": {"lte": 300}}},
        "then": {"require_approval": {"tier": "t", "role": "lead", "expires_in": "1h"}},
    },
)


def test_a_rewrite_caps_and_the_rewritten_call_is_checked_again() -> None:
    ps = policy(*CAP_THEN_CHECK)
    big = ps.evaluate(call(arguments={"order_id": "A1", "amount": 900}))
    assert big.outcome == "require_approval"
    assert big.rewritten and big.arguments == {"order_id": "A1", "amount": 300}
    assert big.rule_ids == ("cap", "medium")
    small = ps.evaluate(call(arguments={"order_id": "A1", "amount": 20}))
    assert (small.outcome, small.rewritten, small.rule_ids) == ("allow", False, ("small",))


def test_a_rewrite_sets_nested_values_and_leaves_the_input_alone(support: PolicySet) -> None:
    ps = policy(
        {
            "id": "sandbox",
            "when": {},
            "then": {"rewrite": {"set": {"options.mode": {"test": True}}}},
        },
        {"id": "ok", "when": {"args": {"options.mode.test": {"eq": True}}}, "then": "allow"},
    )
    args = {"options": {"speed": 1}}
    first = ps.evaluate(call(arguments=args))
    assert first.arguments == {"options": {"speed": 1, "mode": {"test": True}}}
    assert args == {"options": {"speed": 1}}
    first.arguments["options"]["mode"]["test"] = False  # the caller's copy, not the rule's
    assert ps.evaluate(call(arguments=args)).arguments["options"]["mode"] == {"test": True}
    staging = support.evaluate(call(arguments={"amount": 10}, environment="staging"))
    assert staging.arguments == {"amount": 10, "test_mode": True}
    assert staging.rule_ids == ("refund-test-mode", "refund-small")


def test_a_rewrite_that_changes_nothing_is_skipped() -> None:
    ps = policy(
        {"id": "force", "when": {}, "then": {"rewrite": {"set": {"test_mode": True}}}},
        {"id": "ok", "when": {}, "then": "allow"},
    )
    decision = ps.evaluate(call(arguments={"test_mode": True}))
    assert (decision.outcome, decision.rewritten, decision.rule_ids) == ("allow", False, ("ok",))


def test_rewrites_that_undo_each_other_are_stopped_as_a_loop() -> None:
    ps = policy(
        {"id": "one", "when": {}, "then": {"rewrite": {"set": {"x": 1}}}},
        {"id": "two", "when": {"args": {"x": {"eq": 1}}}, "then": {"rewrite": {"set": {"x": 2}}}},
        {"id": "ok", "when": {}, "then": "allow"},
    )
    decision = ps.evaluate(call(arguments={}))
    assert decision.outcome == "deny"
    assert decision.reason.startswith("rewrite loop")
    assert len(decision.rule_ids) == MAX_REWRITES + 1
    assert decision.error is None


def test_a_rewritten_destination_is_checked_against_the_allowlist() -> None:
    ps = policy(
        {"id": "outside", "when": {"destinations": {"not_in": "ok"}}, "then": {"deny": "outside"}},
        {
            "id": "to-sandbox",
            "when": {"environment": "staging"},
            "then": {"rewrite": {"set": {"to": "qa@evil.test"}}},
        },
        {"id": "rest", "when": {}, "then": "allow"},
        allowlists={"ok": ["example.com"]},
    )
    inp = call(arguments={"to": "a@example.com"}, destinations={"to": "a@example.com"})
    assert allowed(ps, inp)
    staged = ps.evaluate(dataclasses.replace(inp, environment="staging"))
    assert (staged.outcome, staged.rule_ids) == ("deny", ("to-sandbox", "outside"))


# -- failing closed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cond", "value"),
    [
        ({"regex": "\\d+"}, 42),
        ({"regex": "\\d+"}, None),
        ({"lte": 50}, "20"),
        ({"lte": 50}, True),
        ({"lte": 50}, math.nan),
        ({"lte": 50}, [1]),
        ({"gte": "2024-01-01"}, 20240101),
    ],
)
def test_a_condition_on_the_wrong_type_denies_and_records_the_error(
    cond: dict[str, Any], value: Any
) -> None:
    ps = policy(
        {"id": "check", "when": {"args": {"x": cond}}, "then": "allow"},
        {"id": "fallback", "when": {}, "then": "allow"},
    )
    decision = ps.evaluate(call(arguments={"x": value}))
    assert decision.outcome == "deny"
    assert decision.reason.startswith("policy evaluation error: rule 'check': argument 'x'")
    assert decision.error is not None and decision.error.startswith("TypeError")
    assert decision.rule_ids == ("check",)


def test_a_string_amount_cannot_slip_past_the_refund_limits(support: PolicySet) -> None:
    decision = support.evaluate(call(arguments={"order_id": "A1", "amount": "1000"}))
    assert decision.outcome == "deny" and decision.error is not None


def test_arguments_that_are_not_a_mapping_deny() -> None:
    decision = allow_if({"args": {"x": {"eq": 1}}}).evaluate(call(arguments=[1, 2]))  # type: ignore[arg-type]
    assert decision.outcome == "deny" and decision.error is not None


def test_a_cap_on_a_non_number_denies() -> None:
    ps = policy(*CAP_THEN_CHECK)
    decision = ps.evaluate(call(arguments={"amount": "lots"}))
    assert (decision.outcome, decision.rule_ids) == ("deny", ("cap",))
    assert decision.error is not None


# -- hashing -----------------------------------------------------------------------------------

HASH_A = """\
policy:
  name: desk
  version: "1"
  allowlists: {mail: [b.com, a.com]}
  rules:
    - id: refund-small
      when: {tool: refund, args: {amount: {lte: 50, gt: 0}}, roles_any: [b, a]}
      then: allow
    - id: big
      when: {tool: refund}
      then: {require_approval: {tier: manager, role: lead, expires_in: 24h}}
"""
HASH_B = """\
# the same rules, keys and lists in another order, other layout
policy:
  rules:
  - then: allow
    id: refund-small
    when:
      roles_any: [a, b]
      args:
        amount: {gt: 0, lte: 50}
      tool: [refund]
  - id: big
    then:
      require_approval: {expires_in: 24h, role: lead, tier: manager, on_expiry: deny}
    when: {tool: refund}
  allowlists:
    mail: [A.com, b.com]
  version: "1"
  name: desk
"""


def test_the_hash_ignores_key_order_layout_and_list_order(tmp_path: Path) -> None:
    a = PolicySet.load(write(tmp_path, HASH_A))
    b_path = tmp_path / "b.yaml"
    b_path.write_text(HASH_B)
    assert a.hash == PolicySet.load(b_path).hash
    assert len(a.hash) == 64


def test_the_hash_changes_when_a_rule_changes(tmp_path: Path) -> None:
    a = PolicySet.load(write(tmp_path, HASH_A))
    changed = PolicySet.load(write(tmp_path, HASH_A.replace("lte: 50", "lte: 51")))
    reordered = HASH_A.replace(
        "  rules:\n", "  rules:\n    - {id: first, when: {tool: x}, then: allow}\n"
    )
    assert changed.hash != a.hash
    assert PolicySet.load(write(tmp_path, reordered)).hash != a.hash


def test_rules_built_from_python_models_hash_like_the_yaml(tmp_path: Path) -> None:
    from_yaml = PolicySet.load(write(tmp_path, HASH_A))
    built = PolicySet(
        PolicyDocument(
            name="desk",
            allowlists={"mail": ("a.com", "b.com")},
            rules=(
                Rule(
                    id="refund-small",
                    when=When(
                        tool="refund",
                        roles_any=["a", "b"],
                        args={"amount": ArgCondition(gt=0, lte=50)},
                    ),
                    then="allow",
                ),
                Rule(
                    id="big",
                    when=When(tool=["refund"]),
                    then=RequireApproval(
                        require_approval=ApprovalSpec(tier="manager", role="lead", expires_in="24h")
                    ),
                ),
            ),
        )
    )
    assert built.hash == from_yaml.hash
    inp = call(arguments={"amount": 20}, roles={"a"})
    assert built.evaluate(inp) == from_yaml.evaluate(inp)


# -- could_allow: policy-first tool routing ----------------------------------------------------


def test_could_allow_whatever_the_arguments_when_an_allow_rule_may_match(
    support: PolicySet,
) -> None:
    assert support.could_allow(call("refund"))
    assert support.could_allow(call("send_email"))
    assert support.could_allow(call("kb_search", roles=frozenset()))
    assert support.could_allow(call("delete_customer"))  # via an approval


def test_could_allow_is_false_when_the_context_rules_out_every_allow(support: PolicySet) -> None:
    assert not support.could_allow(call("refund", kill_switch=True))
    assert not support.could_allow(call("refund", roles={"sales"}))
    assert not support.could_allow(call("update_ticket", principal_tenant="globex"))
    assert not support.could_allow(call("update_customer"))  # needs customer_data too
    assert not support.could_allow(call("drop_database", effect="write"))


def test_could_allow_stops_at_an_unconditional_deny_and_passes_a_conditional_one() -> None:
    ps = policy(
        {"id": "no-staging", "when": {"environment": "staging"}, "then": {"deny": "frozen"}},
        {"id": "no-big", "when": {"args": {"amount": {"gt": 9}}}, "then": {"deny": "big"}},
        {"id": "sandbox", "when": {}, "then": {"rewrite": {"set": {"test_mode": True}}}},
        {"id": "ok", "when": {"provenance": {"untrusted_in_args": False}}, "then": "allow"},
    )
    assert ps.could_allow(call())
    assert not ps.could_allow(call(environment="staging"))


# -- load-time errors, with file and line ------------------------------------------------------

HEAD = (
    "policy:\n  name: t\n  allowlists: {mail: [example.com]}\n  rules:\n"  # rules start on line 5
)


@pytest.mark.parametrize(
    ("rules", "line", "message"),
    [
        (
            "    - id: refund-large\n      when: {tool: refund, args: {amount: {greater: 300}}}\n"
            "      then: {deny: big}\n",
            6,
            "rule 'refund-large': unknown operator 'greater' for argument 'amount'",
        ),
        (
            "    - id: r\n      when:\n        tool: refund\n        tol: x\n      then: allow\n",
            8,
            "rule 'r': unknown field 'when.tol'",
        ),
        (
            "    - id: r\n      when: {}\n      then: allow\n      priority: 2\n",
            8,
            "unknown field 'priority'",
        ),
        ("    - id: r\n      then: alow\n", 6, "rule 'r': then: unknown outcome 'alow'"),
        ("    - id: r\n      then: {permit: true}\n", 6, "unknown outcome"),
        ("    - id: r\n      when: {effect: delete}\n      then: allow\n", 6, "when.effect"),
        (
            "    - id: r\n      when: {kill_switch: yes please}\n      then: allow\n",
            6,
            "kill_switch",
        ),
        (
            "    - id: r\n      then:\n"
            "        require_approval: {tier: m, role: l, expires_in: 1 week}\n",
            7,
            "bad duration '1 week'",
        ),
        (
            "    - id: r\n      when: {args: {code: {regex: '[a-'}}}\n      then: allow\n",
            6,
            "bad regex '[a-'",
        ),
        (
            "    - id: r\n      when: {args: {amount: {}}}\n      then: allow\n",
            6,
            "no operator given",
        ),
        ("    - id: r\n      when: {args: {amount: {lt: true}}}\n      then: allow\n", 6, "finite"),
        (
            "    - id: r\n      when: {args: {'a..b': {eq: 1}}}\n      then: allow\n",
            6,
            "bad argument path",
        ),
        ("    - id: r\n      when: {tool: []}\n      then: allow\n", 6, "empty list"),
        ("    - id: r\n      then: {rewrite: {cap: {amount: lots}}}\n", 6, "cap for 'amount'"),
        ("    - id: r\n      then: {rewrite: {}}\n", 6, "needs 'set' or 'cap'"),
        (
            "    - id: r\n      when: {destinations: {within: mail}}\n      then: allow\n",
            6,
            "in destinations",
        ),
        ("    - when: {}\n      then: allow\n", 5, "rules[0]: missing field 'id'"),
    ],
)
def test_a_bad_rule_is_rejected_with_file_line_and_reason(
    tmp_path: Path, rules: str, line: int, message: str
) -> None:
    path = write(tmp_path, HEAD + rules)
    with pytest.raises(ConfigError) as info:
        PolicySet.load(path)
    assert f"{path}:{line}: " in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("rules", "line", "message"),
    [
        (
            "    - {id: a, when: {tool: refund}, then: allow}\n"
            "    - {id: a, when: {tool: kb_search}, then: allow}\n",
            6,
            "rule 'a': duplicate rule id",
        ),
        (
            "    - {id: all, when: {}, then: {deny: closed}}\n"
            "    - {id: r, when: {tool: refund}, then: allow}\n",
            6,
            "rule 'r': unreachable: rule 'all' matches every call",
        ),
        (
            "    - {id: a, when: {tool: refund, roles_any: [x]}, then: allow}\n"
            "    - {id: b, when: {roles_any: [x], tool: [refund]}, then: allow}\n",
            6,
            "rule 'b': unreachable: rule 'a' has the same conditions",
        ),
        (
            "    - {id: reads, when: {effect: read}, then: allow}\n"
            "    - {id: kb, when: {effect: read, tool: kb_search}, then: {deny: nope}}\n",
            6,
            "rule 'kb': unreachable: rule 'reads' matches every call this rule matches",
        ),
        (
            "    - {id: a, when: {tool: refund}, then: allow}\n"
            "    - {id: b, when: {tool: refund}, then: {deny: nope}}\n",
            6,
            "rule 'b': contradicts rule 'a': same conditions, different outcome",
        ),
        (
            "    - {id: a, when: {tool: send_email, destinations: {in: customers}}, then: allow}\n",
            5,
            "rule 'a': unknown allowlist 'customers'",
        ),
        (
            "    - {id: a, when: {tool: refund}, then: allow}\n"
            "    - id: b\n      when: {tool: [kb_search, refnud]}\n      then: allow\n",
            7,
            "rule 'b': unknown tool 'refnud'",
        ),
    ],
)
def test_rules_that_conflict_are_rejected_with_file_line_and_reason(
    tmp_path: Path, rules: str, line: int, message: str
) -> None:
    path = write(tmp_path, HEAD + rules)
    with pytest.raises(ConfigError) as info:
        PolicySet.load(path, known_tools={"refund", "kb_search", "send_email"})
    assert f"{path}:{line}: {message}" in str(info.value)


def test_a_rewrite_after_the_same_rewrite_is_not_unreachable() -> None:
    ps = policy(
        {"id": "a", "when": {"tool": "refund"}, "then": {"rewrite": {"cap": {"amount": 10}}}},
        {"id": "b", "when": {"tool": "refund"}, "then": {"rewrite": {"set": {"test": True}}}},
        {"id": "c", "when": {"tool": "refund"}, "then": "allow"},
    )
    assert ps.evaluate(call(arguments={"amount": 20})).rule_ids == ("a", "b", "c")


def test_unknown_tools_are_accepted_when_no_tools_are_known(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "    - {id: a, when: {tool: refnud}, then: allow}\n")
    assert PolicySet.load(path).rules[0].when.tool == ("refnud",)


def test_a_duplicate_yaml_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEAD + "    - id: a\n      when: {tool: refund, tool: kb_search}\n      then: allow\n",
    )
    with pytest.raises(ConfigError, match=r"policy\.yaml:6: duplicate key 'tool'"):
        PolicySet.load(path)


def test_invalid_yaml_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "    - {id: a, when: {tool: refund, then: allow}\n  x: [\n")
    with pytest.raises(ConfigError, match=r"policy\.yaml:\d+: not valid YAML"):
        PolicySet.load(path)
    with pytest.raises(ConfigError, match="no such policy file"):
        PolicySet.load(tmp_path / "absent.yaml")


def test_python_data_errors_name_the_source_and_the_rule() -> None:
    with pytest.raises(ConfigError) as info:
        PolicySet.from_dict(
            {
                "policy": {
                    "name": "t",
                    "rules": [{"id": "x", "when": {"args": {"a": {"like": 1}}}, "then": "allow"}],
                }
            },
            source="inline",
        )
    assert str(info.value).startswith("inline: rule 'x': unknown operator 'like'")
    with pytest.raises(ConfigError, match="<python>: rule 'b': contradicts rule 'a'"):
        PolicySet(
            PolicyDocument(
                name="t",
                rules=(Rule(id="a", then="allow"), Rule(id="b", then=Deny(deny="no"))),
            )
        )


# -- values ------------------------------------------------------------------------------------


def test_decisions_round_trip_through_json(support: PolicySet) -> None:
    inputs = [
        call(arguments={"order_id": "A1", "amount": 10}),
        call(arguments={"order_id": "A1", "amount": 120}),
        call(arguments={"order_id": "A1", "amount": 10}, environment="staging"),
        call(arguments={"order_id": "A1", "amount": "x"}),
        call("drop_database"),
    ]
    for inp in inputs:
        decision = support.evaluate(inp)
        text = decision.to_json()
        assert json.loads(text)["schema_version"] == 1
        assert Decision.from_json(text) == decision
        assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


def test_decisions_and_policy_sets_are_immutable(support: PolicySet) -> None:
    decision = support.evaluate(call(arguments={"amount": 10}))
    with pytest.raises(AttributeError):
        decision.outcome = "deny"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        support.rules = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        call().tool = "x"  # type: ignore[misc]


def test_the_example_policy_decides_the_issues_cases(support: PolicySet) -> None:
    mail, editor = "ann@shop.example.com", {"support", "customer_data"}
    billing, phone = {"changes": {"billing_address": "x"}}, {"changes": {"phone": "1"}}
    approve = "require_approval"
    cases = [
        (call(arguments={"order_id": "A1", "amount": 50}), "allow", "refund-small"),
        (call(arguments={"order_id": "A1", "amount": 50.01}), approve, "refund-medium"),
        (call(arguments={"order_id": "A1", "amount": 301}), "deny", "refund-large"),
        (call(arguments={"amount": 20}, untrusted_in_args=True), approve, "refund-untrusted"),
        (call(arguments={"amount": 20}, roles={"sales"}), "deny", None),
        (
            call(arguments={"amount": 20}, trust_tier="sandbox"),
            "deny",
            "sandboxed-agents-read-only",
        ),
        (
            call("update_customer", arguments=billing, roles=editor),
            "deny",
            "no-billing-address-change",
        ),
        (call("update_customer", arguments=phone, roles=editor), "allow", "customer-writes"),
        (
            call(
                "send_email", destinations={"to": mail}, destination_sources={"to": {"principal"}}
            ),
            "allow",
            "mail-known-recipient",
        ),
        (
            call(
                "send_email", destinations={"to": mail}, destination_sources={"to": {"retrieved"}}
            ),
            approve,
            "mail-other-recipient",
        ),
        (call("send_email", destinations={"to": "x@evil.test"}), "deny", "mail-only-customers"),
        (call("update_ticket", principal_tenant="globex"), "deny", "foreign-tenant-writes"),
        (call("delete_customer"), approve, "critical-needs-admin"),
        (call("lookup_order", roles=frozenset()), "allow", "reads"),
    ]
    for inp, outcome, rule in cases:
        decision = support.evaluate(inp)
        last = decision.rule_ids[-1] if decision.rule_ids else None
        assert (decision.outcome, last) == (outcome, rule), inp


# -- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
arg_keys = st.sampled_from(["order_id", "amount", "to", "changes", "test_mode", "x"])


@settings(max_examples=150, deadline=None)
@given(
    tool=st.sampled_from(sorted(EXAMPLE_TOOLS)),
    arguments=st.dictionaries(arg_keys | st.text(max_size=4), json_values, max_size=4),
    destination=json_values,
    environment=st.sampled_from(["prod", "staging"]),
    untrusted=st.booleans(),
)
def test_evaluation_is_deterministic_and_never_raises(
    tool: str, arguments: dict[str, Any], destination: Any, environment: str, untrusted: bool
) -> None:
    ps = _example()
    inp = call(
        tool,
        arguments=arguments,
        destinations={"to": destination},
        environment=environment,
        untrusted_in_args=untrusted,
    )
    first, second = ps.evaluate(inp), ps.evaluate(inp)
    assert first == second
    assert first.outcome in ("allow", "deny", "require_approval")
    assert first.policy_hash == ps.hash
    assert (first.error is not None) <= (first.outcome == "deny")
    assert Decision.from_json(first.to_json()) == first
    assert isinstance(ps.could_allow(inp), bool)


def test_the_policy_core_imports_nothing_from_the_engine_store_or_runtime() -> None:
    package = Path(__file__).resolve().parents[2] / "src" / "charter" / "policy"
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith(("charter._engine", "charter.store", "charter.runtime"))
