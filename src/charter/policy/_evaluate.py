"""The evaluator: rules compiled at load into plain closures; the first terminal match decides.

Rules are checked in order. A matching ``allow``, ``deny`` or ``require_approval`` rule decides;
a matching ``rewrite`` rule changes the arguments and evaluation restarts from the top with
them (a rewrite that changes nothing is skipped; more than ``MAX_REWRITES`` deny as a loop).
No match denies ("no rule allows this call"). Any exception denies, with ``error`` set.

Nothing here touches pydantic on the hot path: matching is closures over frozensets, compiled
regexes and split paths, and a :class:`Decision` is a named tuple (a frozen dataclass costs
several times more to build, which is most of a decision's budget).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from charter.policy import _rules
from charter.policy._limits import CompiledLimit, LimitMatch, match_limits
from charter.policy._rules import (
    ArgCondition,
    Deny,
    PolicyDocument,
    RequireApproval,
    Rewrite,
    Rule,
    When,
)
from charter.tools import Effect, Risk

MAX_REWRITES = 5
SCHEMA_VERSION = 1
Outcome = Literal["allow", "deny", "require_approval"]


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyInput:
    """Everything a decision depends on: the proposed call and its context.

    ``destinations`` maps an argument path (``"to"``, ``"recipient.email"``) to the value of
    each argument the tool contract declares a destination. ``destination_sources`` maps the
    same paths to the kinds of source each value came from (``SOURCE_KINDS``). Provenance that
    is not known counts as untrusted. Sets may be any collection; frozensets are fastest.
    """

    tool: str
    effect: Effect
    risk: Risk
    agent_name: str
    tenant: str
    principal: str
    environment: str
    agent_version: str = "1"
    trust_tier: str = "standard"
    roles: Collection[str] = frozenset()
    principal_tenant: str | None = None
    kill_switch: bool = False
    arguments: Mapping[str, Any] = field(default_factory=dict)
    destinations: Mapping[str, Any] = field(default_factory=dict)
    untrusted_in_args: bool = True
    untrusted_in_context: bool = True
    destination_sources: Mapping[str, Collection[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApprovalRequirement:
    """Who must approve, how long the request lives, and what happens when it expires."""

    tier: str
    role: str
    expires_in_s: int
    on_expiry: Literal["deny", "escalate"] = "deny"


class Decision(NamedTuple):
    """A final decision: ``allow``, ``deny`` or ``require_approval``, and why.

    ``arguments`` are the arguments to execute (rewritten when ``rewritten``); ``rule_ids``
    every rule that changed or decided the call, in order, the deciding one last.
    """

    outcome: Outcome
    arguments: Mapping[str, Any]
    rewritten: bool
    reason: str
    rule_ids: tuple[str, ...]
    policy_hash: str
    approval: ApprovalRequirement | None = None
    error: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON value that goes into an event."""
        out = self._asdict()
        out["arguments"] = dict(self.arguments)
        out["rule_ids"] = list(self.rule_ids)
        out["approval"] = None if self.approval is None else asdict(self.approval)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        approval = data.get("approval")
        return cls(
            **{
                **data,
                "rule_ids": tuple(data["rule_ids"]),
                "approval": None if approval is None else ApprovalRequirement(**approval),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Decision:
        return cls.from_dict(json.loads(text))


# -- compiling rules into closures ---------------------------------------------------------------

Test = Callable[[PolicyInput, Mapping[str, Any]], bool]
Op = Callable[[Any], bool]
_MISSING: Any = object()
_new_decision = tuple.__new__


def _get(args: Any, path: tuple[str, ...]) -> Any:
    value = args
    for part in path:
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(part, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _key(value: Any) -> Any:
    """A hashable identity with JSON equality: ``1 == 1.0`` but ``true != 1``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int | float):
        return ("number", value)
    return ("json", json.dumps(value, sort_keys=True, separators=(",", ":")))


def _equals(expected: Any) -> Op:
    key = _key(expected)
    if isinstance(expected, str):
        return lambda v: isinstance(v, str) and v == expected
    return lambda v: v is not _MISSING and _key(v) == key


def _member(values: tuple[Any, ...]) -> Op:
    keys = frozenset(_key(v) for v in values)
    if all(isinstance(v, str) for v in values):
        return lambda v: isinstance(v, str) and v in keys
    return lambda v: v is not _MISSING and _key(v) in keys


def _ordered(where: str, compare: Callable[[Any, Any], bool], bound: Any) -> Op:
    textual = isinstance(bound, str)

    def op(value: Any) -> bool:
        if value is _MISSING:
            return False
        if textual:
            if not isinstance(value, str):
                raise TypeError(f"argument {where!r} is {_kind(value)}, not a string")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"argument {where!r} is {_kind(value)}, not a number")
        elif not math.isfinite(value):
            raise TypeError(f"argument {where!r} is {value!r}, not a finite number")
        return compare(value, bound)

    return op


def _matches(where: str, pattern: re.Pattern[str]) -> Op:
    def op(value: Any) -> bool:
        if value is _MISSING:
            return False
        if not isinstance(value, str):
            raise TypeError(f"argument {where!r} is {_kind(value)}; a regex needs a string")
        return pattern.fullmatch(value) is not None

    return op


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


_ORDERINGS = {"lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}


def _ops(where: str, cond: ArgCondition) -> list[Op]:
    ops: list[Op] = []
    given = cond.model_fields_set
    if "eq" in given:
        ops.append(_equals(cond.eq))
    if "ne" in given:
        same = _equals(cond.ne)
        ops.append(lambda v: not same(v))
    for name, compare in _ORDERINGS.items():
        if name in given:
            ops.append(_ordered(where, compare, getattr(cond, name)))
    if cond.in_ is not None:
        ops.append(_member(cond.in_))
    if cond.not_in is not None:
        inside = _member(cond.not_in)
        ops.append(lambda v: not inside(v))
    if cond.regex is not None:
        ops.append(_matches(where, re.compile(cond.regex)))
    if cond.exists is not None:
        want = cond.exists
        ops.append(lambda v: (v is not _MISSING) is want)
    return ops


def _arg_test(where: str, cond: ArgCondition) -> Test:
    path = tuple(where.split("."))
    ops = tuple(_ops(where, cond))
    key = path[0]
    if len(path) == 1 and len(ops) == 1:
        op = ops[0]
        return lambda inp, args: op(args.get(key, _MISSING))

    def test(inp: PolicyInput, args: Mapping[str, Any]) -> bool:
        value = args.get(key, _MISSING) if len(path) == 1 else _get(args, path)
        for op in ops:  # noqa: SIM110 - all() over a generator costs more on the hot path
            if not op(value):
                return False
        return True

    return test


class _Allowlist:
    """Entries matched exactly, or as the host of an e-mail address or URL; ``*.x`` wildcards."""

    __slots__ = ("exact", "suffixes")

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.exact = frozenset(e for e in entries if not e.startswith("*."))
        self.suffixes = tuple(e[1:] for e in entries if e.startswith("*."))

    def __contains__(self, raw: Any) -> bool:
        text = raw if isinstance(raw, str) else json.dumps(raw)
        value, host = _normal(text) if len(text) <= 256 else _normal.__wrapped__(text)
        if value in self.exact:
            return True
        return bool(host) and (host in self.exact or host.endswith(self.suffixes))


# Characters that make a host ambiguous: "a@evil.test, b@example.com" is two recipients, and
# clients disagree on "https://evil.test\\@example.com". Such a value matches only exactly.
_AMBIGUOUS = re.compile(r"[\s,;<>\\]")


@functools.lru_cache(maxsize=4096)  # destination strings repeat; urlsplit is not cheap
def _normal(raw: str) -> tuple[str, str]:
    """A destination, lower-cased, and its host: an e-mail's domain, a URL's hostname."""
    value = raw.strip().lower().rstrip(".")
    if _AMBIGUOUS.search(value):
        return value, ""
    host = (urlsplit(value).hostname or "") if "://" in value else value.rpartition("@")[2]
    return value, host


def _destination_values(inp: PolicyInput, args: Mapping[str, Any]) -> list[Any]:
    """Destination values, re-read from the arguments after a rewrite, lists flattened."""
    values: list[Any] = []
    for where, value in inp.destinations.items():
        if args is not inp.arguments:
            current = _get(args, tuple(where.split(".")))
            value = value if current is _MISSING else current
        values.extend(value if isinstance(value, list | tuple) else [value])
    return values


def _destination_test(allowlist: _Allowlist, inside: bool) -> Test:
    def test(inp: PolicyInput, args: Mapping[str, Any]) -> bool:
        every = all(v in allowlist for v in _destination_values(inp, args))
        return every if inside else not every

    return test


def _sources_test(allowed: frozenset[str]) -> Test:
    def test(inp: PolicyInput, args: Mapping[str, Any]) -> bool:
        sources = inp.destination_sources
        for where in inp.destinations:
            kinds = sources.get(where)
            if not kinds or not allowed.issuperset(kinds):
                return False
        return True

    return test


# ``when`` field -> a test on the PolicyInput attribute it names; direct attribute access is
# markedly cheaper than operator.attrgetter here, and this runs for every rule considered.
# In this order: the least selective fields (effect, risk) last, so that a rule that does not
# apply usually fails on its first test.
_FIELD_TESTS: dict[str, Callable[[frozenset[str]], Test]] = {
    "environment": lambda s: lambda inp, args: inp.environment in s,
    "trust_tier": lambda s: lambda inp, args: inp.trust_tier in s,
    "agent": lambda s: lambda inp, args: inp.agent_name in s,
    "agent_version": lambda s: lambda inp, args: inp.agent_version in s,
    "tenant": lambda s: lambda inp, args: inp.tenant in s,
    "principal": lambda s: lambda inp, args: inp.principal in s,
    "risk": lambda s: lambda inp, args: inp.risk in s,
    "effect": lambda s: lambda inp, args: inp.effect in s,
}


def _context_tests(when: When) -> list[Test]:
    """Tests on the call's context (not arguments, destinations, provenance); flags first."""
    tests: list[Test] = []
    if when.kill_switch is not None:
        kill = when.kill_switch
        tests.append(lambda inp, args: bool(inp.kill_switch) is kill)
    if when.tenant_matches_principal is not None:
        same = when.tenant_matches_principal
        tests.append(lambda inp, args: (inp.principal_tenant == inp.tenant) is same)
    for name, make in _FIELD_TESTS.items():
        values = getattr(when, name)
        if values is not None:
            tests.append(make(frozenset(values)))
    if when.roles_any is not None:
        any_of = frozenset(when.roles_any)
        tests.append(lambda inp, args: not any_of.isdisjoint(inp.roles))
    if when.roles_all is not None:
        all_of = frozenset(when.roles_all)
        tests.append(lambda inp, args: all_of.issubset(inp.roles))
    return tests


def _data_tests(when: When, allowlists: Mapping[str, _Allowlist]) -> list[Test]:
    """Tests on the arguments, the destinations and the provenance of the data in play."""
    tests = [_arg_test(where, cond) for where, cond in (when.args or {}).items()]
    if when.destinations is not None:
        allowlist = allowlists[when.destinations.allowlist]
        tests.append(_destination_test(allowlist, when.destinations.in_ is not None))
    prov = when.provenance
    if prov is not None:
        if prov.untrusted_in_args is not None:
            in_args = prov.untrusted_in_args
            tests.append(lambda inp, args: bool(inp.untrusted_in_args) is in_args)
        if prov.untrusted_in_context is not None:
            in_context = prov.untrusted_in_context
            tests.append(lambda inp, args: bool(inp.untrusted_in_context) is in_context)
        if prov.destination_from is not None:
            tests.append(_sources_test(frozenset(prov.destination_from)))
    return tests


# -- rewrites ------------------------------------------------------------------------------------

Rewriter = Callable[[Mapping[str, Any]], "dict[str, Any] | None"]


def _put(args: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``args`` with ``path`` set; only the mappings along the path are copied."""
    root = dict(args)
    here = root
    for depth, part in enumerate(path[:-1]):
        child = here.get(part, _MISSING)
        if child is _MISSING:
            child = {}
        elif isinstance(child, Mapping):
            child = dict(child)
        else:
            where = ".".join(path[: depth + 1])
            raise TypeError(f"cannot rewrite {'.'.join(path)!r}: {where!r} is not an object")
        here[part] = child
        here = child
    here[path[-1]] = value
    return root


def _rewriter(spec: Rewrite) -> Rewriter:
    sets = [(tuple(k.split(".")), v) for k, v in (spec.rewrite.set_ or {}).items()]
    caps = [
        (tuple(k.split(".")), _ordered(k, operator.gt, bound), bound)
        for k, bound in (spec.rewrite.cap or {}).items()
    ]

    def apply(args: Mapping[str, Any]) -> dict[str, Any] | None:
        out: Mapping[str, Any] = args
        for path, value in sets:
            current = _get(out, path)
            if current is _MISSING or _key(current) != _key(value):
                fresh = copy.deepcopy(value) if isinstance(value, dict | list) else value
                out = _put(out, path, fresh)  # a fresh copy: the rule's value stays its own
        for path, above, bound in caps:
            if above(_get(out, path)):
                out = _put(out, path, bound)
        return None if out is args else out  # type: ignore[return-value]  # a fresh dict

    return apply


# -- compiled rules --------------------------------------------------------------------------

_ALLOW, _DENY, _APPROVAL, _REWRITE = "allow", "deny", "require_approval", "rewrite"


@dataclass(frozen=True, slots=True)
class _Compiled:
    id: str
    kind: str
    context: tuple[Test, ...]  # matched by could_allow
    tests: tuple[Test, ...]  # context + data: matched by evaluate
    reason: str
    approval: ApprovalRequirement | None
    rewrite: Rewriter | None
    ids: tuple[str, ...]


def _compile(rule: Rule, allowlists: Mapping[str, _Allowlist]) -> _Compiled:
    then, approval, rewrite = rule.then, None, None
    if then == "allow":
        reason = f"allowed by rule {rule.id!r}"
    elif then == "deny":
        reason = f"denied by rule {rule.id!r}"
    elif isinstance(then, Deny):
        reason = then.deny
    elif isinstance(then, RequireApproval):
        spec = then.require_approval
        approval = ApprovalRequirement(spec.tier, spec.role, spec.expires_in_s, spec.on_expiry)
        reason = spec.reason or f"approval required by rule {rule.id!r}"
    else:
        assert isinstance(then, Rewrite)
        reason, rewrite = f"rewritten by rule {rule.id!r}", _rewriter(then)
    context = tuple(_context_tests(rule.when))
    tests = context + tuple(_data_tests(rule.when, allowlists))
    return _Compiled(rule.id, rule.kind, context, tests, reason, approval, rewrite, (rule.id,))


# -- the policy set ----------------------------------------------------------------------------


class PolicySet:
    """An immutable, validated, hashed set of ordered rules, and the function that applies them.

    Build one with :meth:`load` (a YAML file), :meth:`from_dict` (the same document as Python
    data) or ``PolicySet(PolicyDocument(...))`` (the pydantic models themselves).
    """

    __slots__ = (
        "_allowlists", "_by_tool", "_document", "_hash", "_limits", "_source", "_toolless"
    )  # fmt: skip
    _allowlists: tuple[_Allowlist, ...]
    _by_tool: dict[str, tuple[_Compiled, ...]]
    _limits: tuple[CompiledLimit, ...]
    _document: PolicyDocument
    _hash: str
    _source: str
    _toolless: tuple[_Compiled, ...]

    def __init__(
        self,
        document: PolicyDocument,
        *,
        source: str = "<python>",
        known_tools: Collection[str] | None = None,
        _data: Any = None,
        _node: Any = None,
    ) -> None:
        _rules.check_document(
            document, source=source, data=_data, node=_node, known_tools=known_tools
        )
        allowlists = {name: _Allowlist(entries) for name, entries in document.allowlists.items()}
        compiled = [(rule.when.tool, _compile(rule, allowlists)) for rule in document.rules]
        tools = {name for names, _ in compiled for name in names or ()}
        by_tool = {
            tool: tuple(c for names, c in compiled if names is None or tool in names)
            for tool in tools
        }
        setattr_ = object.__setattr__
        setattr_(self, "_document", document)
        setattr_(self, "_source", source)
        setattr_(self, "_hash", document.digest())
        setattr_(self, "_by_tool", by_tool)
        setattr_(self, "_toolless", tuple(c for names, c in compiled if names is None))
        setattr_(self, "_allowlists", tuple(allowlists.values()))
        limits = tuple(
            CompiledLimit.build(
                limit,
                _context_tests(limit.when) + _data_tests(limit.when, allowlists),
                document.name,
            )
            for limit in document.limits or ()
        )
        setattr_(self, "_limits", limits)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a PolicySet is immutable")

    @classmethod
    def load(cls, path: str | Path, *, known_tools: Collection[str] | None = None) -> PolicySet:
        """Load a YAML policy file; every problem is a ConfigError naming file and line."""
        path = Path(path)
        data, node = _rules.read_policy_file(path)
        doc = _rules.validate_document(data, source=str(path), node=node)
        return cls(doc, source=str(path), known_tools=known_tools, _data=data, _node=node)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "<python>",
        known_tools: Collection[str] | None = None,
    ) -> PolicySet:
        """The Python API: the file's document as data, ``{"policy": {...}}``."""
        doc = _rules.validate_document(data, source=source)
        return cls(doc, source=source, known_tools=known_tools, _data=data)

    @property
    def name(self) -> str:
        return self._document.name

    @property
    def version(self) -> str:
        return self._document.version

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the validated document."""
        return self._hash

    @property
    def source(self) -> str:
        return self._source

    @property
    def document(self) -> PolicyDocument:
        return self._document

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._document.rules

    def __repr__(self) -> str:
        return f"<PolicySet {self.name} v{self.version} {len(self.rules)} rules {self.hash[:12]}>"

    def evaluate(self, inp: PolicyInput) -> Decision:
        """Decide one proposed call. Never raises: an error inside evaluation denies."""
        rules = self._by_tool.get(inp.tool, self._toolless)
        args = inp.arguments
        applied: list[str] = []
        rule = None
        try:
            while True:
                for rule in rules:
                    for test in rule.tests:
                        if not test(inp, args):
                            break
                    else:
                        if rule.rewrite is None:
                            return self._decide(rule, args, applied)
                        rewritten = rule.rewrite(args)
                        if rewritten is None:
                            continue  # already as the rule wants it
                        applied.append(rule.id)
                        if len(applied) > MAX_REWRITES:
                            reason = f"rewrite loop: more than {MAX_REWRITES} rewrites"
                            return self._deny(args, reason, applied, rewritten=True)
                        args = rewritten
                        break  # re-check the rewritten call from the top
                else:
                    reason = "no rule allows this call"
                    return self._deny(args, reason, applied, rewritten=bool(applied))
        except Exception as exc:  # fail closed: an evaluation error denies and is recorded
            ids, where = applied, ""
            if rule is not None:
                ids, where = [*applied, rule.id], f"rule {rule.id!r}: "
            error = f"{type(exc).__name__}: {exc}"
            reason = f"policy evaluation error: {where}{exc}"
            return self._deny(args, reason, ids, rewritten=args is not inp.arguments, error=error)

    def _decide(self, rule: _Compiled, args: Mapping[str, Any], applied: list[str]) -> Decision:
        ids = (*applied, rule.id) if applied else rule.ids
        return _new_decision(  # a NamedTuple built without its keyword-parsing __new__
            Decision,
            (
                rule.kind,
                args,
                bool(applied),
                rule.reason,
                ids,
                self._hash,
                rule.approval,
                None,
                SCHEMA_VERSION,
            ),
        )

    def _deny(
        self,
        args: Mapping[str, Any],
        reason: str,
        ids: list[str],
        *,
        rewritten: bool,
        error: str | None = None,
    ) -> Decision:
        return Decision("deny", args, rewritten, reason, tuple(ids), self._hash, None, error)

    def limits_for(
        self, inp: PolicyInput, arguments: Mapping[str, Any] | None = None
    ) -> tuple[LimitMatch, ...]:
        """The rate limits this call counts against (``arguments``: the ones to execute, e.g.
        a decision's rewritten arguments). Pure; taking from the counters is the caller's."""
        if not self._limits:
            return ()
        return match_limits(self._limits, inp, inp.arguments if arguments is None else arguments)

    def allowlisted(self, value: Any) -> bool:
        """Is ``value`` on one of the policy's allowlists (matched as destinations are)?"""
        return any(value in allowlist for allowlist in self._allowlists)

    def could_allow(self, inp: PolicyInput) -> bool:
        """Could some call of this tool, in this context, be allowed (perhaps after approval)?

        Policy-first tool routing: the model is shown only the tools this returns True for.
        Argument, destination and provenance conditions are taken as satisfiable; the answer
        is False only when every path to an allow is ruled out by the context alone.
        """
        try:
            for rule in self._by_tool.get(inp.tool, self._toolless):
                if not all(test(inp, inp.arguments) for test in rule.context):
                    continue
                if rule.kind in (_ALLOW, _APPROVAL):
                    return True
                if rule.kind == _DENY and len(rule.tests) == len(rule.context):
                    return False  # this context is always denied here
        except Exception:  # fail closed: hide the tool
            return False
        return False
