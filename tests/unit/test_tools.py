"""Tool contracts: schemas from type hints, argument validation, imports, retry backoff."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError
from tests.helpers import tools as helper_tools

from charter import RetryPolicy, Tool, ToolContext, ToolRegistry, tool
from charter.errors import ConfigError, NotFoundError, ToolImportError
from charter.tools import import_tool, validation_message


@tool(effect="read")
def search(ctx: ToolContext, query: str, limit: int = 5, exact: bool = False) -> list[str]:
    """Search the knowledge base."""
    return [query] * limit


@tool(effect="write", risk="high", owner="billing", timeout_s=7.5, retry=4)
def charge(customer_id: str, amount: float) -> str:
    return f"{customer_id}:{amount}"


# -- schema -----------------------------------------------------------------------------------


def test_input_schema_comes_from_type_hints() -> None:
    schema = search.input_schema
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"query", "limit", "exact"}
    assert schema["properties"]["query"]["type"] == "string"
    assert schema["properties"]["limit"]["type"] == "integer"
    assert schema["properties"]["limit"]["default"] == 5
    assert schema["properties"]["exact"]["type"] == "boolean"
    assert schema["additionalProperties"] is False
    assert "title" not in schema


def test_only_parameters_without_defaults_are_required() -> None:
    assert search.input_schema["required"] == ["query"]
    assert sorted(charge.input_schema["required"]) == ["amount", "customer_id"]


def test_the_tool_context_parameter_is_not_in_the_schema_but_is_bound() -> None:
    assert "ctx" not in search.input_schema["properties"]
    ctx = ToolContext(run_id="r", tenant="t", principal="p", step=1, call_id="c")
    kwargs = search.bind(ctx, {"query": "q"})
    assert kwargs == {"ctx": ctx, "query": "q", "limit": 5, "exact": False}


def test_name_and_description_default_to_function_name_and_docstring() -> None:
    assert search.name == "search"
    assert search.description == "Search the knowledge base."
    assert charge.description == "charge"


# -- validation -------------------------------------------------------------------------------


def test_validate_fills_defaults_for_valid_arguments() -> None:
    assert search.validate({"query": "x"}) == {"query": "x", "limit": 5, "exact": False}


@pytest.mark.parametrize(
    ("arguments", "where"),
    [
        ({}, "query"),
        ({"query": "x", "limit": "many"}, "limit"),
        ({"query": ["not", "a", "string"]}, "query"),
        ({"query": "x", "colour": "red"}, "colour"),
    ],
    ids=["missing", "ill-typed-int", "ill-typed-str", "extra"],
)
def test_validate_rejects_bad_arguments(arguments: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        search.validate(arguments)
    assert validation_message(info.value).startswith(f"{where}:")


# -- effects and idempotency ------------------------------------------------------------------


def test_idempotent_defaults_to_true_for_reads_and_false_for_writes() -> None:
    @tool(effect="read")
    def r(x: int) -> int:
        return x

    @tool(effect="write")
    def w(x: int) -> int:
        return x

    @tool(effect="write", idempotent=True)
    def w_idem(x: int) -> int:
        return x

    assert r.idempotent is True
    assert w.idempotent is False
    assert w_idem.idempotent is True


def test_an_unknown_effect_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="effect"):
        tool(effect="delete")(lambda x: x)  # type: ignore[call-overload]


def test_a_non_positive_timeout_is_a_config_error() -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="timeout_s"):
        tool(timeout_s=0)(f)


def test_a_parameter_without_a_type_hint_is_a_config_error() -> None:
    def untyped(order_id):  # type: ignore[no-untyped-def]
        return order_id

    with pytest.raises(ConfigError) as info:
        tool(untyped)
    assert type(info.value) is ConfigError
    assert "'order_id'" in info.value.message
    assert "type hint" in info.value.message


def test_star_args_are_a_config_error() -> None:
    def variadic(*names: str) -> str:
        return ",".join(names)

    with pytest.raises(ConfigError, match=r"\*args"):
        tool(variadic)


# -- import_tool ------------------------------------------------------------------------------


def test_import_tool_returns_the_tool_a_reference_names() -> None:
    assert import_tool("tests.helpers.tools:lookup") is helper_tools.lookup
    assert import_tool(helper_tools.refund.ref) is helper_tools.refund
    assert helper_tools.refund.ref == "tests.helpers.tools:refund"


@pytest.mark.parametrize("ref", ["tests.helpers.tools", ":lookup", "tests.helpers.tools:", ""])
def test_import_tool_rejects_a_badly_formed_reference(ref: str) -> None:
    with pytest.raises(ToolImportError) as info:
        import_tool(ref)
    assert info.value.message == f"bad tool reference {ref!r}"
    assert info.value.hint == "write it as 'package.module:function'"


def test_import_tool_names_a_missing_module() -> None:
    with pytest.raises(ToolImportError) as info:
        import_tool("tests.helpers.no_such_module:lookup")
    assert "cannot import module 'tests.helpers.no_such_module'" in info.value.message


def test_import_tool_names_a_missing_attribute() -> None:
    with pytest.raises(ToolImportError) as info:
        import_tool("tests.helpers.tools:no_such_tool")
    assert info.value.message == "module 'tests.helpers.tools' has no attribute 'no_such_tool'"


def test_import_tool_refuses_something_that_is_not_a_tool() -> None:
    with pytest.raises(ToolImportError) as info:
        import_tool("tests.helpers.tools:not_a_tool")
    assert info.value.message == "'tests.helpers.tools:not_a_tool' is not a tool"
    assert "@charter.tool" in (info.value.hint or "")


def test_tool_import_error_is_a_config_error() -> None:
    assert issubclass(ToolImportError, ConfigError)
    assert ToolImportError.code == "tool_import"


# -- retry policy -----------------------------------------------------------------------------


def test_backoff_without_jitter_grows_geometrically_until_the_cap() -> None:
    policy = RetryPolicy(initial_backoff_s=0.1, multiplier=2.0, max_backoff_s=1.0, jitter=0.0)
    delays = [policy.backoff(n, 0.7) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@given(
    attempt=st.integers(1, 60),
    rand=st.floats(0.0, 1.0, exclude_max=True),
    initial=st.floats(0.001, 2.0),
    multiplier=st.floats(1.0, 4.0),
    cap=st.floats(0.01, 30.0),
    jitter=st.floats(0.0, 1.0),
)
def test_backoff_is_the_capped_base_jittered_within_bounds(
    attempt: int, rand: float, initial: float, multiplier: float, cap: float, jitter: float
) -> None:
    policy = RetryPolicy(
        initial_backoff_s=initial, multiplier=multiplier, max_backoff_s=cap, jitter=jitter
    )
    base = min(cap, initial * multiplier ** (attempt - 1))
    delay = policy.backoff(attempt, rand)
    assert base * (1 - jitter) - 1e-12 <= delay <= base * (1 + jitter) + 1e-12
    assert delay >= 0
    # At the same draw of randomness, a later attempt never waits less.
    assert policy.backoff(attempt + 1, rand) >= delay - 1e-12


def test_retry_given_as_a_number_sets_max_attempts() -> None:
    assert charge.retry.max_attempts == 4
    assert search.retry.max_attempts == 3  # the default


# -- registry ---------------------------------------------------------------------------------


def test_describe_has_the_registry_fields() -> None:
    entry = charge.describe()
    assert entry == {
        "name": "charge",
        "version": "1",
        "description": "charge",
        "effect": "write",
        "risk": "high",
        "owner": "billing",
        "idempotent": False,
        "reconcile": False,
        "timeout_s": 7.5,
        "max_attempts": 4,
        "destinations": [],
        "cost_usd": 0.0,
        "untrusted_output": False,
        "cacheable": False,
        "cache_ttl_s": 300.0,
        "execution": "thread",
        "max_concurrency": 8,
        "cache_scope": "caller",
        "ref": f"{__name__}:charge",
        "input_schema": charge.input_schema,
    }


def test_describe_reports_a_reconcile_hook() -> None:
    @tool(effect="write")
    def send_email(to: str) -> str:
        return to

    assert send_email.describe()["reconcile"] is False
    send_email.reconciler(lambda ctx, args: None)
    assert send_email.describe()["reconcile"] is True


def test_registry_rejects_two_different_tools_of_one_name() -> None:
    def other_search(query: str) -> str:
        return query

    other = tool(name="search", version="2")(other_search)
    assert isinstance(other, Tool)
    with pytest.raises(ConfigError, match="'search'"):
        ToolRegistry([search, other])
    assert len(ToolRegistry([search, search])) == 1  # the same tool twice is harmless


def test_registry_lists_tools_by_name_and_get_raises_not_found() -> None:
    registry = ToolRegistry([search, charge])
    assert [t.name for t in registry] == ["charge", "search"]
    assert len(registry) == 2
    assert registry.get("search") is search
    assert registry.find("nope") is None
    with pytest.raises(NotFoundError, match="'nope'"):
        registry.get("nope")
