"""Event hashes cover every field an event shows, whole or after retention (schema 2).

The tampering tool is the database itself: payloads are edited with plain SQL (``sqlite3``,
``psycopg``) and the real ``charter audit verify --all`` must then exit 1, naming the run and
the first bad event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings, strategies as st
from tests.helpers.cli import run_charter
from tests.helpers.models import Recording
from tests.helpers.strategies import body_strategy

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import (
    BODY_TYPES,
    GENESIS_HASH,
    REMOVABLE,
    REMOVED,
    Event,
    ToolCallProposed,
    chain_hash,
    content_digest,
    verify_chain,
)
from charter.policy import PolicySet
from charter.retention import strip
from charter.store import AuditEntry
from charter.store._audit import seal

Json = dict[str, Any]


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look an order up."""
    return {"order": order_id, "email": "ann@example.com"}


@tool(effect="read")
def ledger(order_id: str) -> str:
    """Read the ledger: it is down."""
    raise RuntimeError(f"the ledger is down for order {order_id}")


@tool(effect="write")
def note(order_id: str, text: str) -> str:
    """Write a note on an order."""
    return "noted"


_POLICY = {
    "policy": {
        "name": "p",
        "version": "1",
        "rules": [
            {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
            {"id": "tidy", "when": {"tool": "note"}, "then": {"rewrite": {"set": {"text": "ok"}}}},
            {"id": "notes", "when": {"tool": "note"}, "then": "allow"},
        ],
    }
}
_SCRIPT = [
    {
        "tool_calls": [
            {"name": "lookup", "arguments": {"order_id": "7"}},
            {"name": "ledger", "arguments": {"order_id": "7"}},
        ]
    },
    {"tool_calls": [{"name": "note", "arguments": {"order_id": "7", "text": "ann asked"}}]},
    {"content": "order 7 is ann's"},
]


def _finished_run(url: str) -> str:
    """A finished run with every kind of removable field: prompts, tool payloads, decisions."""
    agent = Agent(
        name="desk", instructions="x", model=ModelSpec(provider="scripted", script=_SCRIPT),
        tools=[lookup, ledger, note], policy=PolicySet.from_dict(_POLICY),
    )  # fmt: skip

    async def main() -> str:
        async with Runtime.open(url) as rt:
            rt.register(agent, model=Recording(_SCRIPT))
            run = await rt.run(agent, "whose is order 7?", tenant="acme")
            assert run.status == "succeeded"
            return run.run_id

    return asyncio.run(main())


def _sql(url: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the store's database, outside Charter (``?`` placeholders)."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn, conn:
            return conn.execute(query, args).fetchall()
    with psycopg.connect(url, autocommit=True) as pg:
        cur = pg.execute(query.replace("?", "%s"), args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _event(url: str, run_id: str, type_: str, nth: int = 0) -> tuple[int, str, Json]:
    rows = _sql(
        url, "SELECT seq, payload FROM events WHERE run_id = ? AND type = ? ORDER BY seq",
        (run_id, type_),
    )  # fmt: skip
    seq, payload = rows[nth]
    return int(seq), str(payload), json.loads(payload)


def _write(url: str, run_id: str, seq: int, data: Json) -> None:
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    _sql(
        url,
        "UPDATE event_log SET payload = ?"
        " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) AND seq = ?",
        (payload, run_id, seq),
    )


def _charter(tmp_path: Path, url: str, *args: str) -> Any:
    return run_charter(tmp_path, *args, "--db", url)


def _retain(tmp_path: Path, url: str, *ttls: str) -> None:
    args = [part for ttl in ttls for part in ("--ttl", ttl)]
    done = _charter(tmp_path, url, "retention", "apply", *args)
    assert done.returncode == 0, done.stdout + done.stderr


def _assert_ok(tmp_path: Path, url: str) -> None:
    done = _charter(tmp_path, url, "audit", "verify", "--all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok:")


def _assert_broken(tmp_path: Path, url: str, run_id: str, seq: int, *why: str) -> str:
    done = _charter(tmp_path, url, "audit", "verify", "--all")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"BROKEN {run_id} at event {seq}:" in done.stdout, done.stdout
    for word in why:
        assert word in done.stdout, done.stdout
    return str(done.stdout)


def _leaf(value: Any) -> str:
    """A removed leaf's digest, computed here by the documented rule."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


ALL_KINDS = ("prompts=0s", "tool_payloads=0s", "decisions=0s")

# -- a marker cannot stand for content it does not match --------------------------------------


@pytest.mark.replay_exempt("forges a removal marker over a field it blanks")
@pytest.mark.parametrize("form", ["original digest", "leaf digests"])
def test_a_forged_marker_cannot_cover_a_changed_shown_field(
    store_url: str, tmp_path: Path, form: str
) -> None:
    run_id = _finished_run(store_url)
    seq, payload, data = _event(store_url, run_id, "tool_call_proposed")
    arguments = data["arguments"]
    data["arguments"] = None
    if form == "original digest":  # today's marker: the whole original payload's digest
        marker = {"digest": hashlib.sha256(payload.encode()).hexdigest(), "fields": ["arguments"]}
    else:  # schema 2's marker, exactly as retention would write it
        marker = {"fields": ["arguments"], "digests": {"arguments": _leaf(arguments)}}
        _write(store_url, run_id, seq, {**data, "$removed": {"at": time.time(), **marker}})
        _assert_ok(tmp_path, store_url)  # a removal by hand is a removal: it verifies

    data["tool"] = "delete_everything"
    _write(store_url, run_id, seq, {**data, "$removed": {"at": time.time(), **marker}})

    _assert_broken(tmp_path, store_url, run_id, seq)


_Edit = tuple[str, int, Callable[[Json], None]]
KEPT_FIELD_EDITS: dict[str, _Edit] = {
    "a tool name": ("tool_call_proposed", 0, lambda d: d.update(tool="delete_everything")),
    "a proposed call's name": (
        "model_responded",
        0,
        lambda d: d["tool_calls"][0].update(name="delete_everything"),
    ),
    "a step": ("model_responded", 1, lambda d: d.update(step=d["step"] + 5)),
    "an error code": ("tool_call_failed", 0, lambda d: d["error"].update(code="tool_ok")),
    "a usage figure": ("model_responded", -1, lambda d: d["usage"].update(input_tokens=1)),
    "a decision's outcome": ("policy_evaluated", 0, lambda d: d.update(outcome="deny")),
    "a rule id": ("policy_evaluated", 2, lambda d: d.update(rule_ids=["reads"])),
    "the run's tenant": ("run_started", 0, lambda d: d.update(tenant="globex")),
}


def _verify_lines(tmp_path: Path, url: str) -> dict[str, str]:
    """``audit verify --all`` (exit 1 expected): each broken run's line, by run id."""
    done = _charter(tmp_path, url, "audit", "verify", "--all")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("BROKEN ")]
    return {line.split()[1]: line for line in lines}


@pytest.mark.replay_exempt("applies retention, which removes payloads a replay needs")
def test_after_real_retention_a_changed_kept_field_is_detected(
    store_url: str, tmp_path: Path
) -> None:
    """Each edit on a run of its own (one retention pass and one verify for all of them)."""
    runs = {edit: _finished_run(store_url) for edit in KEPT_FIELD_EDITS}
    _retain(tmp_path, store_url, *ALL_KINDS)
    _assert_ok(tmp_path, store_url)
    where = {}
    for edit, run_id in runs.items():
        type_, nth, change = KEPT_FIELD_EDITS[edit]
        seq, _, data = _event(store_url, run_id, type_, nth)
        assert "$removed" in data, f"{edit}: retention left this event whole"
        change(data)
        _write(store_url, run_id, seq, data)
        where[edit] = seq

    broken = _verify_lines(tmp_path, store_url)
    for edit, run_id in runs.items():
        line = broken.get(run_id, "")
        assert f"at event {where[edit]}:" in line and "does not match" in line, (edit, broken)


@pytest.mark.replay_exempt("applies retention, which removes payloads a replay needs")
def test_real_retention_verifies_pass_after_pass_and_the_marker_merges(
    store_url: str, tmp_path: Path
) -> None:
    run_id = _finished_run(store_url)
    for ttl in ("tool_payloads=0s", "decisions=0s", "prompts=0s"):
        _retain(tmp_path, store_url, ttl)
        _assert_ok(tmp_path, store_url)

    _, _, decision = _event(store_url, run_id, "policy_evaluated", 2)  # a rewrite: arguments
    marker = decision["$removed"]
    assert marker["fields"] == ["arguments", "reason"]
    assert sorted(marker["digests"]) == ["arguments", "reason"]
    assert decision["reason"] == REMOVED and decision["tool"] == "note"
    _, _, answer = _event(store_url, run_id, "model_responded")
    assert answer["$removed"]["fields"] == ["tool_calls.0.arguments", "tool_calls.1.arguments"]
    assert [c["name"] for c in answer["tool_calls"]] == ["lookup", "ledger"]

    shown = json.loads(_charter(tmp_path, store_url, "events", run_id, "--json").stdout)
    decisions = [e for e in shown if e["type"] == "policy_evaluated"]
    assert decisions[2]["removed"]["fields"] == ["arguments", "reason"]
    timeline = _charter(tmp_path, store_url, "runs", "show", run_id).stdout
    assert "[removed by retention" in timeline and "tool_calls.*.arguments" in timeline


def _claim_tool(data: Json) -> None:  # the tool's name hidden behind a marker
    data["tool"] = REMOVED
    data["$removed"]["fields"].append("tool")
    data["$removed"]["digests"]["tool"] = _leaf("lookup")


def _show_other_output(data: Json) -> None:  # still listed as removed, but shows content
    data["output"] = {"order": "8", "email": "bob@example.com"}


def _claim_unknown_path(data: Json) -> None:
    data["$removed"]["fields"].append("nonsense")
    data["$removed"]["digests"]["nonsense"] = _leaf("x")


def _drop_a_digest(data: Json) -> None:
    del data["$removed"]["digests"]["output"]


def _marker_on_nothing_removable(data: Json) -> None:  # tool_call_started: never retained
    original = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(original.encode()).hexdigest()
    data["$removed"] = {"digest": digest, "at": time.time(), "fields": []}


MARKER_LIES: dict[str, tuple[str, Callable[[Json], None], str]] = {
    "a non-removable path": ("tool_call_proposed", _claim_tool, "tool, which is not"),
    "a removed path showing content": ("tool_call_succeeded", _show_other_output, "output"),
    "an unknown path": ("policy_evaluated", _claim_unknown_path, "nonsense"),
    "a removed path without its digest": ("tool_call_succeeded", _drop_a_digest, "output"),
    "a type with nothing removable": (
        "tool_call_started",
        _marker_on_nothing_removable,
        "tool_call_started",
    ),
}


@pytest.mark.replay_exempt("applies retention, which removes payloads a replay needs")
def test_a_marker_that_does_not_match_the_event_is_a_break(store_url: str, tmp_path: Path) -> None:
    """Each lie on a run of its own (one retention pass and one verify for all of them)."""
    runs = {lie: _finished_run(store_url) for lie in MARKER_LIES}
    _retain(tmp_path, store_url, *ALL_KINDS)
    where = {}
    for lie, run_id in runs.items():
        type_, change, _ = MARKER_LIES[lie]
        seq, _, data = _event(store_url, run_id, type_)
        change(data)
        _write(store_url, run_id, seq, data)
        where[lie] = seq

    broken = _verify_lines(tmp_path, store_url)
    for lie, run_id in runs.items():
        line = broken.get(run_id, "")
        why = MARKER_LIES[lie][2]
        assert f"at event {where[lie]}:" in line, (lie, broken)
        assert "retention marker" in line and why in line, (lie, line)


# -- schema-1 events keep the old rule ---------------------------------------------------------


def _v1_hash(run_id: str, seq: int, type_: str, at: float, digest: str, prev: str) -> str:
    """The schema-1 rule, written out: the chain covers sha256 of the payload as stored."""
    material = f"{run_id}|{seq}|{type_}|1|{at!r}|{digest}|{prev}"
    return hashlib.sha256(material.encode()).hexdigest()


def _repoint_audit_log(url: str, run_id: str) -> None:
    """The audit log as it would stand had the run been written with these hashes: its
    records name the run's heads by hash, so they are re-pointed and the chain re-linked
    (no audit key in these tests)."""
    heads = dict(_sql(url, "SELECT seq, hash FROM events WHERE run_id = ?", (run_id,)))
    rows = _sql(url, "SELECT seq, at, kind, run_id, actor, detail FROM audit_log ORDER BY seq")
    _sql(url, "DELETE FROM audit_log")
    prev = GENESIS_HASH
    for seq, at, kind, rid, actor, detail in rows:
        data = json.loads(detail)
        if rid == run_id and "seq" in data:
            data["hash"] = heads[data["seq"]]
        record = seal(AuditEntry(kind, rid, actor, data), seq=seq, at=at, prev=prev, key=None)
        prev = record.hash
        values = tuple(getattr(record, name) for name in record.__slots__)
        _sql(url, "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)


@pytest.mark.replay_exempt("writes schema-1 events with a removal marker by hand")
def test_schema_1_events_written_by_hand_still_verify_by_the_old_rule(
    store_url: str, tmp_path: Path
) -> None:
    """A log written before schema 2: the old chain and an old-style marker verify as before,
    and the timeline says what the old rule leaves uncovered."""
    run_id = _finished_run(store_url)
    rows = _sql(store_url, "SELECT seq, type, at, payload FROM events WHERE run_id = ?"
                " ORDER BY seq", (run_id,))  # fmt: skip
    prev = GENESIS_HASH
    for seq, type_, at, payload in rows:
        digest = hashlib.sha256(payload.encode()).hexdigest()
        if type_ == "tool_call_succeeded":  # an old retention marker: the original's digest
            data = json.loads(payload)
            data["output"] = REMOVED
            data["$removed"] = {"digest": digest, "at": 5.0, "fields": ["output"]}
            payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        prev = _v1_hash(run_id, seq, type_, at, digest, prev)
        _sql(store_url, "UPDATE event_log SET schema_version = 1, payload = ?, hash = ?"
             " WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) AND seq = ?",
             (payload, bytes.fromhex(prev), run_id, seq))  # fmt: skip
    _sql(store_url, "UPDATE runs SET last_hash = ? WHERE run_id = ?", (prev, run_id))
    _repoint_audit_log(store_url, run_id)

    _assert_ok(tmp_path, store_url)
    timeline = _charter(tmp_path, store_url, "runs", "show", run_id).stdout
    assert "[removed by retention" in timeline and "schema 1" in timeline


def test_a_schema_1_prefix_and_later_events_verify_in_one_chain() -> None:
    run_id = "run_mixed"
    old = ToolCallProposed(step=1, call_id="c1", tool="lookup", effect="read",
                           arguments={"order_id": "7"})  # fmt: skip
    whole = old.model_dump_json(exclude_defaults=True)
    first = _v1_hash(run_id, 1, old.type, 1.0, hashlib.sha256(whole.encode()).hexdigest(),
                     GENESIS_HASH)  # fmt: skip
    retained = json.dumps({**json.loads(whole), "arguments": None, "$removed": {
        "digest": hashlib.sha256(whole.encode()).hexdigest(), "at": 2.0, "fields": ["arguments"],
    }})  # fmt: skip
    new = Event.seal(run_id=run_id, seq=2, at=3.0, body=old, prev_hash=first)
    assert new.schema_version == 3
    rows = [(1, old.type, 1, 1.0, retained, first), (2, new.type, 3, 3.0, new.payload, new.hash)]

    assert verify_chain(rows, run_id) is None
    # The old rule's known gap stays for old events: their skeleton is not covered.
    forged = retained.replace('"tool": "lookup"', '"tool": "delete_everything"')
    assert forged != retained
    assert verify_chain([(1, old.type, 1, 1.0, forged, first), rows[1]], run_id) is None


# -- the canonical digest ----------------------------------------------------------------------

_TYPE = {str(t.model_fields["type"].default): t for t in BODY_TYPES}


def _patterns(type_: str) -> list[list[str]]:
    return [p.split(".") for kind in REMOVABLE.values() for p, _ in kind.get(type_, ())]


def _is_removable(path: tuple[str | int, ...], type_: str) -> bool:
    """The path is a removable leaf or lies under one."""
    for parts in _patterns(type_):
        if len(path) >= len(parts) and all(
            want == "*" if isinstance(got, int) else want == got
            for want, got in zip(parts, path, strict=False)
        ):
            return True
    return False


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(value, dict):
        items: list[tuple[str | int, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    found = []
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


def _dump(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("type_", sorted(_TYPE))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_any_change_of_a_non_removable_field_changes_the_digest(
    type_: str, data: st.DataObject
) -> None:
    body = data.draw(body_strategy(_TYPE[type_]))
    payload = body.model_dump_json(exclude_defaults=True)
    before = content_digest(type_, payload)
    tree = json.loads(payload)
    paths = [p for p in _paths(tree) if not _is_removable(p, type_)]
    if not paths:
        return
    path = data.draw(st.sampled_from(paths), label="changed path")
    *parents, last = path
    parent: Any = tree
    for part in parents:
        parent = parent[part]
    how = data.draw(st.sampled_from(["edit", "delete"]), label="how")
    if how == "delete":
        del parent[last]
    elif isinstance(parent[last], str):
        parent[last] += "x"
    else:
        parent[last] = [parent[last]]

    assert content_digest(type_, _dump(tree)) != before


@pytest.mark.parametrize("type_", sorted({t for kind in REMOVABLE.values() for t in kind}))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_retention_keeps_the_digest_and_a_removed_leaf_is_still_covered(
    type_: str, data: st.DataObject
) -> None:
    body = data.draw(body_strategy(_TYPE[type_]))
    payload = body.model_dump_json(exclude_defaults=True)
    before = content_digest(type_, payload)
    kinds = tuple(kind for kind, types in REMOVABLE.items() if type_ in types)

    retained = strip(payload, type_, kinds, now=1.0)

    if retained is None:
        return  # nothing was there to remove
    assert content_digest(type_, retained) == before
    # A listed leaf must be shown as its placeholder: putting content back breaks it.
    tree = json.loads(retained)
    path = data.draw(st.sampled_from(tree["$removed"]["fields"]), label="restored leaf")
    *parents, last = path.split(".")
    parent: Any = tree
    for part in parents:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    parent[last] = "not the placeholder"
    with pytest.raises(ValueError, match="retention marker"):
        content_digest(type_, _dump(tree))


def test_a_removable_leaf_is_covered_by_its_own_digest() -> None:
    body = ToolCallProposed(step=1, call_id="c", tool="t", effect="read", arguments={"a": 1})
    payload = body.model_dump_json(exclude_defaults=True)
    skeleton = {**json.loads(payload), "arguments": {"$d": _leaf({"a": 1})}}
    canonical = json.dumps(skeleton, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    assert content_digest(body.type, payload) == hashlib.sha256(canonical.encode()).hexdigest()
    assert content_digest(body.type, payload.replace('"a":1', '"a":2')) != content_digest(
        body.type, payload
    )
    # The same JSON written differently (key order, spaces) is the same content.
    assert content_digest(body.type, json.dumps(json.loads(payload), indent=1)) == (
        content_digest(body.type, payload)
    )


def test_a_type_with_nothing_removable_is_hashed_as_stored() -> None:
    event = Event.seal(
        run_id="r", seq=1, at=1.0, prev_hash=GENESIS_HASH,
        body=_TYPE["run_resumed"](reason="message", worker="w1"),
    )  # fmt: skip
    digest = hashlib.sha256(event.payload.encode()).hexdigest()
    assert content_digest(event.type, event.payload) == digest
    assert event.hash == chain_hash(
        run_id="r", seq=1, type=event.type, schema_version=3, at=1.0, digest=digest,
        prev=GENESIS_HASH,
    )  # fmt: skip


def test_an_event_of_an_unknown_schema_version_is_a_break() -> None:
    body = _TYPE["run_resumed"](reason="message", worker="w1")
    event = Event.seal(run_id="r", seq=1, at=1.0, body=body, prev_hash=GENESIS_HASH)

    broken = verify_chain([(1, event.type, 4, 1.0, event.payload, event.hash)], "r")

    assert broken is not None and broken.reason == "unknown event schema version 4"
