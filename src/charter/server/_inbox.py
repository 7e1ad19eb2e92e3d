"""The approver's endpoints: the approvals inbox (list, show, grant, deny) and run cancel.

The approver is the authenticated principal: :mod:`charter.approvals` checks, for who is
logged in, separation of duties (never one's own request), the role the rule names (a stored
grant or the token's own role) and the arguments hash (a grant must name the hash of the call
the approver reviewed). Cancelling a run is open to the run's own principal and to an
``operator`` of its tenant. Each of these actions, done or refused, is audited
(:mod:`charter.server._access`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from charter.server._access import OPERATOR, Audited, Identity, Who, acting
from charter.store import ApprovalRecord, CancelRequest

router = APIRouter(prefix="/v1", tags=["approvals"])

ApprovalStatus = Literal["pending", "granted", "denied", "expired", "withdrawn", "all"]


class Change(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class ApprovalView(BaseModel):
    """One held call: what would run, why it is held, who asked, who may decide."""

    approval_id: str
    run_id: str
    call_id: str
    tenant: str
    agent_name: str
    tool: str
    arguments: dict[str, Any] = Field(description="The exact arguments the call would run with.")
    arguments_hash: str = Field(description="Send it back with a grant: the call you reviewed.")
    risk: str
    reason: str = Field(description="Why policy held the call.")
    rule_ids: list[str] = Field(description="The policy rules that held it.")
    requested_by: str = Field(description="The run's principal, who may not decide it.")
    tier: str
    role: str = Field(description="The role a decider must hold in the tenant.")
    changes: list[Change] | None = Field(
        description="What the call would change (the tool's preview); null: it cannot tell."
    )
    requested_at: float
    expires_at: float
    on_expiry: str
    status: str
    decided_by: str | None
    decided_at: float | None
    note: str | None

    @classmethod
    def of(cls, record: ApprovalRecord) -> ApprovalView:
        return cls.model_validate(record.to_dict())


class ApprovalList(BaseModel):
    approvals: list[ApprovalView]


class Grant(BaseModel):
    arguments_hash: str = Field(
        description="The arguments_hash of the request as you reviewed it; refused (409) if"
        " the held call is not that one."
    )
    note: str | None = Field(default=None, description="Why; recorded with the decision.")


class Deny(BaseModel):
    reason: str = Field(min_length=1, description="Why; the model is told, and it is recorded.")


class Cancel(BaseModel):
    reason: str = Field(min_length=1, description="Why the run is cancelled (recorded).")


class CancelView(BaseModel):
    request_id: str
    run_id: str
    reason: str
    requested_by: str
    requested_at: float
    already_requested: bool = Field(description="An earlier request for the run is the one.")

    @classmethod
    def of(cls, request: CancelRequest) -> CancelView:
        return cls.model_validate(request.to_dict())


@router.get("/approvals")
async def list_approvals(
    who: Who,
    status: ApprovalStatus = "pending",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> ApprovalList:
    """The tenant's approval requests, oldest first (``status=all``: whatever their status)."""
    found = await who.rt.approvals(
        tenant=who.tenant, status=None if status == "all" else status, limit=limit
    )
    return ApprovalList(approvals=[ApprovalView.of(a) for a in found])


@router.get("/approvals/{approval_id}")
async def show_approval(approval_id: str, who: Who) -> ApprovalView:
    """One request in full: the exact call and its arguments hash, the changes it would make,
    who asked, the run, the rule that held it and the role that may decide."""
    return ApprovalView.of(await who.rt.approval(approval_id, tenant=who.tenant))


Granting = Annotated[Identity, acting("approval.grant")]
Denying = Annotated[Identity, acting("approval.deny")]
Cancelling = Annotated[Identity, acting("run.cancel")]


@router.post("/approvals/{approval_id}/grant")
async def grant_approval(
    approval_id: str, body: Grant, who: Granting, request: Request
) -> ApprovalView:
    """Let the held call run, once, as the token's principal (who must hold the role and
    must not be the requester)."""
    target = {"approval_id": approval_id, "arguments_hash": body.arguments_hash}
    async with Audited(request, who, "approval.grant", target) as detail:
        await who.rt.approval(approval_id, tenant=who.tenant)
        record = await who.rt.grant(
            approval_id,
            by=who.principal,
            note=body.note,
            arguments_hash=body.arguments_hash,
            roles=await who.roles_here(),
        )
        detail["run_id"] = record.run_id
    return ApprovalView.of(record)


@router.post("/approvals/{approval_id}/deny")
async def deny_approval(
    approval_id: str, body: Deny, who: Denying, request: Request
) -> ApprovalView:
    """Refuse the held call as the token's principal; the run goes on without it."""
    target = {"approval_id": approval_id, "reason": body.reason}
    async with Audited(request, who, "approval.deny", target) as detail:
        await who.rt.approval(approval_id, tenant=who.tenant)
        record = await who.rt.deny(
            approval_id, by=who.principal, reason=body.reason, roles=await who.roles_here()
        )
        detail["run_id"] = record.run_id
    return ApprovalView.of(record)


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(run_id: str, body: Cancel, who: Cancelling, request: Request) -> CancelView:
    """Cancel a run at its next step boundary (durable at once). Open to the run's principal
    and to an ``operator`` of the tenant; a second request answers with the first."""
    async with Audited(request, who, "run.cancel", {"run_id": run_id, "reason": body.reason}):
        run = await who.rt.get_run(run_id, tenant=who.tenant)
        if not who.is_principal(run.principal, run.tenant):
            await who.require(OPERATOR, who.tenant)
        cancel = await who.rt.cancel(
            run_id, reason=body.reason, actor=who.principal, tenant=who.tenant
        )
    return CancelView.of(cancel)
