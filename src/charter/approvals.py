"""Durable human approvals: who may decide a held call, and deciding it exactly once.

When policy answers ``require_approval``, the run files an approval request (in the same
transaction as its ``approval_requested`` event) and waits. A person decides it here:

* **compare-and-set**: the request moves once from ``pending``; of two approvers clicking at
  the same moment one wins and the other gets a :class:`~charter.errors.ConflictError`;
* **bound to the arguments**: a grant may name the arguments hash the approver saw; if it is
  not the request's, the grant is refused. The run checks the hash again before it executes;
* **separation of duties**: the run's own principal can never decide its request, and the
  decider must hold the request's role (``charter roles add``) for the run's tenant or ``*``,
  or carry it on the API token it authenticated with (a token belongs to one tenant);
  principals are compared canonically (:mod:`charter.principals`), so ``Ann`` is ``ann``;
* **expiry**: a request past its ``expires_at`` can no longer be granted; the run resolves it
  as its rule says (``on_expiry: deny`` or ``escalate``).

The decision wakes the run; the worker that takes it records ``approval_decided`` and goes on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from charter.errors import ConflictError, ForbiddenError
from charter.principals import canonical_principal, same_principal
from charter.store import ApprovalRecord, RoleGrant, Store


async def decide(
    store: Store,
    approval_id: str,
    *,
    decision: Literal["granted", "denied"],
    by: str,
    note: str | None = None,
    arguments_hash: str | None = None,
    roles: Sequence[str] = (),
) -> ApprovalRecord:
    """Grant or deny a pending request as ``by``; return it as decided. ``roles``: roles
    ``by`` holds in the request's tenant as authenticated (an API token's, which belongs to
    that tenant), counted besides the stored grants."""
    by = canonical_principal(by)
    request = await store.get_approval(approval_id)
    _check_open(request)
    if same_principal(by, request.requested_by):
        raise ForbiddenError(
            f"{by} requested approval {approval_id} and cannot decide it (separation of duties)",
            hint=f"ask another principal with role {request.role!r}",
        )
    if request.role not in roles:
        await _check_role(store, request, by)
    if arguments_hash is not None and arguments_hash != request.arguments_hash:
        raise ConflictError(
            f"approval {approval_id} is for arguments {request.arguments_hash[:12]}…,"
            f" not {arguments_hash[:12]}…: the call differs from what you reviewed",
            hint=f"review it again with: charter approvals show {approval_id}",
        )
    record, won = await store.decide_approval(approval_id, decision=decision, by=by, note=note)
    if not won:
        _check_open(record)
    return record


async def _check_role(store: Store, request: ApprovalRecord, by: str) -> None:
    grants = await role_grants(store, principal=by)
    if any(g.role == request.role and g.tenant in ("*", request.tenant) for g in grants):
        return
    raise ForbiddenError(
        f"{by} does not hold role {request.role!r} for tenant {request.tenant!r},"
        f" which approval {request.approval_id} requires",
        hint=f"an operator can add it: charter roles add {by} {request.role}"
        f" --tenant {request.tenant}",
    )


async def set_role(
    store: Store, *, principal: str, role: str, tenant: str, on: bool, actor: str | None = None
) -> None:
    """Grant (``on``) or take away ``role`` in ``tenant`` (``*``: every tenant).

    ``actor`` (who does it) is recorded in the audit log. The grant is stored under the
    canonical name; taking it away also removes grants an older
    Charter stored under another spelling of the same principal.
    """
    principal = canonical_principal(principal)
    if on:
        await store.set_role(principal=principal, role=role, tenant=tenant, on=True, actor=actor)
        return
    for grant in await role_grants(store, principal=principal):
        if grant.role == role and grant.tenant == tenant:
            await store.set_role(
                principal=grant.principal, role=role, tenant=tenant, on=False, actor=actor
            )


async def role_grants(store: Store, *, principal: str | None = None) -> list[RoleGrant]:
    """Every grant, or those of one principal compared canonically (old rows included)."""
    grants = await store.role_grants()
    if principal is None:
        return grants
    return [g for g in grants if same_principal(g.principal, principal)]


def _check_open(record: ApprovalRecord) -> None:
    if record.status == "pending":
        return
    if record.status == "expired":
        raise ConflictError(
            f"approval {record.approval_id} expired at {_when(record.expires_at)};"
            f" the run resolves it as its rule says (on expiry: {record.on_expiry})"
        )
    if record.decided_by is None:  # withdrawn: its run was cancelled
        raise ConflictError(
            f"approval {record.approval_id} was {record.status} at {_when(record.decided_at)}:"
            f" {record.note or 'it can no longer be decided'}"
        )
    raise ConflictError(
        f"approval {record.approval_id} was already {record.status} by {record.decided_by}"
        f" at {_when(record.decided_at)}"
    )


def _when(at: float | None) -> str:
    return "?" if at is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
