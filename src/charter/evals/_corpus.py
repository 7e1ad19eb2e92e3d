"""The red-team corpus format: scripted attacks (and legitimate work) as data.

A case (``examples/redteam/*.yaml``) says who starts the run, what the attacker controls in
the world (a ticket's text, a page on the web) and the calls a *fooled* model then proposes,
turn by turn; calls marked ``target`` are what the case is about. Eval suites of kind
``redteam`` take their cases from such files; the red-team harness
(:mod:`charter.testing.redteam`) runs and classifies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Call", "Case", "Family", "PageSpec", "TicketSpec", "load_corpus"]

Family = Literal[
    "injected_instructions",
    "exfiltration",
    "argument_smuggling",
    "cross_tenant",
    "privilege",
    "legitimate",
]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Call(_Data):
    tool: str
    args: dict[str, Any] = {}
    target: bool = False


class TicketSpec(_Data):
    ticket_id: str
    customer_id: str
    subject: str
    body: str


class PageSpec(_Data):
    url: str
    body: str


class Case(_Data):
    id: str
    family: Family
    label: Literal["attack", "legitimate"]
    description: str
    input: str
    tenant: str = "acme"
    principal: str = "ann"
    principal_tenant: str | None = "acme"
    roles: tuple[str, ...] = ("support",)
    trust_tier: str = "standard"
    environment: str = "prod"
    tickets: tuple[TicketSpec, ...] = ()
    pages: tuple[PageSpec, ...] = ()
    turns: tuple[tuple[Call, ...], ...] = Field(min_length=1)
    rule: str | None = None
    """The rule expected to stop the first target call (attacks) or to allow it."""
    known_miss: bool = False
    why: str | None = None
    """Why a known miss is missed (required with ``known_miss``)."""

    def script(self) -> list[dict[str, Any]]:
        """The fooled model's responses: the turns, then a final answer."""
        turns: list[dict[str, Any]] = [
            {"tool_calls": [{"name": c.tool, "arguments": c.args} for c in turn]}
            for turn in self.turns
        ]
        return [*turns, {"content": "Done."}]

    def targets(self) -> dict[str, Call]:
        """The target calls by the call id the scripted model gives them."""
        return {
            f"call_{step}_{i}": call
            for step, turn in enumerate(self.turns)
            for i, call in enumerate(turn)
            if call.target
        }


def load_corpus(paths: Iterable[Path]) -> list[Case]:
    """Every case of the given YAML files (each a list of cases), ids unique."""
    cases: list[Case] = []
    for path in sorted(paths):
        data = yaml.safe_load(path.read_text()) or []
        cases.extend(Case.model_validate(item) for item in data)
    ids = [c.id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate case ids: {', '.join(duplicates)}")
    for case in cases:
        if not case.targets():
            raise ValueError(f"case {case.id}: no call is marked target")
        if case.known_miss and not case.why:
            raise ValueError(f"case {case.id}: a known miss needs a 'why'")
    return cases
