"""Who is asking: the bearer token of a request, checked against the stored API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from charter.runtime import Runtime
from charter.store import ApiToken

BEARER = "bearer "


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def caller(request: Request) -> ApiToken:
    """The valid token the request carries; UnauthenticatedError (401) naming why not."""
    header = request.headers.get("authorization", "")
    token = header[len(BEARER) :].strip() if header.lower().startswith(BEARER) else None
    return await runtime(request).operations.authenticate(token)


Caller = Annotated[ApiToken, Depends(caller)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
