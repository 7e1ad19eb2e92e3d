"""OIDC/JWT bearer tokens: the second way to authenticate to ``charter serve``.

::

    oidc:
      issuer: https://login.example.com/
      audience: charter
      jwks_url: https://login.example.com/.well-known/jwks.json   # or jwks_file: keys.json
      algorithms: [RS256]
      claims: {principal: email, tenant: charter_tenant, roles: charter_roles}

A bearer that is not a Charter API token (``charter_...``) and looks like a JWT is verified
with PyJWT against the issuer's keys (a JWKS file read at start, or a JWKS URL fetched by
``PyJWKClient`` and cached for five minutes): signature, ``exp``, ``nbf``, ``iss`` and
``aud`` are checked, only the configured asymmetric algorithms are accepted (never ``none``,
never an HMAC algorithm, which a public key would make forgeable). The claims map to the same
identity an API token gives (:class:`~charter.store.ApiToken`): ``principal``, ``tenant``
(a string, or a list from which the ``Charter-Tenant`` header picks one) and ``roles`` (a list
or a space-separated string). Anything wrong is a 401 naming what.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from charter.errors import ConfigError, UnauthenticatedError
from charter.store import ApiToken

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA")  # fmt: skip
TENANT_HEADER = "charter-tenant"


class ClaimMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    principal: str = "sub"
    tenant: str = "tenant"
    roles: str = "roles"


class OidcConfig(BaseModel):
    """The ``oidc:`` section of ``charter serve --config``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    audience: str
    jwks_file: str | None = None
    jwks_url: str | None = Field(None, pattern=r"^https?://")
    algorithms: tuple[str, ...] = ("RS256",)
    claims: ClaimMapping = ClaimMapping()
    leeway_s: float = Field(0.0, ge=0, description="Clock skew allowed for exp and nbf.")

    @model_validator(mode="after")
    def _check(self) -> OidcConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of jwks_file and jwks_url")
        wrong = sorted(set(self.algorithms) - set(ASYMMETRIC))
        if wrong or not self.algorithms:
            raise ValueError(f"algorithms {wrong} not allowed; use some of {', '.join(ASYMMETRIC)}")
        return self


def is_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("charter_")


class OidcVerifier:
    """Turns a JWT into the identity of a request (:meth:`identity`)."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._keys: jwt.PyJWKSet | None = None
        self._client: jwt.PyJWKClient | None = None
        if config.jwks_file is not None:
            try:
                text = Path(config.jwks_file).read_text()
                self._keys = jwt.PyJWKSet.from_dict(json.loads(text))
            except (OSError, ValueError, jwt.PyJWKSetError) as exc:
                raise ConfigError(
                    f"oidc: cannot load the JWKS file {config.jwks_file}: {exc}"
                ) from None
        else:
            assert config.jwks_url is not None
            self._client = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=300)

    async def identity(self, token: str, headers: Mapping[str, str]) -> ApiToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise _refused(f"not a readable JWT ({exc})") from None
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise _refused(f"JWT algorithm {alg!r} is not allowed here")
        key = await self._key(token, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _refused("the JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise _refused("the JWT is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise _refused(f"the JWT's issuer is not {self.config.issuer!r}") from None
        except jwt.InvalidAudienceError:
            raise _refused(f"the JWT's audience is not {self.config.audience!r}") from None
        except jwt.InvalidSignatureError:
            raise _refused("the JWT's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise _refused(f"the JWT is invalid: {exc}") from None
        return self._mapped(token, claims, headers)

    async def _key(self, token: str, kid: Any) -> Any:
        if not isinstance(kid, str):
            raise _refused("the JWT names no key (kid)")
        if self._keys is not None:
            try:
                return self._keys[kid].key
            except KeyError:
                raise _refused(f"the JWT's key {kid!r} is not one of the issuer's") from None
        assert self._client is not None
        try:  # blocking (urllib) when the cache misses: off the event loop
            found = await asyncio.to_thread(self._client.get_signing_key, kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise _refused(f"the issuer's keys cannot be fetched now: {exc}") from None
        except jwt.PyJWKClientError:
            raise _refused(f"the JWT's key {kid!r} is not one of the issuer's") from None
        return found.key

    def _mapped(self, token: str, claims: dict[str, Any], headers: Mapping[str, str]) -> ApiToken:
        names = self.config.claims
        principal = claims.get(names.principal)
        if not isinstance(principal, str) or not principal:
            raise _refused(f"the JWT has no principal claim {names.principal!r}")
        tenant = _tenant(claims.get(names.tenant), names.tenant, headers.get(TENANT_HEADER))
        roles = claims.get(names.roles) or ()
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list | tuple) or not all(isinstance(r, str) for r in roles):
            raise _refused(f"the JWT's roles claim {names.roles!r} is not a list of strings")
        jti = claims.get("jti") or hashlib.sha256(token.encode()).hexdigest()[:16]
        return ApiToken(
            token_id=f"jwt:{jti}",
            token_hash="",
            principal=principal,
            tenant=tenant,
            roles=tuple(roles),
            created_at=float(claims.get("iat", 0)),
            expires_at=float(claims["exp"]),
            revoked_at=None,
        )


def _tenant(value: Any, claim: str, chosen: str | None) -> str:
    if isinstance(value, str) and value:
        tenants = [value]
    elif isinstance(value, list) and value and all(isinstance(t, str) for t in value):
        tenants = value
    else:
        raise _refused(f"the JWT has no tenant claim {claim!r}")
    if chosen is not None:
        if chosen not in tenants:
            raise _refused(f"the JWT does not grant tenant {chosen!r}")
        return chosen
    if len(tenants) > 1:
        raise _refused("the JWT grants several tenants: name one in the Charter-Tenant header")
    return tenants[0]


def _refused(why: str) -> UnauthenticatedError:
    return UnauthenticatedError(why, hint="get a fresh token from your identity provider")
