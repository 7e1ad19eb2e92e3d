"""The support agent's tools, as the README's agent file names them.

They are the demo's tools (``charter.demo.tools``) over the simulated CRM, tickets and billing
(``kb_search``, ``read_ticket`` and ``fetch_url`` mark their output untrusted: others wrote it),
whose database is ``charter-demo-systems.db`` in the working directory, seeded on first use.
"""

from pathlib import Path

from charter.demo.tools import (
    fetch_url,
    kb_search,
    lookup_customer,
    lookup_order,
    read_ticket,
    refund,
    send_email,
    update_ticket,
)
from charter.testing.systems import DEFAULT_FILE, Systems

if not Path(DEFAULT_FILE).exists():
    Systems(DEFAULT_FILE).seed()

__all__ = [
    "fetch_url",
    "kb_search",
    "lookup_customer",
    "lookup_order",
    "read_ticket",
    "refund",
    "send_email",
    "update_ticket",
]
