"""Eval suites as data: the YAML grammar (pydantic, unknown fields refused) and loading it with
line numbers, the suite's hash, and red-team corpus files turned into eval cases."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from charter._yaml_lines import locate
from charter.agents import Agent, load_agent
from charter.errors import ConfigError
from charter.evals._corpus import load_corpus
from charter.evals._faults import ToolFault
from charter.evals._world import DEFAULT_WORLD, WorldKind, resolve_world
from charter.events import RunStatus
from charter.worker import FAULT_POINTS

SuiteKind = Literal["regression", "redteam", "reliability"]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Call(_Data):
    tool: str
    args: dict[str, Any] = {}


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


class Expect(_Data):
    status: RunStatus | tuple[RunStatus, ...] | None = None
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
    final_state: dict[str, Any] | None = None
    """The world after the run (only what is given is checked): its grammar is the world's
    ``final_state_model`` (the support desk: refunds, ticket_status, emails)."""
    no_policy_violation: bool = False
    """No proposal of the run was denied by policy."""
    exactly_once: bool = True
    """The world holds at most one effect per idempotency key (the support desk: billing's
    ledger and the mail outbox)."""
    max_cost_usd: float | None = Field(None, ge=0)
    max_steps: int | None = Field(None, ge=0)
    max_tool_calls: int | None = Field(None, ge=0)

    def statuses(self) -> tuple[RunStatus, ...]:
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
    state: dict[str, Any] = {}
    """The fixtures: what the case changes in its fresh world before the run. Its grammar is
    the world's ``state_model`` (the support desk: tickets, pages, billing_latency_s)."""
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
    world: str = DEFAULT_WORLD
    """The simulated outside world the cases run against: an entry point name or
    ``package.module:Name`` (:mod:`charter.evals._world`)."""
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

    def load_agent(self, path: str | Path | None = None) -> Agent:
        """The agent under test: the file ``path`` (``--agent``), else the suite's own."""
        chosen = Path(path) if path is not None else self.agent_path
        if chosen is None:
            raise ConfigError(
                f"{self.path}: no agent to evaluate",
                hint="give --agent AGENT.yaml or suite.agent",
            )
        return load_agent(chosen)


def load_suite(path: str | Path) -> LoadedSuite:
    """Read and check a suite file; each problem is a ConfigError with ``file:line``."""
    path = Path(path)
    data, node = _read(path)
    try:
        suite = _SuiteFile.model_validate(data).suite
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(exc.errors(), data, node, str(path)))) from None
    if suite.corpus:
        suite = suite.model_copy(update={"cases": (*suite.cases, *_corpus(path, suite))})
    if not suite.cases:
        raise ConfigError(f"{path}: the suite has no cases")
    try:
        world = resolve_world(suite.world)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}", hint=exc.hint) from None
    suite = _in_world(suite, world, data, node, str(path))
    canonical = json.dumps(suite.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return LoadedSuite(suite=suite, path=path, hash=digest)


def _in_world(
    suite: Suite, world: WorldKind, data: Any, node: yaml.Node | None, source: str
) -> Suite:
    """The suite with each case's ``state`` and ``expect.final_state`` checked by the world's
    grammar and written out in full (defaults included, so the suite's hash covers them)."""
    cases: list[Case] = []
    errors: list[ErrorDetails] = []
    for i, case in enumerate(suite.cases):
        at = ("suite", "cases", i)
        update: dict[str, Any] = {}
        try:
            update["state"] = world.state_model.model_validate(case.state).model_dump(mode="json")
        except ValidationError as exc:
            errors += _under((*at, "state"), exc)
        if case.expect.final_state is not None:
            try:
                final = world.final_state_model.model_validate(case.expect.final_state)
            except ValidationError as exc:
                errors += _under((*at, "expect", "final_state"), exc)
            else:
                final_state = final.model_dump(mode="json")
                update["expect"] = case.expect.model_copy(update={"final_state": final_state})
        cases.append(case.model_copy(update=update))
    if errors:
        raise ConfigError("\n".join(_describe(errors, data, node, source)))
    return suite.model_copy(update={"cases": tuple(cases)})


def _under(prefix: tuple[str | int, ...], exc: ValidationError) -> list[ErrorDetails]:
    """``exc``'s errors, located under ``prefix`` in the suite file."""
    found: list[ErrorDetails] = []
    for error in exc.errors():
        moved: ErrorDetails = {**error, "loc": (*prefix, *error["loc"])}
        found.append(moved)
    return found


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
                state={
                    "tickets": [t.model_dump(mode="json") for t in rc.tickets],
                    "pages": [p.model_dump(mode="json") for p in rc.pages],
                },
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


def _describe(
    errors: Sequence[ErrorDetails], data: Any, node: yaml.Node | None, source: str
) -> list[str]:
    lines = []
    for err in errors:
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
