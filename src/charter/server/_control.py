"""The operator's endpoints: the kill switch (state, history, flip) and roles.

Reading the kill switch is open to any token of the tenant (a parked run says why); flipping
it and reading or changing roles need ``operator`` in the tenant, or for every tenant (``*``)
to act on ``*`` (:mod:`charter.server._access`). Every flip and role change, done or refused,
is audited with the token's principal.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from charter.errors import InputError
from charter.server._access import EVERY_TENANT, OPERATOR, Audited, Identity, Who, acting
from charter.store import KillSwitch, KillSwitchAction, RoleGrant

router = APIRouter(prefix="/v1", tags=["operators"])

SWITCH_KINDS = ("killswitch_on", "killswitch_off")


class KillSwitchView(BaseModel):
    tenant: str = Field(description="The tenant it covers; * for every tenant.")
    agent: str = Field(description="The agent it covers; * for every agent.")
    since: float
    reason: str
    action: KillSwitchAction = Field(description="What a blocked write does to its run.")

    @classmethod
    def of(cls, switch: KillSwitch) -> KillSwitchView:
        return cls.model_validate(switch.to_dict())


class KillSwitchChange(BaseModel):
    """One flip, from the audit log."""

    seq: int
    at: float
    on: bool
    tenant: str
    agent: str
    reason: str | None
    action: str | None
    actor: str | None


class KillSwitchState(BaseModel):
    switches: list[KillSwitchView] = Field(
        description="The switches on that cover this tenant (its own and those for every one)."
    )
    writes_blocked: bool = Field(description="Whether a switch for every agent is on here.")
    history: list[KillSwitchChange] = Field(description="Flips covering this tenant, newest first.")


class FlipSwitch(BaseModel):
    on: bool = Field(description="true: switch writes off; false: back on.")
    tenant: str | None = Field(
        default=None, description="The token's tenant (default), or * for every tenant."
    )
    agent: str = Field(default="*", description="One agent's name, or * for every agent.")
    reason: str = Field(default="", description="Why; shown to the model and in the log.")
    action: KillSwitchAction = "wait"


class RoleGrantView(BaseModel):
    principal: str
    role: str
    tenant: str = Field(description="The tenant it holds in; * for every tenant.")
    granted_at: float

    @classmethod
    def of(cls, grant: RoleGrant) -> RoleGrantView:
        return cls.model_validate(grant.to_dict())


class RoleList(BaseModel):
    roles: list[RoleGrantView]


class SetRole(BaseModel):
    principal: str
    role: str = Field(min_length=1)
    tenant: str | None = Field(
        default=None, description="The token's tenant (default), or * for every tenant."
    )
    on: bool = Field(default=True, description="true: grant; false: take away.")


def _covers(tenant: str, who: Identity) -> bool:
    return tenant in (who.tenant, EVERY_TENANT)


@router.get("/killswitch")
async def kill_switch(
    who: Who, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> KillSwitchState:
    """The switches on for this tenant, and their history from the audit log."""
    rt = who.rt
    switches = [s for s in await rt.operations.kill_switches() if _covers(s.tenant, who)]
    history: list[KillSwitchChange] = []
    for r in reversed(await rt.audit_log()):
        data = r.data
        if r.kind not in SWITCH_KINDS or not _covers(str(data.get("tenant")), who):
            continue
        change = KillSwitchChange(
            seq=r.seq, at=r.at, on=r.kind == "killswitch_on", tenant=data["tenant"],
            agent=data["agent"], reason=data.get("reason"), action=data.get("action"),
            actor=r.actor,
        )  # fmt: skip
        history.append(change)
        if len(history) == limit:
            break
    return KillSwitchState(
        switches=[KillSwitchView.of(s) for s in switches],
        writes_blocked=any(s.agent == "*" for s in switches),
        history=history,
    )


Flipping = Annotated[Identity, acting("killswitch.set")]


@router.post("/killswitch")
async def flip_kill_switch(body: FlipSwitch, who: Flipping, request: Request) -> KillSwitchState:
    """Switch writes off (``on``) or back on, for the tenant or every tenant (``*``), for
    one agent or all; ``operator`` only. Returns the state after."""
    tenant = body.tenant or who.tenant
    target = body.model_dump() | {"tenant": tenant}
    async with Audited(request, who, "killswitch.set", target):
        await who.require(OPERATOR, tenant)
        await who.rt.operations.set_kill_switch(
            tenant=tenant, agent=body.agent, on=body.on, reason=body.reason,
            action=body.action, actor=who.principal,
        )  # fmt: skip
    return await kill_switch(who)


router.put("/killswitch", operation_id="put_kill_switch")(flip_kill_switch)  # the same, by PUT


@router.get("/roles")
async def roles(
    who: Annotated[Identity, acting("roles.list")], request: Request, principal: str | None = None
) -> RoleList:
    """Who holds which role in this tenant (grants for every tenant included); ``operator``."""
    async with Audited(request, who, "roles.list", {"principal": principal}, done=False):
        await who.require(OPERATOR, who.tenant)
        grants = await who.rt.operations.roles(principal=principal)
    return RoleList(roles=[RoleGrantView.of(g) for g in grants if _covers(g.tenant, who)])


@router.post("/roles")
async def set_role(
    body: SetRole, who: Annotated[Identity, acting("roles.set")], request: Request
) -> RoleList:
    """Grant (``on``) or take away a role in the tenant, or for every tenant (``*``: needs
    ``operator`` for ``*``); ``operator``. Returns the principal's grants here after."""
    tenant = body.tenant or who.tenant
    async with Audited(request, who, "roles.set", body.model_dump() | {"tenant": tenant}):
        await who.require(OPERATOR, tenant)
        if not body.role.strip():
            raise InputError("the role is empty", hint="name a role, e.g. support_lead")
        grants = await who.rt.operations.set_role(
            principal=body.principal, role=body.role, tenant=tenant, on=body.on,
            actor=who.principal,
        )  # fmt: skip
    return RoleList(roles=[RoleGrantView.of(g) for g in grants if _covers(g.tenant, who)])
