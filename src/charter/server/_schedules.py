"""``/v1/schedules``: the token's tenant's cron schedules (:mod:`charter.schedules`), for
callers holding the ``operator`` role in their tenant (``server/_access.py``); a caller
without it is refused (403), recorded in the audit log as ``api_refused`` like every refused
operator action. Schedules are made for the token's tenant and
principal; their agent is one this server runs (``--agent``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from charter.agents import Agent
from charter.errors import ForbiddenError, NotFoundError
from charter.server._access import OPERATOR, REFUSED, Identity, acting, record
from charter.server._auth import RuntimeDep

router = APIRouter()


async def operator(request: Request, who: Annotated[Identity, acting("schedules")]) -> Identity:
    """The caller, if it holds ``operator`` in its tenant; else 403, recorded."""
    try:
        await who.require(OPERATOR, who.tenant)
    except ForbiddenError as exc:
        refusal = {"status": 403, "code": exc.code, "message": exc.message}
        await record(
            request, who, "schedules", REFUSED, {"target": dict(request.path_params), **refusal}
        )
        raise
    return who


Operator = Annotated[Identity, Depends(operator)]


class NewSchedule(BaseModel):
    name: str
    cron: str = Field(description='Five fields, UTC, e.g. "*/15 * * * *".')
    agent: str = Field(description="The name of an agent this server runs (--agent).")
    input: str
    missed: Literal["skip", "catch-up"] = "skip"


def _agent(request: Request, name: str) -> Agent:
    agents: dict[str, Agent] = request.app.state.agents
    if name not in agents:
        raise NotFoundError(
            f"no agent {name!r} on this server",
            hint=f"this server runs: {', '.join(sorted(agents)) or 'no agents'}",
        )
    return agents[name]


@router.post("/v1/schedules", status_code=201)
async def add_schedule(
    body: NewSchedule, request: Request, who: Operator, rt: RuntimeDep
) -> dict[str, Any]:
    """A schedule for the token's tenant, on behalf of the token's principal."""
    made = await rt.schedules.add(
        body.name, cron=body.cron, agent=_agent(request, body.agent), input=body.input,
        tenant=who.tenant, principal=who.principal, roles=who.token.roles, missed=body.missed,
        actor=who.principal,
    )  # fmt: skip
    return made.to_dict()


@router.get("/v1/schedules")
async def list_schedules(who: Operator, rt: RuntimeDep) -> list[dict[str, Any]]:
    return [s.to_dict() for s in await rt.schedules.all(tenant=who.tenant)]


@router.get("/v1/schedules/{name}")
async def get_schedule(name: str, who: Operator, rt: RuntimeDep) -> dict[str, Any]:
    return (await rt.schedules.get(name, tenant=who.tenant)).to_dict()


@router.delete("/v1/schedules/{name}")
async def remove_schedule(name: str, who: Operator, rt: RuntimeDep) -> dict[str, Any]:
    return (await rt.schedules.remove(name, tenant=who.tenant, actor=who.principal)).to_dict()


@router.post("/v1/schedules/{name}/pause")
async def pause_schedule(name: str, who: Operator, rt: RuntimeDep) -> dict[str, Any]:
    return (await rt.schedules.pause(name, tenant=who.tenant, actor=who.principal)).to_dict()


@router.post("/v1/schedules/{name}/resume")
async def resume_schedule(name: str, who: Operator, rt: RuntimeDep) -> dict[str, Any]:
    return (await rt.schedules.resume(name, tenant=who.tenant, actor=who.principal)).to_dict()
