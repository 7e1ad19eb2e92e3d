"""Charter's policy engine: deterministic rules outside the model.

A policy set is data: a YAML file (or the same document as Python data, or the pydantic models
built in Python) of ordered rules, validated and hashed at load. :meth:`PolicySet.evaluate`
turns a :class:`PolicyInput` (the proposed call and its context) into a :class:`Decision`
(allow, deny, or require approval; possibly with rewritten arguments), which records the
policy set's hash and the ids of the rules that decided it. Nothing here does I/O after load.

A policy file is one ``policy`` mapping of named allowlists and ordered rules::

    policy:
      name: support-desk
      version: "4"                      # a string; a bare number is read as one
      description: optional text
      allowlists:                       # name -> entries (case-insensitive)
        customer_domains: [example.com, "*.example.org"]
      rules:
        - id: refund-small              # unique; letters, digits, - _ . :
          description: optional text
          when: {tool: refund, args: {amount: {lte: 50}}}
          then: allow

``when`` (every field optional, all given must match; a list means "any of"; ``when: {}``
matches every call):

- ``agent``, ``agent_version``, ``tenant``, ``principal``, ``trust_tier``, ``environment``,
  ``tool``: a name or a list of names; ``effect``: read | write | control;
  ``risk``: low | medium | high | critical.
- ``roles_any`` / ``roles_all``: the principal holds at least one / every role listed.
- ``kill_switch: true|false``: the input's kill-switch flag.
- ``tenant_matches_principal: true|false``: the principal belongs to the run's tenant.
- ``args``: a mapping from a dotted path into the arguments (``customer.address.country``;
  a numeric segment indexes a list) to operators, all of which must hold: ``eq``, ``ne``,
  ``lt``, ``lte``, ``gt``, ``gte`` (numbers, or strings compared as strings), ``in`` and
  ``not_in`` (lists), ``regex`` (the whole string must match), ``exists: true|false``.
  A missing argument equals nothing: ``eq``, ``in``, orderings and ``regex`` are false,
  ``ne`` and ``not_in`` true. An ordering on a value of another type, or a regex on a
  non-string, is an evaluation error: the call is denied (fail closed).
- ``destinations: {in: LIST}`` (every destination value is on the allowlist) or
  ``{not_in: LIST}`` (at least one is not). Destination values are the arguments the tool
  contract declares as destinations (after a rewrite, re-read from the new arguments); an
  entry matches a value equal to it, an e-mail address or URL whose host equals it, and
  ``*.example.com`` matches any host under example.com. A value whose host is ambiguous
  (whitespace, ``,``, ``;``, ``<``, ``>``, ``\\``: several recipients, or a URL that clients
  parse differently) matches only an entry equal to the whole value.
- ``provenance``: ``untrusted_in_args: true|false``, ``untrusted_in_context: true|false``,
  ``destination_from: [kinds]`` (every destination value came only from those source kinds,
  one of ``SOURCE_KINDS``; a value of unknown origin never qualifies).

``then``: ``allow`` | ``deny`` | ``{deny: reason}`` |
``{rewrite: {set: {path: value}, cap: {path: max_number}}}`` |
``{require_approval: {tier, role, expires_in: 30m|24h|7d|90s, on_expiry: deny|escalate,
reason}}``.

Rate limits and daily spending caps sit beside the rules (enforced by the run loop inside the
decision: a call over a limit, or past a cap, is denied; see ``docs/architecture.md``)::

    limits:
      - id: refunds-per-hour            # unique among rules and limits
        when: {tool: refund}            # the same conditions rules use
        per: [tenant, tool]             # a counter per scope: agent, tenant, tool, principal
        max: 20
        window: 1h                      # 30s, 1m, 1h, 24h, 7d (fixed windows) or run
    spending:                           # US dollars per UTC day, by the store's clock
      per_agent_per_day_usd: 50
      per_tenant_per_day_usd: 200

:meth:`PolicySet.limits_for` returns the limits a call counts against (pure; counting is I/O).

:func:`who_can` reads the rules symbolically: for agents and a selector (a tool, an effect, a
risk), every path to an allow or an approval, its conditions and what could decide first.

Load-time checks (each a :class:`~charter.errors.ConfigError` naming file and line): unknown
fields and operators, bad values and durations, duplicate keys and rule ids, unknown tools
(when the known tools are given), unknown allowlists, and unreachable rules: a rule that an
earlier terminal rule always decides first (``when: {}``, the same ``when``, or a ``when`` that
every call matching this rule also matches). Two rules with the same ``when`` and different
terminal outcomes are reported as a contradiction. Priority is the order in the file.
"""

from charter.policy._evaluate import (
    MAX_REWRITES,
    ApprovalRequirement,
    Decision,
    PolicyInput,
    PolicySet,
)
from charter.policy._file import PolicyFile
from charter.policy._limits import LimitMatch
from charter.policy._rules import (
    LIMIT_SCOPES,
    OPERATORS,
    SOURCE_KINDS,
    ApprovalSpec,
    ArgCondition,
    Deny,
    DestinationCondition,
    Limit,
    PolicyDocument,
    ProvenanceCondition,
    RequireApproval,
    Rewrite,
    RewriteSpec,
    Rule,
    Spending,
    When,
)
from charter.policy._whocan import WhoCanAnswer, WhoCanPath, parse_selector, who_can

__all__ = [
    "LIMIT_SCOPES",
    "MAX_REWRITES",
    "OPERATORS",
    "SOURCE_KINDS",
    "ApprovalRequirement",
    "ApprovalSpec",
    "ArgCondition",
    "Decision",
    "Deny",
    "DestinationCondition",
    "Limit",
    "LimitMatch",
    "PolicyDocument",
    "PolicyFile",
    "PolicyInput",
    "PolicySet",
    "ProvenanceCondition",
    "RequireApproval",
    "Rewrite",
    "RewriteSpec",
    "Rule",
    "Spending",
    "When",
    "WhoCanAnswer",
    "WhoCanPath",
    "parse_selector",
    "who_can",
]
