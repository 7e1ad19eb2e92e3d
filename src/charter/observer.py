"""What the engine tells an observer about a run, in plain values.

The engine (``charter._engine``) calls an :class:`Observer` around one claim of a run, each
model step, each model call and each tool call, and after each policy decision; an observer
never sees the engine's objects, only the values below (and the events it appends). Tracing
(:mod:`charter.telemetry`) is one observer; it is the engine's default.

Each ``*_started`` call returns a :class:`Scope` that the engine then closes: ``ended`` with
what came of it (when something did), ``failed`` with the exception that escaped, and
``close`` always, last. The engine asks :meth:`Observer.enabled` first and skips building the
values when it is False, so an observer that is off costs one call per hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from charter.events import CallEffect, PolicyEvaluated, RunStatus

__all__ = [
    "ModelAnswered",
    "ModelCalled",
    "ModelFailed",
    "Observer",
    "RunClaimed",
    "RunEnded",
    "Scope",
    "ToolCalled",
    "ToolEnded",
]


@dataclass(frozen=True, slots=True)
class RunClaimed:
    """A worker claimed the run and starts driving it."""

    run_id: str
    agent_name: str
    agent_version: str
    tenant: str
    principal: str
    worker_id: str
    epoch: int
    previous_status: RunStatus | None


@dataclass(frozen=True, slots=True)
class RunEnded:
    """The claim ended: the run parked or finished with this state."""

    status: RunStatus
    steps: int
    tool_calls: int
    tokens: int
    cost_usd: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class ModelCalled:
    """The model chosen for a step is asked (retries of the call included)."""

    run_id: str
    step: int
    """1-based: the step this call answers."""
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class ModelAnswered:
    """The model answered; tokens and cost count every answered attempt of the step."""

    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    tool_calls: int
    cost_usd: float
    retries: int


@dataclass(frozen=True, slots=True)
class ModelFailed:
    """The model call failed; what the refused answers still cost."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    retries: int


@dataclass(frozen=True, slots=True)
class ToolCalled:
    """A tool call is about to run (with its policy decision, when it was governed)."""

    run_id: str
    step: int
    tool: str
    call_id: str
    effect: CallEffect
    version: str | None
    """The tool's version, when the agent has the tool."""
    idempotency_key: str | None
    approval_id: str | None
    decision: PolicyEvaluated | None


@dataclass(frozen=True, slots=True)
class ToolEnded:
    """What came of the tool call."""

    outcome: str
    """``succeeded``, ``failed`` or ``unknown``."""
    attempts: int
    cost_usd: float
    error_code: str | None = None
    error_message: str | None = None


class Scope(Protocol):
    """One observed operation, from its start to ``close``."""

    def ended(self, result: RunEnded | ModelAnswered | ModelFailed | ToolEnded) -> None: ...

    def failed(self, exc: Exception) -> None: ...

    def close(self) -> None: ...


class Observer(Protocol):
    def enabled(self) -> bool:
        """False: the engine calls nothing else (and builds no values) for this hook."""
        ...

    def run_claimed(self, run: RunClaimed) -> Scope: ...

    def step_started(self, run_id: str, step: int) -> Scope:
        """A model step (1-based): the model call and the tool calls it proposes."""
        ...

    def model_called(self, call: ModelCalled) -> Scope: ...

    def policy_decided(self, decision: PolicyEvaluated) -> None:
        """Policy decided on a call (inside the step's scope)."""
        ...

    def tool_called(self, call: ToolCalled) -> Scope: ...
