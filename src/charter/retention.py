"""Retention: drop old payloads from finished runs, keep each event's skeleton and the chain.

Three kinds of payload, each with a time to live (TTL), by default and per tenant::

    retention:
      default: {prompts: 7d, tool_payloads: 30d, decisions: forever}
      tenants:
        acme: {prompts: 1d}          # the other kinds: acme keeps the default

* ``prompts``: the run's input (``run_started.input``), messages, the model's text (and the
  excerpt of an unusable answer, ``model_call_failed.excerpt``) and proposed arguments, the
  final output;
* ``tool_payloads``: call arguments (proposed, rewritten, held for approval), tool outputs,
  tool error messages;
* ``decisions``: a policy decision's reason, an approval's note. Omitted means ``forever``.

A removed field becomes ``"[removed]"`` (or ``null``/``{}`` where the field needs that: the
table is :data:`charter.events.REMOVABLE`); ids, call ids, idempotency keys, tools, steps,
usage, costs, outcomes and rule ids stay, so stats and timelines still work. The stored
payload then carries ``{"$removed": {"at", "fields", "digests"}}``: each removed field's
digest, which is how the hash chain covers it, so ``charter audit verify`` still passes and
still covers every field left (a schema-1 event gets the old marker, ``{"digest", "at",
"fields"}``, whose skeleton the chain does not cover). Only runs in a final status are
touched: the engine never reads their payloads again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from charter.clock import wall_clock
from charter.errors import ConfigError
from charter.events import (
    REMOVABLE,
    REMOVED as REMOVED,
    REMOVED_KEY,
    SCHEMA_VERSION,
    find_leaves,
    leaf_digest,
    parse_payload,
    payload_digest,
)
from charter.store import AuditEntry, Store

_SWEEP_LIMIT = 10_000_000  # one pass; batching by key is future work
KINDS = ("prompts", "tool_payloads", "decisions")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_ttl(text: str) -> float | None:
    """``30m``, ``12h``, ``7d``, ``2w`` in seconds; ``forever`` is None."""
    text = str(text).strip().lower()
    if text == "forever":
        return None
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"TTL {text!r} is not a duration: write 30m, 12h, 7d, 2w or forever")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    """TTLs in seconds by kind (None: forever), by default and per tenant."""

    default: dict[str, float | None] = field(default_factory=dict)
    tenants: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "retention") -> RetentionPolicy:
        if not isinstance(data, dict) or set(data) != {"retention"}:
            raise ConfigError(f"{source}: expected one top-level key 'retention'")
        body = data["retention"] or {}
        unknown = set(body) - {"default", "tenants"}
        if unknown:
            raise ConfigError(f"{source}: unknown field {sorted(unknown)[0]!r}")
        tenants = body.get("tenants") or {}
        return cls(
            default=_kinds(body.get("default") or {}, f"{source}: default"),
            tenants={t: _kinds(v or {}, f"{source}: tenants.{t}") for t, v in tenants.items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> RetentionPolicy:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such retention file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    def override(self, ttls: Sequence[str], *, source: str = "--ttl") -> RetentionPolicy:
        """This policy with ``[TENANT:]KIND=TTL`` settings on top, each checked
        (``charter retention apply --ttl``); ``source`` names them in errors."""
        default = dict(self.default)
        tenants = {t: dict(kinds) for t, kinds in self.tenants.items()}
        for item in ttls:
            scope, _, ttl = item.partition("=")
            tenant, _, kind = scope.rpartition(":")
            if not ttl or not kind:
                raise ConfigError(
                    f"{source} {item!r}: write KIND=TTL or TENANT:KIND=TTL, e.g. prompts=7d"
                )
            probe = RetentionPolicy.from_dict(
                {"retention": {"default": {kind: ttl}}}, source=source
            )
            if tenant:
                tenants.setdefault(tenant, {})[kind] = parse_ttl(ttl)
            else:
                default.update(probe.default)
        return RetentionPolicy(default=default, tenants=tenants)

    @property
    def empty(self) -> bool:
        """No TTL at all: applying it would remove nothing."""
        return not self.default and not self.tenants

    def ttl(self, kind: str, tenant: str | None) -> float | None:
        if tenant is not None and kind in self.tenants.get(tenant, {}):
            return self.tenants[tenant][kind]
        return self.default.get(kind)


def _kinds(data: Any, where: str) -> dict[str, float | None]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of kind to TTL")
    for kind in data:
        if kind not in KINDS:
            raise ConfigError(f"{where}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    return {kind: parse_ttl(ttl) for kind, ttl in data.items()}


@dataclass(frozen=True, slots=True)
class RetentionReport:
    dry_run: bool
    removed: dict[str, int]
    """Payloads removed (or, in a dry run, that would be) per ``tenant/kind``."""

    @property
    def total(self) -> int:
        return sum(self.removed.values())

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "total": self.total, "removed": self.removed}


def strip(
    payload: str,
    type_: str,
    kinds: tuple[str, ...],
    *,
    now: float,
    schema_version: int = SCHEMA_VERSION,
) -> str | None:
    """The payload with the kinds' fields removed and the marker added; None if nothing to do.

    The marker of a schema-2 event keeps each removed field's digest (a second pass adds its
    own); a schema-1 event's keeps the original payload's digest, as retention always did.
    """
    data = parse_payload(payload)
    old = data.pop(REMOVED_KEY, None) or {}
    fields: list[str] = list(old.get("fields", ()))
    digests: dict[str, str] = dict(old.get("digests", {}))
    for kind in kinds:
        for path, placeholder in REMOVABLE[kind].get(type_, ()):
            for parent, key, found in find_leaves(data, path):
                if parent[key] in (placeholder, REMOVED):
                    continue
                digests[found] = leaf_digest(parent[key])
                parent[key] = placeholder
                fields.append(found)
    if len(fields) == len(old.get("fields", ())):
        return None
    if schema_version == 1:
        digest = old.get("digest") or payload_digest(payload)
        data[REMOVED_KEY] = {"digest": digest, "at": now, "fields": fields}
    else:
        data[REMOVED_KEY] = {"at": now, "fields": fields, "digests": digests}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


async def apply(
    store: Store,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    now: float | None = None,
    actor: str | None = None,
) -> RetentionReport:
    """Remove (or count, ``dry_run``) every expired payload the policy names; a run that
    removed anything is recorded in the audit log with its ``actor``."""
    now = wall_clock() if now is None else now
    removed: dict[str, int] = {}
    overridden = sorted(policy.tenants)
    for kind in KINDS:
        types = list(REMOVABLE[kind])
        scopes: list[tuple[str | None, list[str]]] = [(None, overridden)]
        scopes += [(t, []) for t in overridden]
        for tenant, skip in scopes:
            ttl = policy.ttl(kind, tenant)
            if ttl is None:
                continue
            await _sweep(store, kind, types, now - ttl, tenant, skip, now, dry_run, removed)
    if removed and not dry_run:
        entry = AuditEntry("retention_applied", None, actor, {"removed": removed})
        await store.audit([entry])
    return RetentionReport(dry_run=dry_run, removed=removed)


async def _sweep(
    store: Store, kind: str, types: list[str], before: float, tenant: str | None,
    skip: list[str], now: float, dry_run: bool, removed: dict[str, int],
) -> None:  # fmt: skip
    rows = await store.expired_payloads(
        types=types, before=before, tenant=tenant, skip_tenants=skip, limit=_SWEEP_LIMIT
    )
    changes = []
    for row in rows:
        new = strip(row.payload, row.type, (kind,), now=now, schema_version=row.schema_version)
        if new is not None:
            changes.append((row.run_id, row.seq, row.payload, new))
            key = f"{row.tenant}/{kind}"
            removed[key] = removed.get(key, 0) + 1
    if not dry_run and changes:
        await store.replace_payloads(changes)
