"""Rate limits and spending in the pure core: the grammar, matching, prices, and the fold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.helpers.strategies import seal_chain

from charter import ConfigError, ModelSpec, tool
from charter._engine.state import fold_all
from charter.events import (
    ErrorInfo,
    ModelResponded,
    PolicyEvaluated,
    RunStarted,
    ToolCallFailed,
    ToolCallSucceeded,
    Usage,
    parse_body,
)
from charter.policy import PolicyInput, PolicySet

HEAD = "policy:\n  name: p\n  rules:\n    - {id: all, when: {}, then: allow}\n"
RULES = [{"id": "all", "when": {}, "then": "allow"}]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def _policy(limits: list[dict[str, Any]], **extra: Any) -> PolicySet:
    return PolicySet.from_dict({"policy": {"name": "p", "rules": RULES, "limits": limits, **extra}})


def _call(tool_name: str = "refund", **overrides: Any) -> PolicyInput:
    fields: dict[str, Any] = {
        "tool": tool_name,
        "effect": "write",
        "risk": "high",
        "agent_name": "support",
        "tenant": "acme",
        "principal": "alice",
        "environment": "prod",
        "arguments": {"amount": 20},
    }
    return PolicyInput(**(fields | overrides))


# -- the grammar -------------------------------------------------------------------------------


def test_a_policy_file_with_limits_and_spending_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEAD + "  limits:\n"
        "    - id: refunds-per-hour\n"
        "      when: {tool: refund}\n"
        "      per: [tool, tenant]\n"
        "      max: 20\n"
        "      window: 1h\n"
        "    - {id: writes-per-run, when: {effect: write}, max: 5, window: run}\n"
        "    - {id: burst, per: principal, max: 3, window: 30s}\n"
        "  spending:\n    per_agent_per_day_usd: 50\n    per_tenant_per_day_usd: 200.5\n",
    )
    ps = PolicySet.load(path, known_tools={"refund"})
    limits = ps.document.limits or ()
    assert [(lim.id, lim.per, lim.max, lim.window_s) for lim in limits] == [
        ("refunds-per-hour", ("tenant", "tool"), 20, 3600),
        ("writes-per-run", (), 5, None),
        ("burst", ("principal",), 3, 30),
    ]
    spending = ps.document.spending
    assert spending is not None
    assert (spending.per_agent_per_day_usd, spending.per_tenant_per_day_usd) == (50, 200.5)


@pytest.mark.parametrize(
    ("tail", "line", "message"),
    [
        (
            "  limits:\n    - {id: l, max: 5, window: fortnight}\n",
            6,
            "limit 'l': window: bad window 'fortnight'",
        ),
        ("  limits:\n    - {id: l, max: 0, window: 1h}\n", 6, "limit 'l': max: "),
        ("  limits:\n    - {id: l, max: 2.5, window: 1h}\n", 6, "limit 'l': max: "),
        ("  limits:\n    - {id: l, max: 5}\n", 6, "limit 'l': missing field 'window'"),
        (
            "  limits:\n    - id: l\n      per: [tenant, region]\n      max: 5\n      window: 1m\n",
            7,
            "limit 'l': per.1: ",
        ),
        (
            "  limits:\n    - id: l\n      when: {tool: refund, amount: 3}\n"
            "      max: 5\n      window: 1m\n",
            7,
            "limit 'l': unknown field 'when.amount'",
        ),
        ("  limits:\n    - {id: l, max: 5, window: 1h, burst: 2}\n", 6, "unknown field 'burst'"),
        (
            "  spending:\n    per_tenant_per_day_usd: -3\n",
            6,
            "a spending cap must be a positive number of US dollars",
        ),
        ("  spending:\n    per_tenant_per_month_usd: 3\n", 6, "unknown field"),
        ("  spending: {}\n", 5, "give per_agent_per_day_usd or per_tenant_per_day_usd"),
    ],
)
def test_a_bad_limit_is_rejected_with_file_line_and_reason(
    tmp_path: Path, tail: str, line: int, message: str
) -> None:
    path = _write(tmp_path, HEAD + tail)
    with pytest.raises(ConfigError) as info:
        PolicySet.load(path)
    assert f"{path}:{line}: " in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("tail", "line", "message"),
    [
        (
            "  limits:\n    - {id: all, max: 5, window: 1h}\n",
            6,
            "limit 'all': a rule has the same id",
        ),
        (
            "  limits:\n    - {id: l, max: 5, window: 1h}\n    - {id: l, max: 9, window: 1m}\n",
            7,
            "limit 'l': duplicate limit id (first used by limits[0])",
        ),
        (
            "  limits:\n    - id: l\n      when: {tool: refnud}\n      max: 5\n      window: 1h\n",
            7,
            "limit 'l': unknown tool 'refnud'",
        ),
        (
            "  limits:\n    - id: l\n      when: {destinations: {in: nowhere}}\n"
            "      max: 5\n      window: 1h\n",
            7,
            "limit 'l': unknown allowlist 'nowhere'",
        ),
    ],
)
def test_limits_are_checked_against_rules_tools_and_allowlists(
    tmp_path: Path, tail: str, line: int, message: str
) -> None:
    path = _write(tmp_path, HEAD + tail)
    with pytest.raises(ConfigError) as info:
        PolicySet.load(path, known_tools={"refund"})
    assert f"{path}:{line}: {message}" in str(info.value)


def test_limits_and_spending_are_part_of_the_hash_and_absent_ones_change_nothing() -> None:
    plain = PolicySet.from_dict({"policy": {"name": "p", "rules": RULES}})
    assert "limits" not in plain.document.canonical_json()
    assert "spending" not in plain.document.canonical_json()
    assert _policy([]).hash == plain.hash  # an empty list is no limits
    one = _policy([{"id": "l", "max": 5, "window": "1h"}])
    assert one.hash != plain.hash
    assert _policy([{"id": "l", "max": 6, "window": "1h"}]).hash != one.hash
    capped = PolicySet.from_dict(
        {"policy": {"name": "p", "rules": RULES, "spending": {"per_tenant_per_day_usd": 10}}}
    )
    assert capped.hash != plain.hash


# -- matching ------------------------------------------------------------------------------------


def test_limits_for_returns_the_matching_limits_with_their_scope_and_key() -> None:
    ps = _policy(
        [
            {"id": "refunds", "when": {"tool": "refund"}, "per": ["tenant", "tool"], "max": 20,
             "window": "1h"},
            {"id": "big", "when": {"args": {"amount": {"gt": 100}}}, "max": 2, "window": "run"},
            {"id": "mail", "when": {"tool": "send_email"}, "max": 9, "window": "1m"},
        ]
    )  # fmt: skip
    [refunds] = ps.limits_for(_call())
    assert refunds.label == "refunds[tenant=acme,tool=refund]"
    assert refunds.describe() == "rate limit refunds: 20 per 1h for tenant acme, tool refund"
    assert (refunds.window_s, refunds.error) == (3600, None)
    other = ps.limits_for(_call(tenant="globex"))[0]
    assert other.key != refunds.key and other.label == "refunds[tenant=globex,tool=refund]"
    # the arguments to execute (a rewrite's) decide, not the proposed ones
    matched = ps.limits_for(_call(), {"amount": 500})
    assert [m.limit_id for m in matched] == ["refunds", "big"]
    assert matched[1].describe() == "rate limit big: 2 per run"
    assert ps.limits_for(_call("kb_search", effect="read")) == ()


def test_a_limit_whose_condition_errs_is_returned_with_the_error() -> None:
    ps = _policy([{"id": "l", "when": {"args": {"amount": {"gt": 100}}}, "max": 2, "window": "1h"}])
    [match] = ps.limits_for(_call(arguments={"amount": "lots"}))
    assert match.error is not None and "not a number" in match.error


def test_counter_keys_cannot_be_confused_by_scope_values() -> None:
    ps = _policy([{"id": "l", "per": ["tenant", "principal"], "max": 2, "window": "1h"}])
    a = ps.limits_for(_call(tenant="x,principal=y", principal="z"))[0]
    b = ps.limits_for(_call(tenant="x", principal="y,principal=z"))[0]
    assert a.key != b.key


# -- prices and the fold -----------------------------------------------------------------------


def test_a_model_response_is_priced_per_million_tokens() -> None:
    spec = ModelSpec(provider="scripted", input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)
    assert spec.cost_usd(Usage(input_tokens=1000, output_tokens=200)) == pytest.approx(0.006)
    assert ModelSpec(provider="scripted").cost_usd(Usage(input_tokens=10**6)) == 0.0
    with pytest.raises(ValueError, match="input_usd_per_mtok"):
        ModelSpec(provider="scripted", input_usd_per_mtok=-1)


def test_a_tool_declares_its_cost_per_call() -> None:
    @tool(effect="write", cost_usd=0.05)
    def charge(order_id: str) -> str:
        return order_id

    assert charge.cost_usd == 0.05 and charge.describe()["cost_usd"] == 0.05
    with pytest.raises(ConfigError, match="cost_usd"):
        tool(effect="write", cost_usd=-1)(lambda order_id: order_id)


def test_the_fold_sums_the_cost_of_every_priced_event() -> None:
    responded = ModelResponded(
        step=1, provider="scripted", model="m", prompt_hash="h", cost_usd=0.25
    )
    events = seal_chain(
        "run_x",
        [
            RunStarted(
                agent_name="a", agent_version="1", agent_hash="h", tenant="t", principal="p",
                input="hi",
            ),
            responded,
            ToolCallSucceeded(call_id="c1", tool="charge", cost_usd=0.5),
            ToolCallFailed(
                call_id="c2", tool="charge", error=ErrorInfo(code="x", message="x"), attempts=2,
                cost_usd=1.0,
            ),
            responded.model_copy(update={"step": 2}),
        ],
    )  # fmt: skip
    assert fold_all(events).cost_usd == pytest.approx(2.0)


def test_the_fold_counts_calls_against_their_limits() -> None:
    def decided(call_id: str, limits: tuple[str, ...]) -> PolicyEvaluated:
        return PolicyEvaluated(
            call_id=call_id, tool="refund", outcome="allow", reason="ok", policy_hash="h",
            limits=limits,
        )  # fmt: skip

    events = seal_chain(
        "run_x",
        [
            decided("c1", ("l[tool=refund]", "m")),
            decided("c2", ("l[tool=refund]",)),
            decided("c3", ()),
        ],
    )
    assert fold_all(events).limits_used == {"l[tool=refund]": 2, "m": 1}


def test_events_written_before_costs_existed_still_parse_as_free() -> None:
    body = parse_body('{"call_id":"c1","tool":"t","output":1}', "tool_call_succeeded")
    assert isinstance(body, ToolCallSucceeded) and body.cost_usd == 0.0
    free = ToolCallSucceeded(call_id="c1", tool="t")
    assert "cost_usd" not in free.model_dump_json(exclude_defaults=True)
