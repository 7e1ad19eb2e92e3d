"""Read-only views for any token of a tenant: stats, who-can, the capabilities registry.

Each answers for the token's tenant only: ``/v1/stats`` counts that tenant's runs (the same
figures as ``charter stats --tenant T``), ``/v1/who-can`` keeps the paths open to it (as
``charter policy who-can --tenant T``), and both who-can and ``/v1/capabilities`` are about
the agents this server was started with (``--agent``), never agents other tenants' runs used.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from charter.agents import Agent
from charter.policy import parse_selector, who_can
from charter.runtime import tool_registry
from charter.server._access import Who
from charter.stats import StatsReport, parse_since

router = APIRouter(prefix="/v1", tags=["insight"])


def served_agents(request: Request) -> list[Agent]:
    agents: list[Agent] = list(request.app.state.agents.values())
    return agents


class WhoCan(BaseModel):
    selector: str
    tenant: str | None
    environment: str | None
    agents: int = Field(description="How many agents were asked about.")
    nobody: bool = Field(description="No path leads to an allow or an approval.")
    paths: list[dict[str, Any]] = Field(
        description="One per way to execute: agent, tool, outcome, rule, conditions, approval."
    )
    blocked: list[dict[str, Any]]


class AgentSummary(BaseModel):
    name: str
    version: str
    tools: list[str]


class CapabilityList(BaseModel):
    agents: list[AgentSummary] = Field(description="The agents this server may start.")
    tools: list[dict[str, Any]] = Field(
        description="Each tool's contract: name, version, effect, risk, owner, idempotency,"
        " retries, timeout, destinations, input schema."
    )


@router.get("/stats")
async def stats(
    who: Who,
    since: Annotated[str | None, Query(description="30m, 24h, 7d, 2w; default all")] = None,
    agent: str | None = None,
) -> StatsReport:
    """Fleet figures over the tenant's runs created since ``since`` (``charter stats``)."""
    start = None if since is None else parse_since(since)
    return await who.rt.operations.stats(since=start, agent=agent, tenant=who.tenant)


@router.get("/who-can")
async def who_can_route(
    who: Who,
    request: Request,
    selector: Annotated[
        str,
        Query(
            description="A tool name (refund, tool:NAME), an effect (read, write, control), a"
            " risk (risk:critical, risk:high+), or several joined by commas"
        ),
    ],
    environment: str | None = None,
) -> WhoCan:
    """Which of the server's agents could execute a tool in this tenant, for which roles,
    under which conditions (``charter policy who-can``)."""
    answer = who_can(
        parse_selector(selector),
        served_agents(request),
        tenant=who.tenant,
        environment=environment,
    )
    return WhoCan.model_validate(answer.to_dict())


@router.get("/capabilities")
async def capabilities(who: Who, request: Request) -> CapabilityList:
    """The capabilities registry of the server's agents (``charter tools``)."""
    agents = served_agents(request)
    return CapabilityList(
        agents=[
            AgentSummary(name=a.name, version=a.version, tools=[t.name for t in a.tools])
            for a in agents
        ],
        tools=[t.describe() for t in tool_registry(agents)],
    )
