"""Rule conditions read symbolically, for :mod:`charter.policy._whocan`: as text an operator
reads, and whether two rules' conditions can ever hold for one call. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from charter.policy._evaluate import _key, _ops
from charter.policy._rules import ArgCondition, When

FIXED_FIELDS = ("agent", "agent_version", "trust_tier", "tool", "effect", "risk")
_NAME_FIELDS = (*FIXED_FIELDS, "tenant", "principal", "environment")


# -- conditions as text -----------------------------------------------------------------------


def show(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _names(values: Iterable[str]) -> str:
    items = list(values)
    return items[0] if len(items) == 1 else f"[{', '.join(items)}]"


_FLAG_TEXT = {
    ("kill_switch", True): "kill switch on",
    ("kill_switch", False): "kill switch off",
    ("tenant_matches_principal", True): "principal of the run's tenant",
    ("tenant_matches_principal", False): "principal from another tenant",
    ("untrusted_in_args", True): "untrusted data in the arguments",
    ("untrusted_in_args", False): "no untrusted data in the arguments",
    ("untrusted_in_context", True): "untrusted data in the run's context",
    ("untrusted_in_context", False): "no untrusted data in the run's context",
}
_ARG_OPS = {"eq": "==", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def describe(when: When, fixed: dict[str, str], allowlists: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for name in ("tenant", "principal", "environment"):
        values = getattr(when, name)
        if values is not None and name not in fixed:
            out.append(f"{name} {'in ' if len(values) > 1 else ''}{_names(values)}")
    if when.roles_any is not None:
        roles = when.roles_any
        out.append(f"role {roles[0]}" if len(roles) == 1 else f"any role of {_names(roles)}")
    if when.roles_all is not None:
        out.append(f"roles all of {_names(when.roles_all)}")
    for flag in ("kill_switch", "tenant_matches_principal"):
        value = getattr(when, flag)
        if value is not None:
            out.append(_FLAG_TEXT[flag, value])
    for path, cond in (when.args or {}).items():
        out.append(f"{path} {_arg_text(cond)}")
    return (*out, *_describe_data(when, allowlists))


def _describe_data(when: When, allowlists: dict[str, Any]) -> list[str]:
    out: list[str] = []
    dest = when.destinations
    if dest is not None:
        entries = ", ".join(allowlists.get(dest.allowlist, ()))
        if dest.in_ is not None:
            out.append(f"destinations on allowlist {dest.allowlist} ({entries})")
        else:
            out.append(f"a destination off allowlist {dest.allowlist} ({entries})")
    prov = when.provenance
    if prov is not None:
        for flag in ("untrusted_in_args", "untrusted_in_context"):
            value = getattr(prov, flag)
            if value is not None:
                out.append(_FLAG_TEXT[flag, value])
        if prov.destination_from is not None:
            out.append(f"destinations only from {_names(prov.destination_from)}")
    return out


def _arg_text(cond: ArgCondition) -> str:
    dumped = cond.model_dump()
    parts = []
    for op, value in dumped.items():
        if op in _ARG_OPS:
            parts.append(f"{_ARG_OPS[op]} {show(value)}")
        elif op in ("in", "not_in"):
            parts.append(f"{op.replace('_', ' ')} {show(value)}")
        elif op == "regex":
            parts.append(f"matches /{value}/")
        else:
            parts.append("present" if value else "absent")
    return " and ".join(parts)


# -- can two rules' conditions hold together? -----------------------------------------------------


def disjoint(a: When, b: When, *, data: bool = True) -> bool:
    """True only when no call can match both ``a`` and ``b`` (``data``: also look at the
    arguments, destinations and provenance; off for a rewrite, which changes the arguments)."""
    for name in _NAME_FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        if left is not None and right is not None and not set(left) & set(right):
            return True
    for flag in ("kill_switch", "tenant_matches_principal"):
        left, right = getattr(a, flag), getattr(b, flag)
        if left is not None and right is not None and left != right:
            return True
    if not data:
        return False
    if a.provenance is not None and b.provenance is not None:
        for flag in ("untrusted_in_args", "untrusted_in_context"):
            left, right = getattr(a.provenance, flag), getattr(b.provenance, flag)
            if left is not None and right is not None and left != right:
                return True
    da, db = a.destinations, b.destinations
    if da is not None and db is not None and da.allowlist == db.allowlist:
        return (da.in_ is None) != (db.in_ is None) or _any_args_disjoint(a, b)
    return _any_args_disjoint(a, b)


def _any_args_disjoint(a: When, b: When) -> bool:
    other = b.args or {}
    return any(
        path in other and _args_disjoint(path, cond, other[path])
        for path, cond in (a.args or {}).items()
    )


_POSITIVE = ("eq", "lt", "lte", "gt", "gte", "in_", "regex")


def _args_disjoint(path: str, a: ArgCondition, b: ArgCondition) -> bool:
    """Can no one value satisfy both conditions on one argument? (Conservative: False if unsure.)"""
    for one, two in ((a, b), (b, a)):
        if one.exists is False and (
            two.exists is True or any(n in two.model_fields_set for n in _POSITIVE)
        ):
            return True
    candidates = _candidates(a, b)
    if candidates is not None:
        ops = _ops(path, a) + _ops(path, b)
        return not any(_passes(ops, value) for value in candidates)
    return _empty_interval(a, b)


def _candidates(a: ArgCondition, b: ArgCondition) -> list[Any] | None:
    """The only values that could satisfy ``a`` and ``b``, when one of them lists them."""
    for cond in (a, b):
        if "eq" in cond.model_fields_set:
            return [cond.eq]
    sets = [cond.in_ for cond in (a, b) if cond.in_ is not None]
    if not sets:
        return None
    keys = set.intersection(*({_key(v) for v in s} for s in sets))
    return [v for v in sets[0] if _key(v) in keys]


def _passes(ops: list[Any], value: Any) -> bool:
    try:
        return all(op(value) for op in ops)
    except TypeError:
        return False  # an ordering on the wrong type is an evaluation error: it denies


def _empty_interval(a: ArgCondition, b: ArgCondition) -> bool:
    low: tuple[float, bool] | None = None  # (bound, strict)
    high: tuple[float, bool] | None = None
    for cond in (a, b):
        for name, strict, is_low in (("gt", True, True), ("gte", False, True),
                                     ("lt", True, False), ("lte", False, False)):  # fmt: skip
            bound = getattr(cond, name)
            if name not in cond.model_fields_set or isinstance(bound, str):
                continue
            if is_low and (low is None or bound > low[0] or (bound == low[0] and strict)):
                low = (float(bound), strict)
            if not is_low and (high is None or bound < high[0] or (bound == high[0] and strict)):
                high = (float(bound), strict)
    if low is None or high is None:
        return False
    return low[0] > high[0] or (low[0] == high[0] and (low[1] or high[1]))
