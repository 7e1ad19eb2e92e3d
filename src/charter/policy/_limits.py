"""Rate limits, matched purely: which of a policy's limits a call counts against, and the key of
each counter.

The engine only says *which* counters a call would take from; counting is I/O and lives in the
run loop (durable windows in the store's ``counters`` table, ``run`` windows in the run's own
state). A limit's ``when`` is compiled into the same tests a rule's is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charter.policy._rules import Limit

if TYPE_CHECKING:
    from charter.policy._evaluate import PolicyInput

Test = Callable[["PolicyInput", Mapping[str, Any]], bool]
_SCOPE_ATTRS = {"agent": "agent_name", "tenant": "tenant", "tool": "tool", "principal": "principal"}


@dataclass(frozen=True, slots=True)
class LimitMatch:
    """One counter a call takes from: ``max`` per ``window`` for its ``scope``.

    ``label`` names the limit and scope (``refunds-per-hour[tenant=acme,tool=refund]``): it is
    what ``policy_evaluated`` records and what a ``run`` window counts in the run's state.
    ``key`` is the durable counter's key (JSON, so no value can be read as another scope).
    ``error``: the limit's conditions could not be evaluated (the call is denied).
    """

    limit_id: str
    max: int
    window: str
    window_s: int | None
    scope: tuple[tuple[str, str], ...]
    label: str
    key: str
    error: str | None = None

    def describe(self) -> str:
        """``rate limit refunds-per-hour: 20 per 1h for tenant acme, tool refund``."""
        per = "per run" if self.window_s is None else f"per {self.window}"
        scope = ", ".join(f"{part} {value}" for part, value in self.scope)
        return f"rate limit {self.limit_id}: {self.max} {per}" + (f" for {scope}" if scope else "")


@dataclass(frozen=True, slots=True)
class CompiledLimit:
    limit: Limit
    tests: tuple[Test, ...]
    policy_name: str

    @classmethod
    def build(cls, limit: Limit, tests: list[Test], policy_name: str) -> CompiledLimit:
        """``tests``: the compiled ``when`` without its tool names (the rule index's job for
        rules), which are tested here first."""
        if limit.when.tool is not None:
            names = frozenset(limit.when.tool)
            tests = [lambda inp, args: inp.tool in names, *tests]
        return cls(limit, tuple(tests), policy_name)

    def match(self, inp: PolicyInput, args: Mapping[str, Any]) -> LimitMatch | None:
        error = None
        try:
            for test in self.tests:
                if not test(inp, args):
                    return None
        except Exception as exc:  # fail closed: the loop denies a call whose limit errs
            error = f"{type(exc).__name__}: {exc}"
        limit = self.limit
        scope = tuple((part, str(getattr(inp, _SCOPE_ATTRS[part]))) for part in limit.per)
        label = limit.id + (f"[{','.join(f'{p}={v}' for p, v in scope)}]" if scope else "")
        key = json.dumps(
            [self.policy_name, limit.id, limit.window, [list(s) for s in scope]],
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return LimitMatch(
            limit.id, limit.max, limit.window, limit.window_s, scope, label, key, error
        )


def match_limits(
    limits: tuple[CompiledLimit, ...], inp: PolicyInput, args: Mapping[str, Any]
) -> tuple[LimitMatch, ...]:
    """The limits whose ``when`` matches the call (with ``args``, the arguments to execute)."""
    found = []
    for limit in limits:
        hit = limit.match(inp, args)
        if hit is not None:
            found.append(hit)
    return tuple(found)
