"""Replay and rerun read answers from event fields: no regular expressions over prose, and
the new fields cost nothing (and change no hash) where they are at their defaults."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from charter.events import (
    CounterReading,
    Event,
    KillSwitchSeen,
    PolicyEvaluated,
    ToolCallBlocked,
    parse_body,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "charter"
SERVING = ["_engine/recorded.py", "replay.py", "rerun.py"]


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", SERVING)
def test_the_modules_that_serve_a_log_back_do_not_import_re(module: str) -> None:
    assert "re" not in _imported(SRC / module)


def test_the_ast_check_sees_an_import_of_re(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from re import compile\n")
    assert "re" in _imported(sample)


def _decision(**fields: object) -> PolicyEvaluated:
    return PolicyEvaluated(
        call_id="c1", tool="refund", outcome="allow", reason="ok", policy_hash="p", **fields
    )


def test_answer_fields_at_their_defaults_are_not_stored_so_older_payloads_hash_the_same() -> None:
    older = '{"call_id":"c1","tool":"refund","outcome":"allow","reason":"ok","policy_hash":"p"}'
    event = Event.seal(run_id="r", seq=1, at=1.0, body=_decision(), prev_hash="0" * 64)
    assert event.payload == older
    assert parse_body(older, "policy_evaluated") == _decision()
    blocked = '{"call_id":"c1","tool":"refund","reason":"off","action":"wait"}'
    assert parse_body(blocked, "tool_call_blocked") == ToolCallBlocked(
        call_id="c1", tool="refund", reason="off", action="wait"
    )


def test_answer_fields_round_trip_when_set() -> None:
    body = _decision(
        kill_switch=True,
        counters=(
            CounterReading(counter="per_tenant_per_day_usd", total=7.25, cap=5.0),
            CounterReading(counter="refunds-per-hour[tenant=acme]", total=None, cap=2.0),
        ),
    )
    event = Event.seal(run_id="r", seq=1, at=1.0, body=body, prev_hash="0" * 64)
    assert parse_body(event.payload, "policy_evaluated") == body
    switch = KillSwitchSeen(tenant="acme", agent="*", reason="audit")
    blocked = ToolCallBlocked(call_id="c", tool="t", reason="x", action="wait", switch=switch)
    assert parse_body(blocked.model_dump_json(exclude_defaults=True), "tool_call_blocked") == (
        blocked
    )
