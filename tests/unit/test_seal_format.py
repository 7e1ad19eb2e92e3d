"""The bytes an event's hash covers do not drift: pinned hashes of sealed events, and the
canonical encoder against the ``json`` call that defines the form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from charter._digests import _canonical
from charter.events import (
    Event,
    EventBody,
    ModelResponded,
    PolicyEvaluated,
    ProposedCall,
    ToolCallProposed,
    ToolCallStarted,
    ToolCallSucceeded,
    Usage,
    chain_hash,
    content_digest,
    parse_body,
)

# Hashes sealed by Charter (schema 2) before the canonical encoder was built once per process:
# an event sealed by one version must verify with the next.
PINNED_2: list[tuple[EventBody, str]] = [
    (
        ModelResponded(
            step=2, provider="openai", model="gpt-4o-mini", prompt_hash="9f" * 32,
            content='Voilà: 1e-05 \u2028 "quoted"\n',
            tool_calls=(
                ProposedCall(call_id="call_1", name="lookup",
                             arguments='{"b": 1, "a": [1.5, 1e16]}'),
                ProposedCall(call_id="call_2", name="refund", arguments="{}"),
            ),
            usage=Usage(input_tokens=1834, output_tokens=96), latency_ms=812.4,
            cost_usd=0.000338, parameters={"temperature": 0.0},
        ),
        "6366a6414ff28ecf52d36b22233fd373530101385474aaa5d46f41c426450f43",
    ),
    (
        ToolCallProposed(
            step=2, call_id="call_1", tool="lookup", effect="read", tool_version="3",
            arguments={"z": [1, 2.5e-07, None, True], "a": {"é": "ü", "b": 10**30}},
        ),
        "670f17a405d51979498b33de3f9bc56865b4cb327d6f9e49e34d1f92f301c526",
    ),
    (
        ToolCallSucceeded(
            call_id="call_1", tool="lookup", duration_ms=4.25,
            output={"rows": [{"qty": 2, "price": 12.5}], "note": "日本"},
        ),
        "7daed26adcde54bb97712b9581043eb5b4a0efb547097c4a8c8e00ee1f9d56ab",
    ),
    (
        ToolCallSucceeded(call_id="call_2", tool="message", output="x" * 200),
        "4e71f900cbc1b8d2fe449d8b8913067f54225dab7ac8b1da4b8674e4cd0617ae",
    ),
    (
        PolicyEvaluated(
            call_id="call_1", tool="lookup", outcome="allow", reason="ok by 'reads'",
            rule_ids=("reads",), policy_hash="3c" * 32,
        ),
        "d7259faafe57e3052a8a0d842ec206430824b93c47ffb582fa176f2e6dc767de",
    ),
    (
        ToolCallStarted(
            call_id="call_2", tool="refund", idempotency_key="run_1:3:call_2", fencing_token=7
        ),
        "713486477df924677c3b73ecc487df557145bdef2bae398cb6aa21732dd4afbc",
    ),
]  # fmt: skip


# Schema 3 (sealed today): the same bodies, but the response carries no prompt_hash (the run's
# run_started records the instructions' hash once). The version is part of every hash.
PINNED_3: list[tuple[EventBody, str]] = [
    (PINNED_2[0][0].model_copy(update={"prompt_hash": None}),
     "ad586de7e16152d9176126758ab57eeb4afa287c78b5ae3a2ac7fbf6f943af6b"),
    (PINNED_2[1][0], "a9707aa5cd3068261e08483fba606150ec74486de674657a2b544176b7eced05"),
    (PINNED_2[2][0], "2ade69eef80e3b28a26bb21486e8ec194a6ff1469bb05e653754b7c0297a6a2a"),
    (PINNED_2[3][0], "30afaa9c6aa0d197e5b6b0b21fdfe7dd46ed36cc91e4f81ff336f8d43d4bdc99"),
    (PINNED_2[4][0], "cb92d962729ea34514d816e8caf293f49d1a15cda809dc1f534f19c48355e40c"),
    (PINNED_2[5][0], "04ac6d13e29dd03ff5f955d3a4fe88d0995baded3c8aae98880cbdd562b72bf7"),
]  # fmt: skip
_ids = {"ids": lambda v: getattr(v, "type", "")}


@pytest.mark.parametrize(("body", "expected"), PINNED_3, **_ids)
def test_a_sealed_event_hashes_to_its_pinned_value(body: EventBody, expected: str) -> None:
    event = Event.seal(
        run_id="run_pinned", seq=3, at=1765000000.125, body=body, prev_hash="ab" * 32
    )
    assert event.schema_version == 3
    assert event.hash == expected


@pytest.mark.parametrize(("body", "expected"), PINNED_2, **_ids)
def test_an_event_sealed_by_schema_2_still_verifies(body: EventBody, expected: str) -> None:
    payload = body.model_dump_json(exclude_defaults=True)
    row = (3, body.type, 2, 1765000000.125, payload, expected)
    prev = "ab" * 32
    digest = content_digest(body.type, payload, 2)
    material = dict(run_id="run_pinned", seq=3, type=body.type, at=1765000000.125, prev=prev)
    assert chain_hash(schema_version=2, digest=digest, **material) == expected
    # and the schema-2 payload still parses into today's body, field for field
    assert parse_body(row[4], body.type) == body


def test_a_response_no_longer_repeats_the_instructions_hash() -> None:
    event = Event.seal(run_id="r", seq=3, at=1.0, body=PINNED_3[0][0], prev_hash="ab" * 32)
    assert "prompt_hash" not in event.payload


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json_values)
def test_the_canonical_form_is_sorted_compact_utf8_json(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert _canonical(value) == expected.encode("utf-8", "surrogatepass")
