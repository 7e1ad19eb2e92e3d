"""Approval requests as the run loop files them, and decisions as it takes them back.

The loop holds a call that policy sends to a human: it files an :class:`ApprovalRecord` with
the ``approval_requested`` event (one transaction), waits, and on waking turns the stored
decision into the answer the log records, ``approval_decided``; the decider
(:func:`charter._engine.decider.after_decision`) adds, for a denial or an expiry, the structured
rejection the model sees (or an escalation, when the rule says so).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Mapping
from typing import Any

from charter._engine.state import PendingCall
from charter.events import ApprovalDecided, ApprovalRequested, FieldChange, arguments_hash
from charter.policy import Decision
from charter.store import ApprovalRecord
from charter.tools import Tool, ToolContext


def approval_id(run_id: str, call_id: str, seq: int) -> str:
    digest = hashlib.sha256(f"{run_id}|{call_id}|{seq}".encode()).hexdigest()
    return f"ap-{digest[:16]}"


async def preview(tool: Tool, ctx: ToolContext, arguments: dict[str, Any]) -> Any:
    """What the call would change, from the tool's previewer; None when it cannot tell."""
    if tool.preview is None:
        return None
    try:
        if inspect.iscoroutinefunction(tool.preview):
            result = await asyncio.wait_for(tool.preview(ctx, arguments), tool.timeout_s)
        else:
            result = await asyncio.wait_for(
                asyncio.to_thread(tool.preview, ctx, arguments), tool.timeout_s
            )
        return _changes(result)
    except Exception:  # a preview is a courtesy to the approver; it never blocks the request
        return None


def _changes(result: Any) -> tuple[FieldChange, ...]:
    if isinstance(result, Mapping):
        return tuple(
            FieldChange(field=str(name), old=old, new=new) for name, (old, new) in result.items()
        )
    return tuple(FieldChange.model_validate(item) for item in result)


def request(
    *,
    approval_id: str,
    run_id: str,
    tenant: str,
    agent_name: str,
    principal: str,
    call: PendingCall,
    tool: Tool,
    decision: Decision,
    changes: tuple[FieldChange, ...] | None,
    now: float,
) -> tuple[ApprovalRequested, ApprovalRecord]:
    """The event and the stored request for a call policy holds for a human."""
    approval = decision.approval
    assert approval is not None, "require_approval decisions name who approves"
    event = ApprovalRequested(
        approval_id=approval_id,
        call_id=call.call_id,
        tool=call.tool,
        arguments=call.arguments,
        arguments_hash=arguments_hash(call.arguments),
        risk=tool.risk,
        reason=decision.reason,
        rule_ids=decision.rule_ids,
        requested_by=principal,
        tier=approval.tier,
        role=approval.role,
        expires_at=now + approval.expires_in_s,
        on_expiry=approval.on_expiry,
        changes=changes,
    )
    record = ApprovalRecord(
        approval_id=approval_id,
        run_id=run_id,
        call_id=call.call_id,
        tenant=tenant,
        agent_name=agent_name,
        tool=call.tool,
        arguments=dict(call.arguments),
        arguments_hash=event.arguments_hash,
        risk=tool.risk,
        reason=decision.reason,
        rule_ids=decision.rule_ids,
        requested_by=principal,
        tier=approval.tier,
        role=approval.role,
        changes=None if changes is None else tuple(c.model_dump() for c in changes),
        requested_at=now,
        expires_at=event.expires_at,
        on_expiry=approval.on_expiry,
    )
    return event, record


def decided(call: PendingCall, record: ApprovalRecord) -> ApprovalDecided:
    """The stored decision on a held call, as the answer the log records (the decider turns it
    into events: :func:`charter._engine.decider.after_decision`)."""
    assert record.status in ("granted", "denied", "expired"), record.status
    assert record.decided_at is not None
    return ApprovalDecided(
        approval_id=record.approval_id,
        call_id=call.call_id,
        decision=record.status,
        decided_by=record.decided_by,
        decided_at=record.decided_at,
        note=record.note,
        arguments_hash=record.arguments_hash,
    )
