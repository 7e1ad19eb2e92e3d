"""API tokens (table ``api_tokens``, schema 13): who a bearer of ``charter serve`` is.

A token is ``charter_<token_id>_<secret>``: the id names it in ``tokens list`` and the audit
log, the secret (32 random bytes) makes it unguessable. Only ``sha256`` of the whole token is
stored (``token_hash``), so the database never holds what would let someone present it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from charter.store._audit import AuditEntry

COLUMNS = "token_id, token_hash, principal, tenant, roles, created_at, expires_at, revoked_at"
INSERT = f"INSERT INTO api_tokens ({COLUMNS}) VALUES ({', '.join(['{p}'] * 8)})"
TOKEN_PREFIX = "charter_"


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A token as stored: never its secret, only the secret's hash."""

    token_id: str
    token_hash: str
    principal: str
    tenant: str
    roles: tuple[str, ...]
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def valid_at(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_dict(self) -> dict[str, Any]:
        """What ``tokens list`` shows (the hash stays in the database)."""
        out = {name: getattr(self, name) for name in self.__slots__ if name != "token_hash"}
        out["roles"] = list(self.roles)
        return out

    def row(self) -> tuple[Any, ...]:
        return (
            self.token_id, self.token_hash, self.principal, self.tenant,
            json.dumps(list(self.roles)), self.created_at, self.expires_at, self.revoked_at,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ApiToken:
        token_id, digest, principal, tenant, roles, created, expires, revoked = row
        return cls(
            token_id, digest, principal, tenant, tuple(json.loads(roles)), float(created),
            None if expires is None else float(expires),
            None if revoked is None else float(revoked),
        )  # fmt: skip


def token_hash(token: str) -> str:
    """What is stored for (and looked up by) a presented token."""
    return hashlib.sha256(token.encode()).hexdigest()


def created(token: ApiToken, actor: str | None) -> AuditEntry:
    detail = {
        "token_id": token.token_id,
        "principal": token.principal,
        "tenant": token.tenant,
        "roles": list(token.roles),
        "expires_at": token.expires_at,
    }
    return AuditEntry("token_created", None, actor, detail)


def revoked(token: ApiToken, actor: str | None) -> AuditEntry:
    detail = {"token_id": token.token_id, "principal": token.principal, "tenant": token.tenant}
    return AuditEntry("token_revoked", None, actor, detail)
