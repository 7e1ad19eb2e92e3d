"""The support desk's tools: Charter contracts over the simulated CRM, ticketing and billing.

Each contract says honestly what the call does to the world: reads are ``read``; the ticket
update is a write that honours its idempotency key; the refund is a write that does *not*
(billing makes a new refund per call) but can be reconciled by asking billing for the key;
the email is a write that can be neither repeated safely nor checked, so an unknown outcome
for it escalates to a human.

The tools open the systems database on every call: the one the runtime names in its
``resources`` (:data:`charter.testing.systems.RESOURCE`), else ``charter-demo-systems.db`` in
the working directory, so a worker in another process, started in the same directory, finds
the same systems. Nothing process-wide: two runtimes in one process can use two databases.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

import charter
from charter import Reconciliation, ToolContext, ToolError
from charter.testing.systems import (
    DEFAULT_FILE,
    RESOURCE,
    RecordNotFound,
    Systems,
    SystemsError,
)


def systems(ctx: ToolContext) -> Systems:
    """The systems the call's tools talk to (the database must exist and be seeded)."""
    try:
        return Systems(ctx.resources.get(RESOURCE, DEFAULT_FILE), create=False)
    except SystemsError as exc:
        raise ToolError(str(exc)) from exc


def _as_tool_error(exc: SystemsError) -> ToolError:
    """The systems' refusal as an error the model can read and act on."""
    kind = "not found" if isinstance(exc, RecordNotFound) else "rejected"
    return ToolError(f"{kind}: {exc}")


# -- outputs ---------------------------------------------------------------------------------


class Article(BaseModel):
    article_id: str
    title: str
    snippet: str
    score: int


class Customer(BaseModel):
    customer_id: str
    name: str
    email: str
    tier: str


class Order(BaseModel):
    order_id: str
    customer_id: str
    item: str
    amount: float
    refunded: float
    currency: str
    status: str
    placed_on: str
    tracking: str | None = None


class Ticket(BaseModel):
    ticket_id: str
    customer_id: str
    subject: str
    body: str
    status: str


class Page(BaseModel):
    url: str
    text: str


class TicketUpdate(BaseModel):
    update_id: int
    ticket_id: str
    status: str
    note: str


class Refund(BaseModel):
    refund_id: str
    order_id: str
    amount: float
    currency: str
    reason: str


class EmailReceipt(BaseModel):
    message_id: int
    recipient: str
    subject: str


# -- reads -----------------------------------------------------------------------------------


# Untrusted output: text that customers, web authors or anyone with edit rights wrote. Values
# found only there may not steer money or mail without a person (examples/policies/support.yaml).


@charter.tool(effect="read", owner="support", untrusted_output=True)
def kb_search(ctx: ToolContext, query: str) -> list[Article]:
    """Search the help-centre knowledge base; returns up to three matching articles."""
    return [Article.model_validate(hit) for hit in systems(ctx).kb_search(query)]


@charter.tool(effect="read", owner="support", untrusted_output=True)
def read_ticket(ctx: ToolContext, ticket_id: str) -> Ticket:
    """Read a support ticket: the customer's subject and message, as the customer wrote them."""
    try:
        found = systems(ctx).ticket(ticket_id)
    except SystemsError as exc:
        raise _as_tool_error(exc) from exc
    return Ticket.model_validate(found)


@charter.tool(
    effect="read", risk="medium", owner="support", destinations=["url"], untrusted_output=True
)
def fetch_url(ctx: ToolContext, url: str) -> Page:
    """Fetch a web page (for example a help-centre article) and return its text."""
    try:
        return Page(url=url, text=systems(ctx).page(url))
    except SystemsError as exc:
        raise _as_tool_error(exc) from exc


# Trusted output: the CRM's and billing's own records.


@charter.tool(effect="read", owner="support")
def lookup_order(ctx: ToolContext, order_id: str) -> Order:
    """Look an order up in the CRM: item, amount, amount already refunded, status, tracking."""
    try:
        return Order.model_validate(systems(ctx).order(order_id))
    except SystemsError as exc:
        raise _as_tool_error(exc) from exc


@charter.tool(effect="read", owner="support")
def lookup_customer(ctx: ToolContext, customer_id: str) -> Customer:
    """Look a customer up in the CRM: name, email address on file, tier."""
    try:
        return Customer.model_validate(systems(ctx).customer(customer_id))
    except SystemsError as exc:
        raise _as_tool_error(exc) from exc


# -- writes ----------------------------------------------------------------------------------


@charter.tool(effect="write", risk="medium", owner="support", idempotent=True)
def update_ticket(
    ctx: ToolContext,
    ticket_id: str,
    status: Literal["open", "pending", "resolved", "escalated"],
    note: str,
) -> TicketUpdate:
    """Set a support ticket's status and add an internal note explaining what was done."""
    key = ctx.idempotency_key or f"{ctx.run_id}:{ctx.step}:{ctx.call_id}"
    try:
        return TicketUpdate.model_validate(systems(ctx).update_ticket(ticket_id, status, note, key))
    except SystemsError as exc:
        raise _as_tool_error(exc) from exc


@charter.tool(effect="write", risk="high", owner="billing", idempotent=False, timeout_s=3.0)
def refund(ctx: ToolContext, order_id: str, amount: float, reason: str = "") -> Refund:
    """Refund part or all of an order to the customer's card (amount in EUR)."""
    ctx.ensure_lease()  # billing cannot deduplicate: never pay beside a worker that took over
    try:
        made = systems(ctx).refund(
            order_id,
            amount,
            ctx.idempotency_key,
            ctx.run_id,
            reason=reason,
            fencing_token=ctx.fencing_token,
        )
    except SystemsError as exc:
        raise _as_tool_error(exc) from exc
    return Refund.model_validate(made)


@refund.reconciler
def _refund_happened(ctx: ToolContext, arguments: dict[str, Any]) -> Reconciliation:
    """Ask billing whether a refund with this call's idempotency key exists; if not, billing
    fences the key, so an earlier attempt still on its way is refused when it lands."""
    if ctx.idempotency_key is None:
        return Reconciliation(applied=None)
    found = systems(ctx).reconcile_refund(ctx.idempotency_key, ctx.fencing_token)
    if found is None:
        return Reconciliation(applied=False, fenced=True)
    return Reconciliation(applied=True, output=Refund.model_validate(found))


@refund.previewer
def _refund_changes(ctx: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """What an approver sees: the order's refunded total before and after."""
    order = systems(ctx).order(str(arguments["order_id"]))
    after = round(order["refunded"] + float(arguments["amount"]), 2)
    return {f"order {order['order_id']} refunded": (order["refunded"], after)}


@charter.tool(effect="write", risk="medium", owner="support", idempotent=False, destinations=["to"])
def send_email(ctx: ToolContext, to: str, subject: str, body: str) -> EmailReceipt:
    """Email a customer. Every call sends a message; there is no way to ask if one went out."""
    receipt = systems(ctx).send_email(
        to, subject, body, idempotency_key=ctx.idempotency_key, run_id=ctx.run_id
    )
    return EmailReceipt.model_validate(receipt)


TOOLS = (
    read_ticket,
    kb_search,
    fetch_url,
    lookup_order,
    lookup_customer,
    update_ticket,
    refund,
    send_email,
)
"""Every support-desk tool (the demo agent, `agent.yaml`, has the writes and some reads)."""
