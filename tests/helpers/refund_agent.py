"""The agent file several CLI tests share: a run that refunds 120.00, held for a lead."""

from __future__ import annotations

import json
from pathlib import Path

REFUNDS_POLICY = """\
policy:
  name: refunds
  rules:
    - id: medium
      when: {tool: refund, args: {amount: {gt: 50}}}
      then: {require_approval: {tier: manager, role: lead, expires_in: 2h}}
    - id: small
      when: {tool: refund}
      then: allow
"""


def write_refund_agent(tmp: Path, *, extra: str = "") -> Path:
    """``agent.yaml`` in ``tmp`` (with its prompt, script and policy): the scripted model asks
    for a 120.00 refund of order 7, which the policy holds for a ``lead``, then answers
    "done". ``extra``: more lines for the agent section (indented by two spaces)."""
    (tmp / "prompt.md").write_text("Refund.")
    script = [
        {"tool_calls": [{"name": "refund", "arguments": {"order_id": "7", "amount": 120}}]},
        {"content": "done"},
    ]
    (tmp / "script.json").write_text(json.dumps(script))
    (tmp / "policy.yaml").write_text(REFUNDS_POLICY)
    agent = tmp / "agent.yaml"
    agent.write_text(
        "agent:\n  name: a\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n"
        '  tools: ["tests.helpers.tools:refund"]\n  policy: policy.yaml\n' + extra
    )
    return agent
