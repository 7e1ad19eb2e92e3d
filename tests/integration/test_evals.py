"""`charter eval` and `charter gate`: suites run through the real runtime (a SQLite file per
case, the simulated systems, real worker processes for kill cases), reports, the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.cli import run_charter

from charter.agents import load_agent
from charter.evals import load_suite, run_suite

ROOT = Path(__file__).resolve().parents[2]
DEMO_AGENT = ROOT / "src" / "charter" / "demo" / "agent.yaml"
EXAMPLES = sorted(p for p in (ROOT / "examples" / "evals").glob("*.yaml") if "agent" not in p.name)

SMALL = f"""\
suite:
  name: small
  kind: regression
  agent: {DEMO_AGENT}
  thresholds: {{completion_rate: 0.05, p95_latency: 100}}
  cases:
    - id: howto
      input: "Ticket T-2001: my machine shows DESCALE. How do I descale it?"
      principal: "customer:C-101"
      expect:
        status: succeeded
        called: [kb_search]
        not_called: [refund]
        no_policy_violation: true
    - id: refund
      input: "Ticket T-2002: my order 1002 arrived and the dripper is cracked."
      principal: "customer:C-102"
      expect:
        status: {{STATUS}}
        args: [{{tool: refund, args: {{order_id: "1002", amount: 35.0}}}}]
        final_state: {{refunds: [{{order_id: "1002", amount: 35.0}}]}}
"""


def write_suite(where: Path, status: str = "succeeded", name: str = "suite.yaml") -> Path:
    path = where / name
    path.write_text(SMALL.replace("{STATUS}", status))
    return path


def eval_report(where: Path, suite: Path, *extra: str) -> tuple[int, str, dict[str, Any]]:
    out = where / f"{suite.stem}-report.json"
    done = run_charter(where, "eval", str(suite), "--report", str(out), *extra)
    assert out.exists(), done.stderr
    return done.returncode, done.stdout, json.loads(out.read_text())


def test_a_small_suite_passes(tmp_path: Path) -> None:
    code, out, report = eval_report(tmp_path, write_suite(tmp_path))
    assert code == 0, out
    assert "pass^1: 100.0% of 2 cases" in out
    assert [c["case_id"] for c in report["cases"]] == ["howto", "refund"]
    assert all(c["passed"] for c in report["cases"])


def test_a_failing_expectation_fails_naming_the_case(tmp_path: Path) -> None:
    code, out, report = eval_report(tmp_path, write_suite(tmp_path, status="escalated"))
    assert code == 1
    assert "FAILED refund (run 1): status succeeded, expected escalated" in out
    assert [c["case_id"] for c in report["cases"] if not c["passed"]] == ["refund"]
    assert report["metrics"]["pass_rate"] == 0.5


def test_repeat_gives_pass_k_over_every_run(tmp_path: Path) -> None:
    code, out, report = eval_report(tmp_path, write_suite(tmp_path), "--repeat", "2")
    assert code == 0, out
    assert "pass^2: 100.0% of 2 cases" in out
    assert report["repeat"] == 2 and report["metrics"]["runs"] == 4
    assert all([r["repeat"] for r in c["runs"]] == [1, 2] for c in report["cases"])


def test_the_report_names_suite_agent_cases_and_metrics(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    _, _, report = eval_report(tmp_path, suite)
    assert report["suite"] == "small" and report["suite_kind"] == "regression"
    assert report["suite_hash"] == load_suite(suite).hash
    assert report["agent_hash"] == load_agent(DEMO_AGENT).agent_hash
    assert report["thresholds"]["completion_rate"] == 0.05
    assert set(report["metrics"]) >= {
        "pass_rate", "completion_rate", "escalation_rate", "policy_violations",
        "cost_per_success_usd", "p95_latency_ms",
    }  # fmt: skip
    run = report["cases"][1]["runs"][0]
    assert run["status"] == "succeeded" and run["run_id"].startswith("run_")
    assert set(run) >= {"passed", "failures", "steps", "tool_calls", "cost_usd", "latency_ms"}
    assert report["metrics"]["completion_rate"] == 1.0


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    eval_report(tmp_path, write_suite(tmp_path))
    return tmp_path / "suite-report.json"


def test_gate_passes_on_equal_reports(report_file: Path) -> None:
    done = run_charter(
        report_file.parent, "gate", "--baseline", str(report_file), "--candidate", str(report_file)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate passed" in done.stdout and "REGRESSED" not in done.stdout


def test_gate_fails_on_a_regression(report_file: Path) -> None:
    report = json.loads(report_file.read_text())
    report["metrics"]["completion_rate"] = 0.5
    candidate = report_file.with_name("candidate.json")
    candidate.write_text(json.dumps(report))
    done = run_charter(
        report_file.parent, "gate", "--baseline", str(report_file), "--candidate", str(candidate)
    )
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith("completion_rate"))
    assert "REGRESSED" in row and "-0.5" in row
    assert "gate FAILED" in done.stdout


def test_gate_refuses_reports_of_different_suites(tmp_path: Path, report_file: Path) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = write_suite(other_dir, name="other.yaml")
    other.write_text(other.read_text().replace("name: small", "name: other"))
    eval_report(other_dir, other)
    done = run_charter(
        tmp_path,
        "gate",
        "--baseline",
        str(report_file),
        "--candidate",
        str(other_dir / "other-report.json"),
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: the reports are of different suites: baseline 'small'")


def test_an_unknown_suite_field_is_one_clear_error(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    suite.write_text(suite.read_text().replace("called: [kb_search]", "caled: [kb_search]"))
    report = tmp_path / "report.json"
    done = run_charter(tmp_path, "eval", str(suite), "--report", str(report))
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        f"error: {suite}:12: case 'howto': unknown field 'suite.cases.0.expect.caled'"
    )
    assert not report.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.yaml"]


def test_a_missing_suite_file_is_one_clear_error(tmp_path: Path) -> None:
    done = run_charter(tmp_path, "eval", "nope.yaml")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: nope.yaml: no such suite file"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suite", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_example_suite_passes_for_the_demo_agent(suite: Path, tmp_path: Path) -> None:
    loaded = load_suite(suite)
    assert loaded.agent_path is not None
    report = run_suite(loaded, agent=load_agent(loaded.agent_path), workdir=tmp_path)
    failures = [(c.case_id, r["failures"]) for c in report.failed_cases for r in c.runs]
    assert failures == []
    assert report.metrics.pass_rate == 1.0


def test_the_example_suites_cover_the_three_kinds() -> None:
    kinds = {load_suite(p).suite.kind for p in EXAMPLES}
    assert kinds == {"regression", "redteam", "reliability"}
    reliability = load_suite(ROOT / "examples" / "evals" / "reliability.yaml").suite
    assert any(c.kill_worker for c in reliability.cases)
    faults = [f for c in reliability.cases for f in c.faults]
    assert any(f.fail_times for f in faults) and any(f.slow_s for f in faults)
    assert any(f.hang_times and not f.hang_after_effect for f in faults)
    assert any(f.hang_after_effect for f in faults) and any(f.drop for f in faults)
