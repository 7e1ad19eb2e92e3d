"""Eval reports and release-gate results, read-only (``charter serve --eval-reports DIR``).

Eval reports are files (``charter eval SUITE --report OUT.json``), not database rows; the
server serves the ``*.json`` reports of one directory, named by their file stem, and computes
a gate between two of them as ``charter gate`` does. They describe agents and suites, not a
tenant's runs, so any valid token reads them: point ``--eval-reports`` only at reports every
tenant of the server may see. Without the option the list is empty.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from charter.errors import ConfigError, NotFoundError
from charter.evals import Metrics, Report, gate, load_report
from charter.server._access import Who

router = APIRouter(prefix="/v1", tags=["evals"])


class ReportSummary(BaseModel):
    name: str = Field(description="The file's stem: pass it to /v1/evals/{name}.")
    suite: str
    agent_name: str
    agent_version: str
    created_at: float
    metrics: Metrics


class ReportList(BaseModel):
    reports: list[ReportSummary]
    unreadable: list[str] = Field(description="Files in the directory that are not reports.")


class GateRowView(BaseModel):
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    threshold: str
    passed: bool


class GateResult(BaseModel):
    baseline: str
    candidate: str
    passed: bool = Field(description="Every row passed: the candidate did not regress.")
    rows: list[GateRowView]


def _files(request: Request) -> dict[str, Path]:
    where: Path | None = request.app.state.eval_reports
    if where is None or not where.is_dir():
        return {}
    return {p.stem: p for p in sorted(where.glob("*.json"))}


def _report(request: Request, name: str) -> Report:
    path = _files(request).get(name)
    if path is None:
        raise NotFoundError(f"no eval report {name!r}", hint="GET /v1/evals lists them")
    return load_report(path)


@router.get("/evals")
async def list_reports(who: Who, request: Request) -> ReportList:
    """The eval reports the server was pointed at, newest first."""
    found: list[ReportSummary] = []
    unreadable: list[str] = []
    for name, path in _files(request).items():
        try:
            r = load_report(path)
        except ConfigError:
            unreadable.append(name)
            continue
        summary = ReportSummary(
            name=name, suite=r.suite, agent_name=r.agent_name, agent_version=r.agent_version,
            created_at=r.created_at, metrics=r.metrics,
        )  # fmt: skip
        found.append(summary)
    found.sort(key=lambda s: s.created_at, reverse=True)
    return ReportList(reports=found, unreadable=unreadable)


@router.get("/evals/gate")
async def gate_reports(who: Who, request: Request, baseline: str, candidate: str) -> GateResult:
    """``charter gate``: each gated metric of ``candidate`` against ``baseline`` (report
    names); 400 when they are of different suites."""
    rows = gate(_report(request, baseline), _report(request, candidate))
    views = [GateRowView.model_validate(asdict(r)) for r in rows]
    return GateResult(
        baseline=baseline, candidate=candidate, passed=all(r.passed for r in rows), rows=views
    )


@router.get("/evals/{name}")
async def show_report(name: str, who: Who, request: Request) -> Report:
    """One report in full: metrics, thresholds, every case."""
    return _report(request, name)
