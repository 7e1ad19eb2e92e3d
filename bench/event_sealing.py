#!/usr/bin/env python
"""What sealing an event costs under schema 2 (canonical digest) against schema 1.

Usage::

    python bench/event_sealing.py [--n 20000] [--repeat 7] [--json]

In one process, for typical events (a ``model_responded`` proposing two tool calls, a
``tool_call_proposed``, a small ``policy_evaluated``, a ``tool_call_succeeded`` with a 2 KB
output, and a ``tool_call_started``, a type with nothing removable, hashed as stored):

1. **seal**: ``Event.seal`` (schema 2: serialise, parse the payload once, replace each
   removable field by its digest, hash the canonical JSON) against the schema-1 rule written
   out the same way (serialise, hash the payload as stored), µs per event;
2. **verify**: the digest ``verify_chain`` recomputes from a stored payload (schema 1 and 2),
   and from the same payload after retention removed its fields (schema 2 reads the marker).

Each figure is the best of ``--repeat`` rounds of ``--n`` calls, the two schemas measured
alternately in the same run; the last figure adds up one tool-calling step's events (answer,
proposal, decision, 2 KB result, intent). It asserts nothing and has no target: compare the
added µs per step with ``bench/step_overhead.py``'s CPU per durable step.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

from _report import emit, print_table
from charter.events import (
    GENESIS_HASH,
    REMOVABLE,
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
    payload_digest,
)
from charter.retention import strip


def _bodies() -> dict[str, EventBody]:
    arguments = '{"order_id":"A-1042","customer_id":"c_88213","reason":"damaged on arrival"}'
    rows = [
        {"sku": f"SKU-{i:05d}", "name": f"Item number {i}", "qty": i % 4 + 1, "price": 12.5 * i}
        for i in range(28)
    ]
    return {
        "model_responded (2 tool calls)": ModelResponded(
            step=3,
            provider="openai",
            model="gpt-4o-mini",
            prompt_hash="9f" * 32,
            tool_calls=(
                ProposedCall(call_id="call_1", name="lookup_order", arguments=arguments),
                ProposedCall(call_id="call_2", name="refund", arguments=arguments),
            ),
            usage=Usage(input_tokens=1834, output_tokens=96),
            latency_ms=812.4,
            cost_usd=0.000338,
            parameters={"temperature": 0.0, "max_output_tokens": 1024},
            finish_reason="tool_calls",
        ),
        "tool_call_succeeded (2 KB output)": ToolCallSucceeded(
            call_id="call_1",
            tool="lookup_order",
            output={"order": "A-1042", "lines": rows},
            duration_ms=41.2,
        ),
        "tool_call_proposed": ToolCallProposed(
            step=3,
            call_id="call_2",
            tool="refund",
            effect="write",
            tool_version="1",
            arguments={"order_id": "A-1042", "customer_id": "c_88213", "amount": 120.0},
        ),
        "policy_evaluated (small)": PolicyEvaluated(
            call_id="call_2",
            tool="refund",
            outcome="allow",
            reason="allowed by rule 'small'",
            rule_ids=("small",),
            policy_hash="3c" * 32,
        ),
        "tool_call_started (nothing removable)": ToolCallStarted(
            call_id="call_2",
            tool="refund",
            idempotency_key="run_1:3:call_2",
            fencing_token=1048576,
            execution="thread",
        ),
    }


def seal_v1(body: EventBody) -> Event:
    """``Event.seal`` as schema 1 did it: the digest of the payload as stored."""
    payload = body.model_dump_json(exclude_defaults=True)
    hash_ = chain_hash(
        run_id="run_1", seq=7, type=body.type, schema_version=1, at=1.5,
        digest=payload_digest(payload), prev=GENESIS_HASH,
    )  # fmt: skip
    return Event("run_1", 7, 1.5, body, payload, GENESIS_HASH, hash_, 1)


def seal_v2(body: EventBody) -> Event:
    return Event.seal(run_id="run_1", seq=7, at=1.5, body=body, prev_hash=GENESIS_HASH)


def _best_us(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def _pair(one: Callable[[], Any], two: Callable[[], Any], n: int, repeat: int) -> list[float]:
    """Best µs per call of ``one`` and ``two``, measured alternately."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        best[0] = min(best[0], _best_us(one, n))
        best[1] = min(best[1], _best_us(two, n))
    return best


def measure(n: int, repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {"n": n, "repeat": repeat, "python": platform.python_version()}
    events: dict[str, Any] = {}
    for name, body in _bodies().items():
        payload = seal_v2(body).payload
        kinds = tuple(k for k, types in REMOVABLE.items() if body.type in types)
        retained = strip(payload, body.type, kinds, now=2.0) if kinds else None
        seal = _pair(lambda b=body: seal_v1(b), lambda b=body: seal_v2(b), n, repeat)
        verify = _pair(
            lambda p=payload, t=body.type: content_digest(t, p, 1),
            lambda p=payload, t=body.type: content_digest(t, p, 2),
            n, repeat,
        )  # fmt: skip
        figures = {
            "bytes": len(payload),
            "seal_v1_us": seal[0],
            "seal_v2_us": seal[1],
            "seal_ratio": seal[1] / seal[0],
            "verify_v1_us": verify[0],
            "verify_v2_us": verify[1],
        }
        if retained is not None:
            figures["verify_v2_retained_us"] = min(
                _best_us(lambda p=retained, t=body.type: content_digest(t, p, 2), n)
                for _ in range(repeat)
            )
        events[name] = figures
    results["events"] = events
    return results


def _report(results: dict[str, Any], table: list[tuple[str, ...]]) -> None:
    print(f"event sealing, best of {results['repeat']} x {results['n']} calls,"
          f" Python {results['python']}\n")  # fmt: skip
    header = ("event", "bytes", "seal v1", "seal v2", "ratio", "verify v1", "verify v2",
              "v2 retained")  # fmt: skip
    rows = [header]
    for name, f in results["events"].items():
        retained = f.get("verify_v2_retained_us")
        rows.append((
            name, str(f["bytes"]), f"{f['seal_v1_us']:.2f} µs", f"{f['seal_v2_us']:.2f} µs",
            f"{f['seal_ratio']:.2f}x", f"{f['verify_v1_us']:.2f} µs", f"{f['verify_v2_us']:.2f} µs",
            "-" if retained is None else f"{retained:.2f} µs",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print()
    print_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure(args.n, args.repeat)
    events = results["events"].values()
    table = [
        (f"seal v2 / v1: {name}", f"{f['seal_ratio']:.2f}x", "(reference)", "-")
        for name, f in results["events"].items()
    ]
    v1, v2 = (sum(f[f"seal_{v}_us"] for f in events) for v in ("v1", "v2"))
    results["step"] = {"seal_v1_us": v1, "seal_v2_us": v2, "added_us": v2 - v1}
    table.append(("one step's events: seal v1", f"{v1:.1f} µs", "(reference)", "-"))
    table.append(("one step's events: seal v2", f"{v2:.1f} µs", "(reference)", "-"))
    table.append(("added per step", f"{v2 - v1:.1f} µs", "(reference)", "-"))
    emit(results, table, as_json=args.json, print_report=_report)


if __name__ == "__main__":
    main()
