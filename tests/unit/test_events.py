"""Event bodies round-trip through JSON; the hash chain detects any single change."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from hypothesis import assume, given, settings, strategies as st
from tests.helpers.strategies import body_strategy, event_chains

from charter.events import (
    BODY_TYPES,
    GENESIS_HASH,
    REMOVABLE,
    SCHEMA_VERSION,
    Event,
    EventBody,
    parse_body,
    summarize,
    verify_chain,
)

RUN_ID = "run_test"

Row = tuple[int, str, int, float, str, str]


def _rows(events: list[Event]) -> list[Row]:
    return [(e.seq, e.type, e.schema_version, e.at, e.payload, e.hash) for e in events]


def _type_name(body_type: type[Any]) -> str:
    return str(body_type.model_fields["type"].default)


def test_body_types_are_exactly_the_members_of_the_event_union() -> None:
    union_members = set(get_args(get_args(EventBody)[0]))
    assert union_members == set(BODY_TYPES)
    names = [_type_name(t) for t in BODY_TYPES]
    assert len(names) == len(set(names)), "two body types share a type tag"


@pytest.mark.parametrize("body_type", BODY_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_every_body_type_round_trips_through_json(
    body_type: type[Any], data: st.DataObject
) -> None:
    body = data.draw(body_strategy(body_type))
    event = Event.seal(run_id=RUN_ID, seq=1, at=12.5, body=body, prev_hash=GENESIS_HASH)

    parsed = parse_body(event.payload, event.type)

    assert type(parsed) is body_type
    assert parsed == body
    assert event.type == _type_name(body_type)
    # The envelope is plain JSON too, and its body parses back to the same value.
    envelope = json.loads(json.dumps(event.to_dict()))
    assert parse_body(json.dumps(envelope["body"]), envelope["type"]) == body
    assert isinstance(summarize(body), str)


@settings(max_examples=60)
@given(chain=event_chains(min_size=1))
def test_a_sealed_chain_verifies(chain: list[Event]) -> None:
    assert chain[0].prev_hash == GENESIS_HASH
    assert all(e.schema_version == SCHEMA_VERSION for e in chain)
    assert verify_chain(_rows(chain), RUN_ID) is None


@settings(max_examples=20)
@given(chain=event_chains(min_size=1))
def test_a_chain_checked_under_another_run_id_breaks_at_the_first_event(
    chain: list[Event],
) -> None:
    broken = verify_chain(_rows(chain), "run_other")
    assert broken is not None
    assert broken.seq == 1


_CANONICAL_TYPES = {t for kind in REMOVABLE.values() for t in kind}
"""Types whose digest is taken over canonical JSON (they have removable fields); the others'
payloads are hashed byte for byte."""


def _tamper(row: Row, field: str, data: st.DataObject) -> Row:
    seq, type_, version, at, payload, hash_ = row
    if field == "payload":
        other = data.draw(body_strategy(type(parse_body(payload, type_))), label="other body")
        new_payload = other.model_dump_json()
        assume(new_payload != payload)
        return (seq, type_, version, at, new_payload, hash_)
    if field == "payload_whitespace":  # the same body, differently written bytes
        return (seq, type_, version, at, payload + " ", hash_)
    if field == "at":
        return (seq, type_, version, at + 1.0, payload, hash_)
    if field == "type":
        others = sorted({_type_name(t) for t in BODY_TYPES} - {type_})
        return (seq, data.draw(st.sampled_from(others)), version, at, payload, hash_)
    if field == "hash":
        return (seq, type_, version, at, payload, "e" * 64)
    raise AssertionError(field)


@pytest.mark.parametrize("field", ["payload", "payload_whitespace", "at", "type", "hash"])
@settings(max_examples=30)
@given(chain=event_chains(min_size=1), data=st.data())
def test_changing_one_field_of_one_row_breaks_the_chain_at_that_row(
    field: str, chain: list[Event], data: st.DataObject
) -> None:
    rows = _rows(chain)
    index = data.draw(st.integers(0, len(rows) - 1), label="tampered row")
    rows[index] = _tamper(rows[index], field, data)

    broken = verify_chain(rows, RUN_ID)

    if field == "payload_whitespace" and rows[index][1] in _CANONICAL_TYPES:
        assert broken is None  # the digest covers the JSON value, not how it is spaced
        return
    assert broken is not None
    assert broken.seq == index + 1
    assert broken.run_id == RUN_ID


@settings(max_examples=40)
@given(chain=event_chains(min_size=2), data=st.data())
def test_dropping_an_event_names_the_missing_sequence_number(
    chain: list[Event], data: st.DataObject
) -> None:
    rows = _rows(chain)
    # The last event cannot be missed by the chain alone (the run's head hash catches that).
    index = data.draw(st.integers(0, len(rows) - 2), label="dropped row")
    del rows[index]

    broken = verify_chain(rows, RUN_ID)

    assert broken is not None
    assert broken.seq == index + 1
    assert "missing" in broken.reason
