"""Inbound webhooks: the signature scheme, its check, and the mapping of a JSON body to a
run's input and tenant (``POST /v1/hooks/{name}``, configured under ``hooks:``).

The sender signs each delivery with the hook's shared secret, the Stripe/GitHub way::

    Charter-Timestamp: 1767225600                      (unix seconds, when it was signed)
    Charter-Delivery:  8f0c2d7e-...                    (the sender's id of this delivery)
    Charter-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

Several ``v1=`` values, comma separated, are allowed (while a secret is being rotated); one
matching is enough. A delivery is refused when a header is missing, no signature matches,
or the timestamp is further than the hook's tolerance from the server's clock (stale, or
from the future). The delivery id keys the run start, so a redelivery (even re-signed with
a new timestamp) returns the run the first delivery started.

The body is mapped by a template: ``{a.b.0.c}`` is replaced by that field of the JSON body
(dots between keys, digits index lists; a string as is, anything else as JSON), ``{{`` and
``}}`` are literal braces, and without a template the input is the body itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charter.agents import Agent
from charter.errors import (
    ConfigError,
    IdempotencyConflictError,
    InputError,
    NotFoundError,
    UnauthenticatedError,
)
from charter.events import Trigger
from charter.store import AuditEntry

if TYPE_CHECKING:
    from charter.runtime import Runtime

SCHEME = "v1"
TIMESTAMP_HEADER = "Charter-Timestamp"
DELIVERY_HEADER = "Charter-Delivery"
SIGNATURE_HEADER = "Charter-Signature"
DEFAULT_TOLERANCE_S = 300.0
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``Charter-Signature`` header value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


class Refused(UnauthenticatedError):
    """A delivery that does not prove it comes from the hook's sender; ``reason`` names why
    in one word for the audit log (``missing_header``, ``bad_signature``, ``stale``...)."""

    def __init__(self, reason: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verified:
    """A delivery whose signature matched: what the run's trigger records."""

    delivery_id: str
    signed_at: float
    checked_at: float
    signature: str
    """The matching ``v1=`` value: what a replay under another delivery id would reuse."""


def verify(
    secret: bytes,
    headers: dict[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> Verified:
    """Check a delivery's headers (names lower-case) against ``secret`` at ``now``;
    :class:`Refused` naming the first problem."""
    values = {}
    for name in (TIMESTAMP_HEADER, DELIVERY_HEADER, SIGNATURE_HEADER):
        value = headers.get(name.lower(), "").strip()
        if not value:
            raise Refused(
                "missing_header",
                f"the delivery has no {name} header",
                hint=f"sign deliveries: {TIMESTAMP_HEADER}, {DELIVERY_HEADER} and"
                f" {SIGNATURE_HEADER} (see the README, Webhooks)",
            )
        values[name] = value
    stamp = values[TIMESTAMP_HEADER]
    try:
        signed_at = float(int(stamp))
    except ValueError:
        raise Refused(
            "bad_timestamp", f"{TIMESTAMP_HEADER} {stamp[:40]!r} is not unix seconds"
        ) from None
    expected = sign(secret, stamp, body)
    offered = [v.strip() for v in values[SIGNATURE_HEADER].split(",")]
    matching = [v for v in offered if hmac.compare_digest(v.encode(), expected.encode())]
    if not matching:
        raise Refused(
            "bad_signature",
            f"no {SIGNATURE_HEADER} matches the body and timestamp",
            hint=f'{SCHEME}=hex(HMAC-SHA256(secret, timestamp + "." + raw body))',
        )
    if abs(now - signed_at) > tolerance_s:
        raise Refused(
            "stale",
            f"the delivery was signed at {stamp}, {now - signed_at:+.0f}s from this server's"
            f" clock; deliveries older or newer than {tolerance_s:g}s are refused",
            hint="sign each delivery (and each redelivery) when it is sent; check the clocks",
        )
    delivery = values[DELIVERY_HEADER]
    if len(delivery) > 200:
        raise InputError(f"{DELIVERY_HEADER} is longer than 200 characters")
    return Verified(delivery, signed_at, now, matching[0])


def field(body: Any, path: str) -> Any:
    """The value at ``path`` (``a.b.0``) of a parsed JSON body; InputError naming the path."""
    value = body
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise InputError(
                f"the body has no field {path!r}",
                hint="the hook's input template or tenant_field names it",
            )
    return value


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(template: str, body: Any) -> str:
    """``template`` with each ``{path}`` replaced by that field of ``body``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        return as_text(field(body, match.group(1).strip()))

    return _FIELD.sub(one, template)


def check_template(template: str) -> str:
    """``template`` if every ``{...}`` names a path; ValueError otherwise (config time)."""
    for match in _FIELD.finditer(template):
        if match.group(1) is not None and not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", match.group(1)):
            raise ValueError(f"{{{match.group(1)}}} is not a field path like {{ticket.id}}")
    rest = _FIELD.sub("", template)
    if "{" in rest or "}" in rest:
        raise ValueError("an unmatched brace (write {{ or }} for a literal one)")
    return template


# -- accepting a delivery (the library call behind POST /v1/hooks/{name}) ---------------------


@dataclass(frozen=True, slots=True)
class Hook:
    """One configured hook: what a verified delivery starts, and the secret that verifies it
    (read from the environment by whoever loads the configuration, never from a file)."""

    name: str
    agent: Agent
    secret: bytes
    tenant: str | None = None
    """A fixed tenant; else ``tenant_field`` of the body names it."""
    tenant_field: str | None = None
    principal: str | None = None
    """Recorded as the run's principal; default ``hook:<name>``."""
    roles: tuple[str, ...] = ()
    input: str | None = None
    """The input template; None: the raw body is the input."""
    tolerance_s: float = DEFAULT_TOLERANCE_S


@dataclass(frozen=True, slots=True)
class Accepted:
    hook: str
    delivery_id: str
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"hook": self.hook, "delivery_id": self.delivery_id, "run_id": self.run_id}


def _mapped(hook: Hook, body: bytes) -> tuple[str, str]:
    """(tenant, input) of a delivery's body; InputError naming what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the body is not UTF-8 text") from None
    if hook.input is None and hook.tenant_field is None:
        return str(hook.tenant), text
    try:
        parsed = json.loads(text)
    except ValueError:
        raise InputError(
            "the body is not JSON", hint="send Content-Type: application/json"
        ) from None
    tenant = hook.tenant
    if hook.tenant_field is not None:
        found = field(parsed, hook.tenant_field)
        if not isinstance(found, str) or not found.strip():
            raise InputError(f"the body's {hook.tenant_field!r} is not a tenant name (a string)")
        tenant = found
    return str(tenant), text if hook.input is None else render(hook.input, parsed)


async def accept(
    rt: Runtime, hooks: Mapping[str, Hook], name: str, headers: Mapping[str, str], body: bytes
) -> Accepted:
    """Verify a delivery to hook ``name`` and start its run (or find the run its delivery id
    started). Every refusal is recorded in the audit log (``hook_refused``: hook, reason,
    delivery id, timestamp) before it is raised: NotFoundError (unknown hook), Refused
    (missing header, bad signature, stale timestamp, a signature replayed under another
    delivery id), InputError (a body the hook cannot map), IdempotencyConflictError (a
    delivery id reused for another body)."""
    lower = {k.lower(): v for k, v in headers.items()}
    detail: dict[str, Any] = {
        "hook": name[:100],
        "delivery_id": lower.get(DELIVERY_HEADER.lower(), "")[:200] or None,
        "timestamp": lower.get(TIMESTAMP_HEADER.lower(), "")[:40] or None,
    }
    try:
        hook = hooks.get(name)
        if hook is None:
            raise NotFoundError(
                f"no webhook {name[:100]!r} on this server",
                hint="hooks are set under hooks: in the file charter serve --config reads",
            )
        now = rt.clock()
        checked = verify(hook.secret, lower, body, now=now, tolerance_s=hook.tolerance_s)
        tenant, text = _mapped(hook, body)
        first = await rt.store.remember_signature(
            name, checked.signature, checked.delivery_id, prune_before=now - 2 * hook.tolerance_s
        )
        if first != checked.delivery_id:
            raise Refused(
                "replayed",
                f"this signature was already used by delivery {first[:200]!r}",
                hint="a redelivery keeps its delivery id; a new delivery is signed anew",
            )
        trigger = Trigger(
            kind="webhook", name=name, read_at=now, delivery_id=checked.delivery_id,
            signed_at=checked.signed_at,
        )  # fmt: skip
        run_id = await rt.start(
            hook.agent, text, tenant=tenant, principal=hook.principal or f"hook:{name}",
            roles=hook.roles, idempotency_key=f"hook:{name}:{checked.delivery_id}",
            trigger=trigger,
        )  # fmt: skip
    except (NotFoundError, Refused, InputError, ConfigError, IdempotencyConflictError) as exc:
        reason = exc.reason if isinstance(exc, Refused) else exc.code
        entry = AuditEntry("hook_refused", None, f"hook:{name[:100]}", {**detail, "reason": reason})
        await rt.store.audit([entry])
        raise
    return Accepted(name, checked.delivery_id, run_id)
