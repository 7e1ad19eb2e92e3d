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
)

# Hashes sealed by Charter before the canonical encoder was built once per process: an event
# sealed by one version must verify with the next.
PINNED: list[tuple[EventBody, str]] = [
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


@pytest.mark.parametrize(("body", "expected"), PINNED, ids=lambda v: getattr(v, "type", ""))
def test_a_sealed_event_hashes_to_its_pinned_value(body: EventBody, expected: str) -> None:
    event = Event.seal(
        run_id="run_pinned", seq=3, at=1765000000.125, body=body, prev_hash="ab" * 32
    )
    assert event.hash == expected


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json_values)
def test_the_canonical_form_is_sorted_compact_utf8_json(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert _canonical(value) == expected.encode("utf-8", "surrogatepass")
