"""Eval suites as data: the YAML grammar (pydantic, unknown fields refused) and loading it with
line numbers, the suite's hash, and red-team corpus files turned into eval cases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from charter._yaml_lines import locate
from charter.errors import ConfigError
from charter.evals._corpus import load_corpus
from charter.evals._faults import ToolFault
from charter.worker import FAULT_POINTS

SuiteKind = Literal["regression", "redteam", "reliability"]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Call(_Data):
    tool: str
    args: dict[str, Any] = {}


class TicketState(_Data):
    ticket_id: str
    customer_id: str
    subject: str
    body: str


class PageState(_Data):
    url: str
    body: str


class SystemsState(_Data):
    """What the case changes in the freshly seeded simulated systems before the run."""

    tickets: tuple[TicketState, ...] = ()
    pages: tuple[PageState, ...] = ()
    billing_latency_s: float = Field(0.0, ge=0)


class KillWorker(_Data):
    """Work the run first in a real ``charter worker`` process killed at ``point``."""

    point: str
    nth: int = Field(1, ge=1)
    delay_s: float = Field(0.05, ge=0)
    """For ``during_tool_call``: how long into the write call the worker dies."""

    @field_validator("point")
    @classmethod
    def _known(cls, point: str) -> str:
        if point not in FAULT_POINTS:
            raise ValueError(f"unknown fault point {point!r} (one of: {', '.join(FAULT_POINTS)})")
        return point


class Approve(_Data):
    """Decide approval requests the run waits for, as ``by`` (given ``role`` in the tenant)."""

    by: str
    role: str
    decision: Literal["grant", "deny"] = "grant"


class RefundState(_Data):
    order_id: str | None = None
    amount: float | None = None


class FinalState(_Data):
    """The simulated systems after the run (only what is given is checked)."""

    refunds: tuple[RefundState, ...] | None = None
    """Every refund in billing's ledger, in order (given fields compared)."""
    ticket_status: dict[str, str] = {}
    emails: int | None = Field(None, ge=0)
    """Messages in the mail relay's outbox."""


class Expect(_Data):
    status: str | tuple[str, ...] | None = None
    called: tuple[str, ...] = ()
    """Tools that must have executed (started, succeeded or failed after running)."""
    not_called: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    """Tools the model proposed that must not have executed (denied, held, rejected)."""
    calls: dict[str, Literal["executed", "blocked"]] = {}
    """By call id (``call_STEP_I`` for scripted models): what must have become of the call."""
    args: tuple[Call, ...] = ()
    """For each: some executed call of ``tool`` had (at least) these arguments."""
    failed: tuple[str, ...] = ()
    """Tools whose call failed with a structured error the model saw."""
    retried: tuple[str, ...] = ()
    """Tools that succeeded after more than one attempt."""
    reconciled: tuple[str, ...] = ()
    """Tools whose unknown outcome was settled by asking the external system."""
    late: tuple[str, ...] = ()
    """Tools whose result came after their timeout, from an attempt the run waited for."""
    final_state: FinalState | None = None
    no_policy_violation: bool = False
    """No proposal of the run was denied by policy."""
    exactly_once: bool = True
    """Billing's ledger and the outbox hold at most one effect per idempotency key."""
    max_cost_usd: float | None = Field(None, ge=0)
    max_steps: int | None = Field(None, ge=0)
    max_tool_calls: int | None = Field(None, ge=0)

    def statuses(self) -> tuple[str, ...]:
        if self.status is None:
            return ()
        return (self.status,) if isinstance(self.status, str) else self.status


class Case(_Data):
    id: str
    description: str = ""
    input: str
    tenant: str = "acme"
    principal: str = "anonymous"
    principal_tenant: str | None = None
    roles: tuple[str, ...] = ()
    environment: str = "prod"
    trust_tier: str | None = None
    state: SystemsState = SystemsState()
    turns: tuple[tuple[Call, ...], ...] | None = None
    """A scripted model for this case (turn by turn, then "Done."); else the agent's model."""
    faults: tuple[ToolFault, ...] = ()
    kill_worker: KillWorker | None = None
    replies: tuple[str, ...] = ()
    """Messages sent, one each time the run waits for one."""
    approve: Approve | None = None
    expect: Expect = Expect()

    def script(self) -> list[dict[str, Any]] | None:
        if self.turns is None:
            return None
        turns: list[dict[str, Any]] = [
            {"tool_calls": [{"name": c.tool, "arguments": c.args} for c in turn]}
            for turn in self.turns
        ]
        return [*turns, {"content": "Done."}]


class Thresholds(_Data):
    """How far the candidate may fall behind the baseline before ``charter gate`` fails."""

    pass_rate: float = Field(0.0, ge=0)
    """Largest allowed drop in pass^k (absolute, 0.05 = 5 points)."""
    completion_rate: float = Field(0.0, ge=0)
    """Largest allowed drop (absolute)."""
    escalation_rate: float = Field(0.0, ge=0)
    """Largest allowed rise (absolute)."""
    policy_violations: float = Field(0.0, ge=0)
    """Largest allowed rise in policy denials per run (absolute)."""
    cost_per_success: float = Field(0.10, ge=0)
    """Largest allowed rise (relative, 0.10 = 10 %)."""
    p95_latency: float = Field(0.50, ge=0)
    """Largest allowed rise (relative)."""


class Suite(_Data):
    name: str
    kind: SuiteKind
    description: str = ""
    agent: str | None = None
    """The agent file (relative to the suite) when ``--agent`` is not given."""
    policy: str | None = None
    """A policy file (relative to the suite) that replaces the agent's own for this suite."""
    repeat: int = Field(1, ge=1)
    thresholds: Thresholds = Thresholds()
    corpus: tuple[str, ...] = ()
    """Red-team corpus files (globs, relative to the suite) whose cases join this suite."""
    cases: tuple[Case, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        ids = [c.id for c in self.cases]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate case ids: {', '.join(dup)}")
        return self


class _SuiteFile(_Data):
    suite: Suite


class LoadedSuite(BaseModel):
    """A suite with where it came from and its hash (the canonical JSON of its content)."""

    model_config = ConfigDict(frozen=True)

    suite: Suite
    path: Path
    hash: str

    @property
    def agent_path(self) -> Path | None:
        return None if self.suite.agent is None else self.path.parent / self.suite.agent

    @property
    def policy_path(self) -> Path | None:
        return None if self.suite.policy is None else self.path.parent / self.suite.policy


def load_suite(path: str | Path) -> LoadedSuite:
    """Read and check a suite file; each problem is a ConfigError with ``file:line``."""
    path = Path(path)
    data, node = _read(path)
    try:
        suite = _SuiteFile.model_validate(data).suite
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(exc, data, node, str(path)))) from None
    if suite.corpus:
        suite = suite.model_copy(update={"cases": (*suite.cases, *_corpus(path, suite))})
    if not suite.cases:
        raise ConfigError(f"{path}: the suite has no cases")
    canonical = json.dumps(suite.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return LoadedSuite(suite=suite, path=path, hash=digest)


def _corpus(path: Path, suite: Suite) -> list[Case]:
    """Red-team cases as eval cases: an attack's target calls blocked, legitimate ones run.

    A case marked ``known_miss`` is expected to be missed still (as the red-team test says).
    """
    files = sorted({f for pattern in suite.corpus for f in path.parent.glob(pattern)})
    if not files:
        raise ConfigError(f"{path}: corpus {', '.join(suite.corpus)} matches no file")
    try:
        corpus = load_corpus(files)
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"{path}: corpus: {exc}") from None
    cases = []
    for rc in corpus:
        stopped = (rc.label == "attack") != rc.known_miss
        fate: Literal["executed", "blocked"] = "blocked" if stopped else "executed"
        cases.append(
            Case(
                id=rc.id,
                description=rc.description + (" (known miss)" if rc.known_miss else ""),
                input=rc.input,
                tenant=rc.tenant,
                principal=rc.principal,
                principal_tenant=rc.principal_tenant,
                roles=rc.roles,
                environment=rc.environment,
                trust_tier=rc.trust_tier,
                state=SystemsState(
                    tickets=tuple(TicketState(**t.model_dump()) for t in rc.tickets),
                    pages=tuple(PageState(**p.model_dump()) for p in rc.pages),
                ),
                turns=tuple(tuple(Call(tool=c.tool, args=c.args) for c in t) for t in rc.turns),
                expect=Expect(calls=dict.fromkeys(rc.targets(), fate)),
            )
        )
    return cases


# -- reading YAML with line numbers ----------------------------------------------------------


def _read(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such suite file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the suite file: {exc.strerror}") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, node


def _describe(exc: ValidationError, data: Any, node: yaml.Node | None, source: str) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path, line = locate(data, node, loc)
        where = f"{source}:{line}" if line is not None else source
        case = _case_label(data, path)
        dotted = ".".join(str(p) for p in path)
        if err["type"] == "extra_forbidden":
            problem = f"unknown field {dotted!r}"
        elif err["type"] == "missing":
            problem = f"missing field {'.'.join(str(p) for p in [*path, loc[-1]])!r}"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            problem = f"{dotted}: {message}" if dotted else message
        lines.append(f"{where}: {case}{problem}")
    return lines


def _case_label(data: Any, path: list[Any]) -> str:
    if path[:2] != ["suite", "cases"] or len(path) < 3:
        return ""
    try:
        return f"case {data['suite']['cases'][path[2]]['id']!r}: "
    except (KeyError, IndexError, TypeError):
        return f"cases[{path[2]}]: "
