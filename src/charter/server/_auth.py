"""Who is asking: the bearer token of a request, an API token checked against the stored
ones or, with an ``oidc:`` config, a JWT verified against the issuer's keys (server/_oidc.py).
Both give the same identity (:class:`~charter.store.ApiToken`: principal, tenant, roles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from charter.runtime import Runtime
from charter.server._oidc import OidcVerifier, is_jwt
from charter.store import ApiToken

BEARER = "bearer "


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def caller(request: Request) -> ApiToken:
    """The valid token the request carries; UnauthenticatedError (401) naming why not."""
    header = request.headers.get("authorization", "")
    token = header[len(BEARER) :].strip() if header.lower().startswith(BEARER) else None
    oidc: OidcVerifier | None = getattr(request.app.state, "oidc", None)
    if token and oidc is not None and is_jwt(token):
        return await oidc.identity(token, request.headers)
    return await runtime(request).operations.authenticate(token)


Caller = Annotated[ApiToken, Depends(caller)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
