"""The eval report (a plain JSON document) and the release gate that compares two of them.

A report names its suite (name and hash: the canonical JSON of the suite's content) and the
agent (its agent hash), lists every run of every case, and carries the aggregate metrics and
the suite's thresholds. ``gate`` refuses to compare reports of different suites: the metrics
only mean something over the same cases, and the thresholds come with the suite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from charter.clock import wall_clock
from charter.errors import ConfigError
from charter.evals._runner import CaseRun
from charter.evals._suite import LoadedSuite, Thresholds

REPORT_VERSION = 1


class Metrics(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cases: int
    runs: int
    pass_rate: float
    """pass^k: the share of cases that passed in every one of their runs."""
    run_pass_rate: float
    completion_rate: float
    """Runs that ended ``succeeded``."""
    escalation_rate: float
    policy_violations: float
    """Proposals denied by policy, per run."""
    cost_per_success_usd: float | None
    p95_latency_ms: float


class CaseSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    passed: bool
    """Passed in every run (pass^k)."""
    runs: list[dict[str, Any]]


class Report(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = REPORT_VERSION
    suite: str
    suite_kind: str
    suite_hash: str
    agent_name: str
    agent_version: str
    agent_hash: str
    repeat: int
    created_at: float
    thresholds: Thresholds
    metrics: Metrics
    cases: list[CaseSummary]

    @property
    def failed_cases(self) -> list[CaseSummary]:
        return [c for c in self.cases if not c.passed]


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by the nearest-rank method (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def metrics(runs: Sequence[CaseRun]) -> Metrics:
    by_case: dict[str, list[CaseRun]] = {}
    for r in runs:
        by_case.setdefault(r.case_id, []).append(r)
    n = len(runs) or 1
    successes = [r for r in runs if r.status == "succeeded"]
    cost = sum(r.cost_usd for r in runs)
    return Metrics(
        cases=len(by_case),
        runs=len(runs),
        pass_rate=sum(all(r.passed for r in rs) for rs in by_case.values()) / (len(by_case) or 1),
        run_pass_rate=sum(r.passed for r in runs) / n,
        completion_rate=len(successes) / n,
        escalation_rate=sum(r.status == "escalated" for r in runs) / n,
        policy_violations=sum(r.policy_violations for r in runs) / n,
        cost_per_success_usd=cost / len(successes) if successes else None,
        p95_latency_ms=round(p95([r.latency_ms for r in runs]), 3),
    )


def build_report(
    loaded: LoadedSuite,
    runs: Sequence[CaseRun],
    *,
    agent_name: str,
    agent_version: str,
    agent_hash: str,
    repeat: int,
) -> Report:
    by_case: dict[str, list[CaseRun]] = {}
    for r in runs:
        by_case.setdefault(r.case_id, []).append(r)
    return Report(
        suite=loaded.suite.name,
        suite_kind=loaded.suite.kind,
        suite_hash=loaded.hash,
        agent_name=agent_name,
        agent_version=agent_version,
        agent_hash=agent_hash,
        repeat=repeat,
        created_at=wall_clock(),
        thresholds=loaded.suite.thresholds,
        metrics=metrics(runs),
        cases=[
            CaseSummary(
                case_id=case_id,
                passed=all(r.passed for r in rs),
                runs=[r.to_dict() for r in rs],
            )
            for case_id, rs in by_case.items()
        ],
    )


def load_report(path: str | Path) -> Report:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such report file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON eval report: {exc}") from None
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{path}: not a charter eval report ({where}: {first['msg']})",
            hint="write one with: charter eval SUITE.yaml --report OUT.json",
        ) from None


# -- the gate --------------------------------------------------------------------------------

Direction = Literal["higher", "lower"]
GATED: tuple[tuple[str, str, Direction, bool], ...] = (
    # metric, threshold field, better when, threshold relative to the baseline
    ("pass_rate", "pass_rate", "higher", False),
    ("completion_rate", "completion_rate", "higher", False),
    ("escalation_rate", "escalation_rate", "lower", False),
    ("policy_violations", "policy_violations", "lower", False),
    ("cost_per_success_usd", "cost_per_success", "lower", True),
    ("p95_latency_ms", "p95_latency", "lower", True),
)


@dataclass(frozen=True, slots=True)
class GateRow:
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    threshold: str
    passed: bool


def gate(baseline: Report, candidate: Report) -> list[GateRow]:
    """Each gated metric compared; a row fails when the candidate regressed past its threshold."""
    if (baseline.suite, baseline.suite_hash) != (candidate.suite, candidate.suite_hash):
        raise ConfigError(
            f"the reports are of different suites: baseline {baseline.suite!r}"
            f" ({baseline.suite_hash[:12]}), candidate {candidate.suite!r}"
            f" ({candidate.suite_hash[:12]})",
            hint="run the candidate with the baseline's suite file, unchanged",
        )
    rows = []
    limits = baseline.thresholds
    for metric, field, better, relative in GATED:
        base = getattr(baseline.metrics, metric)
        cand = getattr(candidate.metrics, metric)
        allowed = float(getattr(limits, field))
        label = f"{allowed:.0%} of baseline" if relative else f"{allowed:g}"
        if base is None or cand is None:
            # no success to price: failing only when the candidate lost what the baseline had
            passed = not (cand is None and base is not None)
            rows.append(GateRow(metric, base, cand, None, label, passed))
            continue
        worse = (base - cand) if better == "higher" else (cand - base)
        limit = allowed * abs(base) if relative else allowed
        rows.append(GateRow(metric, base, cand, cand - base, label, worse <= limit + 1e-12))
    return rows
