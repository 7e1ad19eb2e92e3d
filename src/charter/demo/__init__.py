"""The support-desk demo: an agent works tickets against a simulated CRM, tickets and billing.

``charter demo`` (or :func:`charter.demo.run.run_demo`) seeds the systems, works a handful of
realistic tickets, kills a worker in the middle of a refund, resumes the run in another worker
and shows that billing's own ledger holds exactly one refund; then it verifies the audit log.
"""

from __future__ import annotations

from pathlib import Path

from charter.agents import Agent, load_agent

AGENT_FILE = Path(__file__).with_name("agent.yaml")


def load_demo_agent() -> Agent:
    """The ``support_triage`` agent defined by ``agent.yaml`` beside this module."""
    return load_agent(AGENT_FILE)


__all__ = ["AGENT_FILE", "load_demo_agent"]
