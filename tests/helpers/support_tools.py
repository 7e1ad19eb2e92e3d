"""Tool contracts for every tool ``examples/policies/support.yaml`` names, for agent files in
tests that load that policy (e.g. ``tests.helpers.support_tools:refund``). They do nothing."""

from __future__ import annotations

from charter import tool


@tool(effect="read")
def kb_search(query: str) -> str:
    """Search the knowledge base."""
    return query


@tool(effect="read")
def lookup_order(order_id: str) -> str:
    """Look an order up."""
    return order_id


@tool(effect="read", destinations=["url"])
def fetch_url(url: str) -> str:
    """Fetch a web page."""
    return url


@tool(effect="write", risk="medium")
def update_ticket(ticket_id: str, note: str) -> str:
    """Add a note to a ticket."""
    return ticket_id


@tool(effect="write", risk="medium")
def update_customer(customer_id: str, changes: dict[str, str]) -> str:
    """Change a customer record."""
    return customer_id


@tool(effect="write", risk="high")
def refund(order_id: str, amount: float, test_mode: bool = False) -> str:
    """Refund an order."""
    return order_id


@tool(effect="write", risk="medium", destinations=["to"])
def send_email(to: str, subject: str, body: str) -> str:
    """Send an e-mail."""
    return to


@tool(effect="write", risk="critical")
def delete_customer(customer_id: str) -> str:
    """Delete a customer and all their data."""
    return customer_id
