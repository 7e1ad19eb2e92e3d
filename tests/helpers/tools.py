"""Tools that tests refer to by import reference, e.g. ``tests.helpers.tools:lookup``."""

from __future__ import annotations

from charter import ToolContext, tool


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


@tool(effect="write", risk="high", owner="billing")
def refund(ctx: ToolContext, order_id: str, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount} for {order_id} key={ctx.idempotency_key}"


def not_a_tool(order_id: str) -> str:
    """A plain function, not decorated with @tool."""
    return order_id
