"""``who-can``: which agents could execute a tool (or any tool of an effect or risk), and how.

A symbolic walk over a policy's rules for one agent and one of its tools: the agent's name,
version and trust tier and the tool's name, effect and risk are known (and, when asked, the
tenant and environment); everything else (principal, roles, arguments, destinations,
provenance, the kill switch) is a condition. Walking the rules in order, as
:meth:`PolicySet.evaluate` would, gives every *path* to execution: an ``allow`` or
``require_approval`` rule that can match, the conditions it needs, the earlier ``deny`` rules
that could decide first under some conditions, and the earlier rewrites that could change the
call first. Rules that cannot match this agent and tool are skipped; a rule that an earlier
terminal rule always decides first is not a path; an unconditional terminal rule ends the walk.

The analysis is conservative where it must guess: argument conditions are those of the call
as finally checked (after any rewrite), and a deny is left out of a path's pre-emptors only
when the two rules' conditions provably cannot hold together. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, get_args

from charter.errors import ConfigError
from charter.policy._evaluate import PolicySet
from charter.policy._rules import Deny, RequireApproval, Rewrite, Rule, When, subsumes
from charter.policy._symbolic import describe, disjoint, show
from charter.tools import Effect, Risk

RISKS: tuple[str, ...] = get_args(Risk)
EFFECTS = ("read", "write", "control")
PathOutcome = Literal["allow", "require_approval"]


# -- what is asked ------------------------------------------------------------------------------


class ToolFacts(Protocol):
    """What who-can reads from a tool contract (a :class:`charter.tools.Tool` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def effect(self) -> Effect: ...
    @property
    def risk(self) -> str: ...


class AgentFacts(Protocol):
    """What who-can reads from an agent (a :class:`charter.agents.Agent` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def trust_tier(self) -> str: ...
    @property
    def tools(self) -> Sequence[ToolFacts]: ...
    @property
    def policy(self) -> PolicySet | None: ...


@dataclass(frozen=True, kw_only=True)
class Selector:
    """Which tools are asked about; every part given must hold (a tool, effects, risks)."""

    text: str
    tool: str | None = None
    effects: frozenset[str] | None = None
    risks: frozenset[str] | None = None

    def matches(self, tool: ToolFacts) -> bool:
        return (
            (self.tool is None or tool.name == self.tool)
            and (self.effects is None or tool.effect in self.effects)
            and (self.risks is None or tool.risk in self.risks)
        )


SELECTOR_HELP = (
    "a tool name (refund, or tool:NAME), an effect (read, write, control), a risk "
    "(risk:critical; risk:high+ for high or above), or several joined by commas, all of "
    "which must hold (write,risk:high+)"
)


def parse_selector(text: str) -> Selector:
    """Read ``TOOL_OR_EFFECT`` (see ``SELECTOR_HELP``); a bad one is a ConfigError."""
    tool: str | None = None
    effects: frozenset[str] | None = None
    risks: frozenset[str] | None = None
    terms = [t.strip() for t in text.split(",")]
    if not text.strip() or not all(terms):
        raise ConfigError(f"bad selector {text!r}: an empty term", hint=f"give {SELECTOR_HELP}")
    for term in terms:
        kind, _, value = term.partition(":")
        if not value:
            kind, value = ("effect", term) if term in EFFECTS else ("tool", term)
        if kind == "tool" and tool in (None, value):
            tool = value
        elif kind == "effect" and value in EFFECTS:
            effects = (effects or frozenset(EFFECTS)) & {value}
        elif kind == "risk" and value.rstrip("+") in RISKS:
            level = RISKS.index(value.rstrip("+"))
            wanted = RISKS[level:] if value.endswith("+") else (value,)
            risks = (risks if risks is not None else frozenset(RISKS)) & set(wanted)
        else:
            raise ConfigError(f"bad selector term {term!r}", hint=f"give {SELECTOR_HELP}")
    return Selector(text=text, tool=tool, effects=effects, risks=risks)


# -- what is answered -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RuleRef:
    """An earlier rule on a path: a rule that could decide first, or a rewrite that could apply.

    ``kind`` is the rule's outcome (allow, deny, require_approval, rewrite); ``action`` says
    what it does in words (a deny's reason, an approval's role, a rewrite's new values)."""

    rule_id: str
    kind: str
    conditions: tuple[str, ...]
    action: str

    def text(self, *, brief: bool = False) -> str:
        """``rule (action if conditions)``; ``brief`` names the outcome instead of the action."""
        what = self.kind.replace("require_approval", "approval") if brief else self.action
        when = f" if {'; '.join(self.conditions)}" if self.conditions else " always"
        return f"{self.rule_id} ({what}{when})"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule_id, "kind": self.kind, "conditions": list(self.conditions),
                "action": self.action}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Approval:
    tier: str
    role: str
    expires_in: str
    on_expiry: str

    def text(self) -> str:
        return f"approval by {self.role} (tier {self.tier}, expires in {self.expires_in})"


class _Target(TypedDict):
    agent: str
    agent_version: str
    trust_tier: str
    tool: str
    effect: Effect
    risk: str


@dataclass(frozen=True, kw_only=True)
class WhoCanPath:
    """One way for an agent to execute a tool: the deciding rule and what must hold."""

    agent: str
    agent_version: str
    trust_tier: str
    tool: str
    effect: Effect
    risk: str
    outcome: PathOutcome
    rule_id: str | None
    note: str | None = None  # "no policy: unrestricted", "control tool: not governed"
    conditions: tuple[str, ...] = ()
    when: dict[str, Any] = field(default_factory=dict)  # the conditions as policy data
    approval: Approval | None = None
    pre_empted_by: tuple[RuleRef, ...] = ()
    rewrites: tuple[RuleRef, ...] = ()
    policy: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "agent_version": self.agent_version,
            "trust_tier": self.trust_tier,
            "tool": self.tool,
            "effect": self.effect,
            "risk": self.risk,
            "outcome": self.outcome,
            "rule": self.rule_id,
            "note": self.note,
            "conditions": list(self.conditions),
            "when": self.when,
            "approval": None if self.approval is None else vars(self.approval),
            "pre_empted_by": [r.to_dict() for r in self.pre_empted_by],
            "rewrites": [r.to_dict() for r in self.rewrites],
            "policy": self.policy,
        }


@dataclass(frozen=True, kw_only=True)
class Blocked:
    """An agent that has a matching tool but no path to executing it, and why."""

    agent: str
    agent_version: str
    tool: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return vars(self).copy()


@dataclass(frozen=True, kw_only=True)
class WhoCanAnswer:
    selector: str
    tenant: str | None
    environment: str | None
    agents: int
    paths: tuple[WhoCanPath, ...]
    blocked: tuple[Blocked, ...]

    @property
    def nobody(self) -> bool:
        return not self.paths

    def to_dict(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "tenant": self.tenant,
            "environment": self.environment,
            "agents": self.agents,
            "nobody": self.nobody,
            "paths": [p.to_dict() for p in self.paths],
            "blocked": [b.to_dict() for b in self.blocked],
        }


# -- the analysis ---------------------------------------------------------------------------------


def who_can(
    selector: Selector | str,
    agents: Iterable[AgentFacts],
    *,
    tenant: str | None = None,
    environment: str | None = None,
) -> WhoCanAnswer:
    """Every path by which one of ``agents`` could execute a tool that ``selector`` matches.

    ``tenant`` / ``environment`` keep only paths whose conditions admit that value (and drop
    denies that cannot apply there).
    """
    sel = parse_selector(selector) if isinstance(selector, str) else selector
    paths: list[WhoCanPath] = []
    blocked: list[Blocked] = []
    count = 0
    for agent in agents:
        count += 1
        for tool in agent.tools:
            if not sel.matches(tool):
                continue
            found, reason = _tool_paths(agent, tool, tenant=tenant, environment=environment)
            paths.extend(found)
            if not found:
                blocked.append(Blocked(agent=agent.name, agent_version=agent.version,
                                       tool=tool.name, reason=reason))  # fmt: skip
    return WhoCanAnswer(selector=sel.text, tenant=tenant, environment=environment,
                        agents=count, paths=tuple(paths), blocked=tuple(blocked))  # fmt: skip


def _tool_paths(
    agent: AgentFacts, tool: ToolFacts, *, tenant: str | None, environment: str | None
) -> tuple[list[WhoCanPath], str]:
    base = _Target(agent=agent.name, agent_version=agent.version, trust_tier=agent.trust_tier,
                   tool=tool.name, effect=tool.effect, risk=tool.risk)  # fmt: skip
    if tool.effect == "control":
        note = "control tool: not governed by policy"
        return [WhoCanPath(**base, outcome="allow", rule_id=None, note=note)], ""
    policy = agent.policy
    if policy is None:
        note = "no policy: unrestricted"
        return [WhoCanPath(**base, outcome="allow", rule_id=None, note=note)], ""
    fixed = {name: str(value) for name, value in base.items()}
    if tenant is not None:
        fixed["tenant"] = tenant
    if environment is not None:
        fixed["environment"] = environment
    return _walk(policy, fixed, base)


@dataclass(frozen=True)
class _Seen:
    when: When  # specialised to this agent and tool
    ref: RuleRef


def _walk(policy: PolicySet, fixed: dict[str, str], base: _Target) -> tuple[list[WhoCanPath], str]:
    paths: list[WhoCanPath] = []
    earlier: list[_Seen] = []  # terminal rules already passed: they decide first when they match
    rewrites: list[_Seen] = []
    allowlists = policy.document.allowlists
    for rule in policy.rules:
        if not _applies(rule.when, fixed):
            continue
        when = rule.when.model_copy(update={k: (v,) for k, v in fixed.items()})
        dynamic = {k: v for k, v in when.canonical().items() if k not in fixed}
        seen = _Seen(when, RuleRef(rule_id=rule.id, kind=rule.kind,
                                   conditions=describe(when, fixed, allowlists),
                                   action=_action(rule)))  # fmt: skip
        if rule.kind == "rewrite":
            rewrites.append(seen)
            continue
        if any(subsumes(e.when, when) for e in earlier):
            continue  # an earlier rule always decides first
        if rule.kind == "deny" and not dynamic:
            return paths, f"always denied by rule {rule.id!r}"
        if rule.kind != "deny":
            paths.append(
                WhoCanPath(
                    **base,
                    outcome="allow" if rule.kind == "allow" else "require_approval",
                    rule_id=rule.id,
                    conditions=seen.ref.conditions,
                    when=dynamic,
                    approval=_approval(rule),
                    pre_empted_by=tuple(e.ref for e in earlier if not disjoint(e.when, when)),
                    rewrites=tuple(
                        r.ref for r in rewrites if not disjoint(r.when, when, data=False)
                    ),
                    policy=f"{policy.name} v{policy.version}",
                )
            )
            if not dynamic:
                break  # unconditional: nothing after it is reached
        earlier.append(seen)
    return paths, "no rule allows it (default deny)"


def _applies(when: When, fixed: dict[str, str]) -> bool:
    for name, value in fixed.items():
        allowed = getattr(when, name)
        if allowed is not None and value not in allowed:
            return False
    return True


def _approval(rule: Rule) -> Approval | None:
    if not isinstance(rule.then, RequireApproval):
        return None
    spec = rule.then.require_approval
    return Approval(tier=spec.tier, role=spec.role, expires_in=spec.expires_in,
                    on_expiry=spec.on_expiry)  # fmt: skip


def _action(rule: Rule) -> str:
    then = rule.then
    if isinstance(then, Deny):
        return f"deny: {then.deny}"
    if isinstance(then, RequireApproval):
        spec = then.require_approval
        return f"requires approval by {spec.role} (tier {spec.tier})"
    return _rewrite_text(then) if isinstance(then, Rewrite) else str(then)


def _rewrite_text(then: Rewrite) -> str:
    spec = then.rewrite
    parts = [f"{k}={show(v)}" for k, v in (spec.set_ or {}).items()]
    parts += [f"{k} capped at {show(v)}" for k, v in (spec.cap or {}).items()]
    return f"rewrites {', '.join(parts)}, then re-checks"


__all__ = [
    "SELECTOR_HELP",
    "AgentFacts",
    "Approval",
    "Blocked",
    "RuleRef",
    "Selector",
    "ToolFacts",
    "WhoCanAnswer",
    "WhoCanPath",
    "parse_selector",
    "who_can",
]
