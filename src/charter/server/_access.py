"""The access model of the operator and approver endpoints, and their audit records.

* **Who**: the principal of the API token (``charter tokens create``), in the token's one
  tenant. Every request is scoped to that tenant: another tenant's run or approval answers
  404 with the same message as an unknown id.
* **Roles**: those the token carries (in its tenant) plus those stored with ``charter roles
  add`` (for the tenant, or for every tenant, ``*``). ``operator`` gates the operator scopes
  (:data:`OPERATOR`): kill switches, roles. An approval needs the role its policy rule names
  (e.g. ``support_lead``), checked by :mod:`charter.approvals`, with separation of duties.
* **Global scopes** (a kill switch or a role for every tenant, ``*``) need ``operator`` held
  for ``*``: a stored grant ``charter roles add P operator --all-tenants``. A token's own
  roles never reach beyond its tenant.
* **Audit**: every operator action through the server, done or refused (401, 403, 404,
  409...), is appended to the audit log as ``api_action`` or ``api_refused``, with the
  token's principal as actor and ``"authenticated": "api_token"`` and the token id in its
  detail (the CLI's ``--as`` is only what was typed, and writes no such record). The action's
  own record (``killswitch_on``, ``approval_decided``...) names the same principal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Annotated, Any

from fastapi import Depends, Request

from charter.errors import CharterError, ForbiddenError, UnauthenticatedError, http_status
from charter.principals import same_principal
from charter.runtime import Runtime
from charter.server._auth import caller, runtime
from charter.store import ApiToken, RoleGrant

OPERATOR = "operator"
"""The role of the operator scopes: kill switches and roles."""
EVERY_TENANT = "*"
ACTION, REFUSED = "api_action", "api_refused"
"""The audit log kinds of an operator action through the server, done and refused."""


@dataclass
class Identity:
    """An authenticated caller: its token, and its stored role grants once looked up."""

    token: ApiToken
    rt: Runtime
    _grants: list[RoleGrant] | None = field(default=None, repr=False)

    @property
    def principal(self) -> str:
        return self.token.principal

    @property
    def tenant(self) -> str:
        return self.token.tenant

    async def grants(self) -> list[RoleGrant]:
        if self._grants is None:
            self._grants = await self.rt.operations.roles(principal=self.principal)
        return self._grants

    async def holds(self, role: str, tenant: str) -> bool:
        """Whether the caller holds ``role`` in ``tenant`` (``*``: for every tenant)."""
        if tenant == self.tenant and role in self.token.roles:
            return True
        scopes = (EVERY_TENANT,) if tenant == EVERY_TENANT else (tenant, EVERY_TENANT)
        return any(g.role == role and g.tenant in scopes for g in await self.grants())

    async def roles_here(self) -> list[str]:
        """The caller's roles in its tenant: the token's and the stored grants'."""
        stored = [g.role for g in await self.grants() if g.tenant in (self.tenant, EVERY_TENANT)]
        return list(dict.fromkeys([*self.token.roles, *stored]))

    async def require(self, role: str, tenant: str) -> None:
        """ForbiddenError unless the caller holds ``role`` in ``tenant``."""
        if tenant not in (self.tenant, EVERY_TENANT):
            raise ForbiddenError(
                f"a token of tenant {self.tenant!r} acts in {self.tenant!r}, not {tenant!r}",
                hint=f"use a token of tenant {tenant!r}",
            )
        if await self.holds(role, tenant):
            return
        where = "every tenant (*)" if tenant == EVERY_TENANT else f"tenant {tenant!r}"
        how = (
            f"charter roles add {self.principal} {role} --all-tenants"
            if tenant == EVERY_TENANT
            else f"charter tokens create {self.principal} --tenant {tenant} --role {role}"
        )
        raise ForbiddenError(
            f"{self.principal} does not hold role {role!r} for {where}", hint=f"an admin can: {how}"
        )

    def is_principal(self, principal: str, tenant: str) -> bool:
        return tenant == self.tenant and same_principal(principal, self.principal)


async def _identity(request: Request) -> Identity:
    return Identity(await caller(request), runtime(request))


Who = Annotated[Identity, Depends(_identity)]
"""Any valid token (reads)."""


class Audited:
    """``async with Audited(request, who, "killswitch.set", target) as detail:`` — an
    operator action through the server: on leaving, an ``api_action`` record (``detail``
    may gain fields on the way), or on a CharterError an ``api_refused`` record naming it.
    ``done=False``: a read of an operator scope, recorded only when refused."""

    def __init__(
        self,
        request: Request,
        who: Identity | None,
        action: str,
        target: Mapping[str, Any],
        *,
        done: bool = True,
    ) -> None:
        self.request, self.who, self.action, self.done = request, who, action, done
        self.detail: dict[str, Any] = {"target": dict(target)}

    async def __aenter__(self) -> dict[str, Any]:
        return self.detail

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if e is None and self.done:
            await record(self.request, self.who, self.action, ACTION, self.detail)
        elif isinstance(e, CharterError):
            refusal = {"status": http_status(e), "code": e.code, "message": e.message}
            await record(self.request, self.who, self.action, REFUSED, {**self.detail, **refusal})


async def record(
    request: Request, who: Identity | None, action: str, kind: str, detail: Mapping[str, Any]
) -> None:
    """Append one ``api_action`` / ``api_refused`` record to the audit log."""
    body: dict[str, Any] = {
        "action": action,
        "method": request.method,
        "path": request.url.path,
        **detail,
    }
    if who is not None:
        body.update(authenticated="api_token", token_id=who.token.token_id, tenant=who.tenant)
    actor = None if who is None else who.principal
    await runtime(request).operations.record(kind, actor=actor, detail=body)


def acting(action: str) -> Any:
    """The dependency of an operator action's route: the caller's identity; a request
    without a valid token is refused (401) and recorded as ``api_refused``."""

    async def dependency(request: Request) -> Identity:
        try:
            return await _identity(request)
        except UnauthenticatedError as exc:
            target = dict(request.path_params)
            refusal = {"status": 401, "code": exc.code, "message": exc.message}
            await record(request, None, action, REFUSED, {"target": target, **refusal})
            raise

    return Depends(dependency)
