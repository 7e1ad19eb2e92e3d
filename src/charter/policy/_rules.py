"""Policy rules as data: the grammar's pydantic models, loading with line numbers, and the
load-time checks across rules. The grammar is documented in :mod:`charter.policy`."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from charter._yaml_lines import locate
from charter.errors import ConfigError
from charter.principals import canonical_principal
from charter.tools import Effect, Risk

SourceKind = Literal[
    "principal", "allowlist", "config", "policy", "tool_output", "retrieved", "model", "memory"
]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "regex", "exists")
RuleKind = Literal["allow", "deny", "rewrite", "require_approval"]
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _as_names(value: Any) -> Any:
    """A name or a list of names; numbers are read as their text (``version: 4``)."""
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ValueError("an empty list matches nothing; leave the field out instead")
    return [_number_text(item) for item in items]


def _sorted_unique(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(value)))


def _number_text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _check_path(path: str) -> str:
    if not _PATH.match(path):
        raise ValueError(f"bad argument path {path!r} (write it as 'customer.address.country')")
    return path


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _principal_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Principals as runs record them: canonical (``Ann`` is ``ann``)."""
    try:
        return _sorted_unique(tuple(canonical_principal(n) for n in names))
    except ConfigError as exc:
        raise ValueError(exc.message) from None


Names = Annotated[tuple[str, ...], BeforeValidator(_as_names), AfterValidator(_sorted_unique)]
PrincipalNames = Annotated[
    tuple[str, ...], BeforeValidator(_as_names), AfterValidator(_principal_names)
]
Effects = Annotated[tuple[Effect, ...], BeforeValidator(_as_names), AfterValidator(_sorted_unique)]
Risks = Annotated[tuple[Risk, ...], BeforeValidator(_as_names), AfterValidator(_sorted_unique)]
Sources = Annotated[
    tuple[SourceKind, ...], BeforeValidator(_as_names), AfterValidator(_sorted_unique)
]
Text = Annotated[str, BeforeValidator(_number_text), Field(min_length=1)]
ArgPath = Annotated[str, AfterValidator(_check_path)]
Bound = int | float | str


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ArgCondition(_Model):
    """Operators on one argument; only the operators given are checked (``eq: null`` is one)."""

    eq: Any = None
    ne: Any = None
    lt: Bound | None = None
    lte: Bound | None = None
    gt: Bound | None = None
    gte: Bound | None = None
    in_: tuple[Any, ...] | None = Field(None, alias="in")
    not_in: tuple[Any, ...] | None = None
    regex: str | None = None
    exists: StrictBool | None = None

    @field_validator("lt", "lte", "gt", "gte", mode="before")
    @classmethod
    def _bound(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError("a bound must be a finite number or a string")
        return value

    @field_validator("in_", "not_in", mode="after")
    @classmethod
    def _members(cls, value: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return None if value is None else tuple(sorted(value, key=_canonical))

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regex {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _some(self) -> ArgCondition:
        if not self.model_fields_set:
            raise ValueError(f"no operator given (use one of: {', '.join(OPERATORS)})")
        return self

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in sorted(self.model_fields_set):
            value = getattr(self, name)
            out["in" if name == "in_" else name] = list(value) if type(value) is tuple else value
        return out


class DestinationCondition(_Model):
    """``{in: LIST}`` or ``{not_in: LIST}``, naming one of the policy's allowlists."""

    in_: str | None = Field(None, alias="in")
    not_in: str | None = None

    @model_validator(mode="after")
    def _one(self) -> DestinationCondition:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError("give exactly one of 'in' or 'not_in' (an allowlist name)")
        return self

    @property
    def allowlist(self) -> str:
        return self.in_ if self.in_ is not None else str(self.not_in)


class ProvenanceCondition(_Model):
    untrusted_in_args: StrictBool | None = None
    untrusted_in_context: StrictBool | None = None
    destination_from: Sources | None = None

    @model_validator(mode="after")
    def _some(self) -> ProvenanceCondition:
        if not self.model_fields_set:
            raise ValueError("give untrusted_in_args, untrusted_in_context or destination_from")
        return self


class When(_Model):
    """What a rule matches. Every field given must match; an empty ``When`` matches all."""

    agent: Names | None = None
    agent_version: Names | None = None
    tenant: Names | None = None
    principal: PrincipalNames | None = None
    trust_tier: Names | None = None
    environment: Names | None = None
    tool: Names | None = None
    effect: Effects | None = None
    risk: Risks | None = None
    roles_any: Names | None = None
    roles_all: Names | None = None
    kill_switch: StrictBool | None = None
    tenant_matches_principal: StrictBool | None = None
    args: dict[ArgPath, ArgCondition] | None = None
    destinations: DestinationCondition | None = None
    provenance: ProvenanceCondition | None = None

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _duration_s(text: str) -> int:
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"bad duration {text!r} (write it as 90s, 30m, 24h or 7d)")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


class ApprovalSpec(_Model):
    tier: Text
    role: Text
    expires_in: str
    on_expiry: Literal["deny", "escalate"] = "deny"
    reason: str | None = None

    @field_validator("expires_in")
    @classmethod
    def _duration(cls, value: str) -> str:
        _duration_s(value)
        return value

    @property
    def expires_in_s(self) -> int:
        return _duration_s(self.expires_in)


class RewriteSpec(_Model):
    set_: dict[ArgPath, Any] | None = Field(None, alias="set")
    cap: dict[ArgPath, int | float] | None = None

    @field_validator("cap", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for path, bound in value.items():
                ok = isinstance(bound, int | float) and not isinstance(bound, bool)
                if not ok or not math.isfinite(bound):
                    raise ValueError(f"cap for {path!r} must be a finite number, not {bound!r}")
        return value

    @model_validator(mode="after")
    def _some(self) -> RewriteSpec:
        if not self.set_ and not self.cap:
            raise ValueError("a rewrite needs 'set' or 'cap'")
        return self


class Deny(_Model):
    deny: Text


class Rewrite(_Model):
    rewrite: RewriteSpec


class RequireApproval(_Model):
    require_approval: ApprovalSpec


_THEN_KEYS = ("deny", "rewrite", "require_approval")
_THEN_HELP = "write 'allow', 'deny', {deny: reason}, {rewrite: ...} or {require_approval: ...}"


def _then_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "word"
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))  # type: ignore[no-any-return]
    for tag, model in (("deny", Deny), ("rewrite", Rewrite), ("require_approval", RequireApproval)):
        if isinstance(value, model):
            return tag
    return None


Then = Annotated[
    Annotated[Literal["allow", "deny"], Tag("word")]
    | Annotated[Deny, Tag("deny")]
    | Annotated[Rewrite, Tag("rewrite")]
    | Annotated[RequireApproval, Tag("require_approval")],
    Discriminator(_then_tag),
]


class Rule(_Model):
    """One rule: ``then`` applies to the calls that match ``when``."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    description: str | None = None
    when: When = When()
    then: Then

    @field_validator("then", mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        tag = _then_tag(value)
        if tag not in ("word", *_THEN_KEYS) or (tag == "word" and value not in ("allow", "deny")):
            raise ValueError(f"unknown outcome {value!r}; {_THEN_HELP}")
        return value

    @property
    def kind(self) -> RuleKind:
        then = self.then
        if isinstance(then, str):
            return then
        if isinstance(then, Deny):
            return "deny"
        return "rewrite" if isinstance(then, Rewrite) else "require_approval"

    @property
    def terminal(self) -> bool:
        return self.kind != "rewrite"


LimitScope = Literal["agent", "tenant", "tool", "principal"]
LIMIT_SCOPES: tuple[str, ...] = get_args(LimitScope)


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else [value]


def _positive_usd(value: Any) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"a spending cap must be a positive number of US dollars, not {value!r}")
    return value


Scopes = Annotated[
    tuple[LimitScope, ...], BeforeValidator(_as_list), AfterValidator(_sorted_unique)
]
Usd = Annotated[float, BeforeValidator(_positive_usd)]


class Limit(_Model):
    """A rate limit: at most ``max`` matching calls per ``window``, counted per ``per`` scope.

    ``window`` is a duration (``30s``, ``1m``, ``1h``, ``24h``, ``7d``; fixed windows, aligned
    to multiples of the duration since the epoch) or ``run`` (per run). ``per`` lists the parts
    of the call that get a counter of their own (agent, tenant, tool, principal); without it
    one counter serves every matching call. A call over the limit is denied.
    """

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    description: str | None = None
    when: When = When()
    per: Scopes = ()
    max: int = Field(gt=0, strict=True)
    window: str

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value != "run":
            try:
                _duration_s(value)
            except ValueError:
                raise ValueError(
                    f"bad window {value!r} (write 'run', or a duration: 30s, 1m, 1h, 24h, 7d)"
                ) from None
        return value

    @property
    def window_s(self) -> int | None:
        """The window's length in seconds; None for ``run``."""
        return None if self.window == "run" else _duration_s(self.window)


class Spending(_Model):
    """Daily spending caps in US dollars (a day is a UTC calendar day by the store's clock)."""

    per_agent_per_day_usd: Usd | None = None
    per_tenant_per_day_usd: Usd | None = None

    @model_validator(mode="after")
    def _some(self) -> Spending:
        if not self.model_fields_set:
            raise ValueError("give per_agent_per_day_usd or per_tenant_per_day_usd")
        return self


class PolicyDocument(_Model):
    """A validated policy: what a file's ``policy`` mapping holds."""

    name: Text
    version: Text = "1"
    description: str | None = None
    allowlists: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")],
        tuple[Annotated[str, Field(min_length=1)], ...],
    ] = {}
    rules: tuple[Rule, ...] = Field(min_length=1)
    limits: tuple[Limit, ...] | None = None
    """Rate limits; None (not an empty tuple) when absent, so that hashes stay as they were."""
    spending: Spending | None = None

    @field_validator("limits", mode="after")
    @classmethod
    def _no_empty_limits(cls, value: tuple[Limit, ...] | None) -> tuple[Limit, ...] | None:
        return value or None

    @field_validator("allowlists", mode="after")
    @classmethod
    def _normalise(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return {
            k: tuple(sorted({e.strip().lower().rstrip(".") for e in v})) for k, v in value.items()
        }

    def canonical_json(self) -> str:
        """The document as canonical JSON: key order and YAML layout do not change it."""
        return _canonical(self.model_dump(mode="json", by_alias=True, exclude_none=True))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class _PolicyFile(_Model):
    policy: PolicyDocument


# -- loading with line numbers ---------------------------------------------------------------


def read_policy_file(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse YAML keeping the node tree (for line numbers); duplicate keys are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such policy file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the policy file: {exc.strerror}") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        _reject_duplicate_keys(node, str(path))
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return data, node


def _reject_duplicate_keys(node: yaml.Node | None, where: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    line = key.start_mark.line + 1
                    raise ConfigError(f"{where}:{line}: duplicate key {key.value!r}")
                seen.add(key.value)
            _reject_duplicate_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, where)


def _rule_label(data: Any, index: int, section: str = "rules") -> str:
    try:
        rule_id = data["policy"][section][index]["id"]
    except (KeyError, IndexError, TypeError):
        rule_id = None
    kind = "rule" if section == "rules" else "limit"
    return f"{kind} {rule_id!r}" if isinstance(rule_id, str) else f"{section}[{index}]"


def _problem(err: Any, rel: list[Any]) -> str:
    where = ".".join(str(p) for p in rel)
    kind = err["type"]
    if kind == "extra_forbidden":
        if len(rel) >= 3 and rel[-3] == "args":
            ops = ", ".join(OPERATORS)
            return f"unknown operator {rel[-1]!r} for argument {rel[-2]!r} (use one of: {ops})"
        if len(rel) >= 2 and rel[-2] == "destinations":
            return f"unknown operator {rel[-1]!r} in destinations (use 'in' or 'not_in')"
        return f"unknown field {where!r}"
    if kind == "missing":
        return f"missing field {'.'.join(str(p) for p in [*rel, err['loc'][-1]])!r}"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def describe_errors(
    exc: ValidationError, data: Any, node: yaml.Node | None, source: str
) -> list[str]:
    """One ``source:line: rule 'id': problem`` line per pydantic error."""
    errors = exc.errors()
    inner = [tuple(e["loc"]) for e in errors]
    lines = []
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(o[: len(loc)] == loc != o for o in inner):
            continue  # a list whose items failed is also "too short": say it once
        path, line = locate(data, node, loc)
        where = f"{source}:{line}" if line is not None else source
        if path[:2] in (["policy", "rules"], ["policy", "limits"]) and len(path) >= 3:
            label = _rule_label(data, path[2], path[1])
            lines.append(f"{where}: {label}: {_problem(err, path[3:])}")
        else:
            lines.append(f"{where}: {_problem(err, path)}")
    return lines


def validate_document(data: Any, *, source: str, node: yaml.Node | None = None) -> PolicyDocument:
    """The pydantic check of a whole file's data (``{"policy": {...}}``)."""
    try:
        return _PolicyFile.model_validate(data).policy
    except ValidationError as exc:
        raise ConfigError("\n".join(describe_errors(exc, data, node, source))) from None


# -- static checks ---------------------------------------------------------------------------

# fields where a narrower list in a later rule is implied by a wider one in an earlier rule
_NAME_FIELDS: tuple[str, ...] = ("agent", "agent_version", "tenant", "principal", "trust_tier")
_NAME_FIELDS += ("environment", "tool", "effect", "risk", "roles_any")
_EXACT_FIELDS = ("kill_switch", "tenant_matches_principal", "destinations", "provenance")


def subsumes(first: When, later: When) -> bool:
    """True when every call that matches ``later`` also matches ``first`` (conservative)."""
    for name in _NAME_FIELDS:
        wide = getattr(first, name)
        if wide is not None:
            narrow = getattr(later, name)
            if narrow is None or not set(narrow) <= set(wide):
                return False
    if first.roles_all and not (later.roles_all and set(first.roles_all) <= set(later.roles_all)):
        return False
    for name in _EXACT_FIELDS:
        value = getattr(first, name)
        if value is not None and value != getattr(later, name):
            return False
    if first.args:
        later_args = later.args or {}
        for path, cond in first.args.items():
            other = later_args.get(path)
            if other is None or other.model_dump() != cond.model_dump():
                return False
    return True


def check_document(
    doc: PolicyDocument,
    *,
    source: str,
    data: Any = None,
    node: yaml.Node | None = None,
    known_tools: Collection[str] | None = None,
) -> None:
    """Checks across rules and limits: ids, tools, allowlists, reachability. Raises one
    ConfigError."""
    problems = [("rules", *p) for p in _problems(doc, known_tools)]
    problems += [("limits", *p) for p in _limit_problems(doc, known_tools)]
    if not problems:
        return
    lines = []
    for section, index, field, message in problems:
        loc = ("policy", section, index, *field)
        line = locate(data, node, loc)[1] if node is not None else None
        where = f"{source}:{line}" if line is not None else source
        if section == "rules":
            lines.append(f"{where}: rule {doc.rules[index].id!r}: {message}")
        else:
            lines.append(f"{where}: limit {(doc.limits or ())[index].id!r}: {message}")
    raise ConfigError("\n".join(lines))


def _limit_problems(
    doc: PolicyDocument, known_tools: Collection[str] | None
) -> Iterator[tuple[int, tuple[str, ...], str]]:
    """Limit ids are unique among rules and limits (a denial names one); tools and
    allowlists exist."""
    rule_ids = {rule.id for rule in doc.rules}
    first_seen: dict[str, int] = {}
    for index, limit in enumerate(doc.limits or ()):
        if limit.id in rule_ids:
            yield index, ("id",), "a rule has the same id (a denial must name one of them)"
        elif limit.id in first_seen:
            first = first_seen[limit.id]
            yield index, ("id",), f"duplicate limit id (first used by limits[{first}])"
        first_seen.setdefault(limit.id, index)
        when = limit.when
        if known_tools is not None and when.tool is not None:
            for name in when.tool:
                if name not in known_tools:
                    yield index, ("when", "tool"), f"unknown tool {name!r}"
        if when.destinations is not None and when.destinations.allowlist not in doc.allowlists:
            where = ("when", "destinations")
            yield index, where, f"unknown allowlist {when.destinations.allowlist!r}"


def _problems(
    doc: PolicyDocument, known_tools: Collection[str] | None
) -> Iterator[tuple[int, tuple[str, ...], str]]:
    first_seen: dict[str, int] = {}
    for index, rule in enumerate(doc.rules):
        if rule.id in first_seen:
            yield index, ("id",), f"duplicate rule id (first used by rules[{first_seen[rule.id]}])"
        first_seen.setdefault(rule.id, index)
        when = rule.when
        if known_tools is not None and when.tool is not None:
            for name in when.tool:
                if name not in known_tools:
                    yield index, ("when", "tool"), f"unknown tool {name!r}"
        if when.destinations is not None and when.destinations.allowlist not in doc.allowlists:
            yield (
                index,
                ("when", "destinations"),
                f"unknown allowlist {when.destinations.allowlist!r}",
            )
        shadow = _shadowing(doc.rules[:index], rule)
        if shadow is not None:
            yield index, (), shadow


def _shadowing(earlier: tuple[Rule, ...], rule: Rule) -> str | None:
    mine = rule.when.canonical()
    for other in earlier:
        if not other.terminal or not subsumes(other.when, rule.when):
            continue
        if other.when.canonical() == mine:
            if rule.terminal and _outcome(rule) != _outcome(other):
                return f"contradicts rule {other.id!r}: same conditions, different outcome"
            return f"unreachable: rule {other.id!r} has the same conditions and decides first"
        if not other.when.canonical():
            return f"unreachable: rule {other.id!r} matches every call and decides first"
        return f"unreachable: rule {other.id!r} matches every call this rule matches"
    return None


def _outcome(rule: Rule) -> str:
    then = rule.then
    return _canonical(then if isinstance(then, str) else then.model_dump(mode="json"))
