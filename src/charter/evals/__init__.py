"""Evals and release gates: run a suite of cases through the real runtime, report, compare.

::

    loaded = load_suite("examples/evals/regression.yaml")
    report = run_suite(loaded, agent=load_agent("src/charter/demo/agent.yaml"), repeat=2)
    print(report.metrics.pass_rate)          # pass^k: cases that passed in all k runs
    rows = gate(baseline_report, report)     # every row's .passed, or the candidate regressed

A suite (YAML) is a list of cases: the input, who asks (tenant, principal, roles), the state of
the simulated outside world the suite names (:class:`World`; by default the demo's support
desk), optionally a scripted model, tool faults (``charter.evals._faults``) or a worker killed
at a fault point, and expectations checked against the run's log and the world's own records.
Three kinds: ``regression`` (expected behaviours), ``redteam`` (attacks; success means blocked;
red-team corpus files join with ``corpus:``) and ``reliability`` (faults; the runtime must
recover without duplicate effects).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from charter.agents import Agent
from charter.evals._report import GateRow, Metrics, Report, build_report, gate, load_report
from charter.evals._runner import CaseRun, run_cases
from charter.evals._suite import Case, Expect, LoadedSuite, Suite, Thresholds, load_suite
from charter.evals._world import DEFAULT_WORLD, World, WorldKind, resolve_world
from charter.policy import PolicySet


def run_suite(
    loaded: LoadedSuite,
    *,
    agent: Agent,
    repeat: int | None = None,
    workdir: Path | None = None,
    progress: Callable[[CaseRun], None] | None = None,
) -> Report:
    """Run every case ``repeat`` times (the suite's ``repeat`` by default) and report.

    The suite's ``policy``, when it names one, replaces the agent's own (the report's agent
    hash is then that of the agent under this policy). Each run gets a fresh world of the kind
    the suite names (``world:``).
    """
    k = repeat if repeat is not None else loaded.suite.repeat
    if loaded.policy_path is not None:
        agent = dataclasses.replace(agent, policy=PolicySet.load(loaded.policy_path))
    cases = list(loaded.suite.cases)
    world = resolve_world(loaded.suite.world)

    def run(where: Path) -> list[CaseRun]:
        return run_cases(cases, agent, world=world, workdir=where, repeat=k, progress=progress)

    if workdir is not None:
        runs = run(workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="charter-eval-") as tmp:
            runs = run(Path(tmp))
    return build_report(
        loaded,
        runs,
        agent_name=agent.name,
        agent_version=agent.version,
        agent_hash=agent.agent_hash,
        repeat=k,
    )


__all__ = [
    "DEFAULT_WORLD",
    "Case",
    "CaseRun",
    "Expect",
    "GateRow",
    "LoadedSuite",
    "Metrics",
    "Report",
    "Suite",
    "Thresholds",
    "World",
    "WorldKind",
    "gate",
    "load_report",
    "load_suite",
    "resolve_world",
    "run_suite",
]
