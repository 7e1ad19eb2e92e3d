"""Running an eval case through the real runtime, on its own SQLite file and simulated world.

Each run of a case gets a directory of its own: ``charter.db`` (Charter's store) and a fresh
world (:mod:`charter.evals._world`; the support desk by default: the simulated CRM,
ticketing and billing file, seeded and then changed as the case's ``state`` says). The
agent is the suite's agent, with the case's scripted model (``turns``) and tool faults
applied in this process. A ``kill_worker`` case first lets a real ``charter worker`` process
take the run and die by SIGKILL at the named fault point, then resumes it here, as the
demo's crash scene does. The run is then driven while it waits: replies are sent, approval
requests decided, and the expectations are checked against the log and the world.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from charter.agents import Agent
from charter.evals._checks import check, observe
from charter.evals._faults import apply_faults
from charter.evals._suite import Case, KillWorker
from charter.evals._world import World, WorldKind
from charter.events import RunStatus
from charter.models import ModelSpec
from charter.runtime import Runtime

MAX_WAITS = 10


@dataclass(frozen=True, slots=True)
class CaseRun:
    """One run of one case: the verdict and the figures the report aggregates."""

    case_id: str
    repeat: int
    passed: bool
    status: RunStatus | Literal["error"]
    """The run's final status; ``error``: the case could not be run."""
    failures: tuple[str, ...]
    run_id: str | None
    steps: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    policy_violations: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "failures": list(self.failures)}


def case_agent(case: Case, agent: Agent) -> Agent:
    """The suite's agent as this case runs it: its scripted model, trust tier, faulty tools."""
    changes: dict[str, Any] = {}
    script = case.script()
    if script is not None:
        changes["model"] = ModelSpec(provider="scripted", name="eval-script", script=script)
    if case.trust_tier is not None:
        changes["trust_tier"] = case.trust_tier
    if case.faults:
        changes["tools"] = apply_faults(list(agent.tools), case.faults)
    return dataclasses.replace(agent, **changes) if changes else agent


async def run_case(
    case: Case, agent: Agent, *, world: WorldKind, workdir: Path, repeat: int
) -> CaseRun:
    """Run ``case`` once (its ``repeat``-th time) in a fresh ``world`` and check it; errors
    become failures."""
    where = workdir / f"{case.id}-{repeat}"
    where.mkdir(parents=True, exist_ok=True)
    try:
        made = world.create(where, world.state_model.model_validate(case.state))
        final = case.expect.final_state
        expected = None if final is None else world.final_state_model.model_validate(final)
        return await _run(case, case_agent(case, agent), made, expected, where, repeat)
    except Exception as exc:  # a broken case is a failed case, named, not a crashed suite
        failure = f"could not run: {type(exc).__name__}: {exc}"
        return CaseRun(case.id, repeat, False, "error", (failure,), None)


async def _run(
    case: Case, agent: Agent, world: World, final_state: Any, where: Path, repeat: int
) -> CaseRun:
    url = f"sqlite:///{where / 'charter.db'}"
    problems: list[str] = []
    began = time.monotonic()
    opened = Runtime.open(url, environment=case.environment, resources=world.resources())
    async with opened as rt:
        run_id = await rt.start(
            agent,
            case.input,
            tenant=case.tenant,
            principal=case.principal,
            roles=case.roles,
            principal_tenant=case.principal_tenant,
        )
        if case.kill_worker is not None:
            problems += await _killed_worker(url, where, case.kill_worker)
            world.heal()
            await rt.work(until_idle=True, lease_s=1)
        else:
            await rt.work(run_id=run_id)
        await _drive(rt, case, run_id)
        latency_ms = (time.monotonic() - began) * 1000
        record = await rt.get_run(run_id)
        events = await rt.events(run_id)
        problems += [f"hash chain breaks at seq {b.seq}: {b.reason}" for b in await rt.verify()]
    state = record.state
    problems += check(
        case.expect,
        status=record.status,
        state=state,
        events=events,
        world=world,
        final_state=final_state,
    )
    return CaseRun(
        case_id=case.id,
        repeat=repeat,
        passed=not problems,
        status=record.status,
        failures=tuple(problems),
        run_id=run_id,
        steps=int(state.get("step", 0)),
        tool_calls=int(state.get("tool_calls", 0)),
        cost_usd=float(state.get("cost_usd", 0.0)),
        latency_ms=round(latency_ms, 3),
        policy_violations=observe(events).denials,
    )


async def _drive(rt: Runtime, case: Case, run_id: str) -> None:
    """While the run waits: send the next reply, or decide its approval requests."""
    replies = list(case.replies)
    for _ in range(MAX_WAITS):
        record = await rt.get_run(run_id)
        if record.status != "waiting":
            return
        if record.waiting_for == "message" and replies:
            await rt.send(run_id, replies.pop(0))
        elif record.waiting_for == "approval" and case.approve is not None:
            if not await _decide(rt, case, run_id):
                return
        else:
            return
        await rt.work(run_id=run_id)


async def _decide(rt: Runtime, case: Case, run_id: str) -> bool:
    approve = case.approve
    assert approve is not None
    pending = [a for a in await rt.approvals(tenant=case.tenant) if a.run_id == run_id]
    await rt.store.set_role(principal=approve.by, role=approve.role, tenant=case.tenant, on=True)
    for request in pending:
        if approve.decision == "grant":
            await rt.grant(
                request.approval_id, by=approve.by, arguments_hash=request.arguments_hash
            )
        else:
            await rt.deny(request.approval_id, by=approve.by, reason="denied by the eval case")
    return bool(pending)


async def _killed_worker(url: str, where: Path, kill: KillWorker) -> list[str]:
    """Work the run in a ``charter worker`` process that kills itself at ``kill.point``."""
    command = [
        sys.executable, "-m", "charter", "worker", "--db", url, "--until-idle",
        "--lease-seconds", "1", "--fault-point", f"{kill.point}:{kill.nth}",
        "--fault-delay", str(kill.delay_s),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    env.pop("CHARTER_DB", None)
    child = await asyncio.to_thread(
        subprocess.run, command, cwd=where, env=env, capture_output=True, text=True, timeout=120
    )
    if child.returncode == -signal.SIGKILL:
        return []
    tail = " | ".join(child.stderr.strip().splitlines()[-3:])
    return [f"the worker was not killed at {kill.point} (exit {child.returncode}) {tail}".rstrip()]


def run_cases(
    cases: list[Case],
    agent: Agent,
    *,
    world: WorldKind,
    workdir: Path,
    repeat: int,
    progress: Callable[[CaseRun], None] | None = None,
) -> list[CaseRun]:
    """Every case ``repeat`` times, one after another, each in a fresh ``world``;
    ``progress`` hears of each run."""

    async def main() -> list[CaseRun]:
        runs = []
        for case in cases:
            for k in range(1, repeat + 1):
                done = await run_case(case, agent, world=world, workdir=workdir, repeat=k)
                runs.append(done)
                if progress is not None:
                    progress(done)
        return runs

    return asyncio.run(main())
