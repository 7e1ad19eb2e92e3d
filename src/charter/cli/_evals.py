"""``charter eval`` and ``charter gate``: run an eval suite, and compare two of its reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from charter.cli._options import debug_option, json_option
from charter.cli._render import echo_json, table
from charter.evals import CaseRun, Report, gate, load_report, load_suite, run_suite

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("eval")
@click.argument("suite_file", type=_FILE)
@click.option("--agent", "agent_file", type=_FILE, default=None,
              help="The agent under test [default: the suite's agent].")  # fmt: skip
@click.option("--repeat", type=click.IntRange(min=1), default=None,
              help="Runs per case; pass^k counts cases that pass in all of them"
              " [default: the suite's repeat].")  # fmt: skip
@click.option("--report", "report_file", type=_FILE, default=None,
              help="Write the JSON report here (for charter gate).")  # fmt: skip
@json_option
@debug_option
def eval_command(
    suite_file: Path,
    agent_file: Path | None,
    repeat: int | None,
    report_file: Path | None,
    as_json: bool,
    debug: bool,
) -> None:
    """Run an eval suite through the runtime; exit 1 when a case fails.

    Each case runs on a fresh SQLite file and freshly seeded simulated systems.
    """
    loaded = load_suite(suite_file)
    agent = loaded.load_agent(agent_file)
    k = repeat if repeat is not None else loaded.suite.repeat
    total = len(loaded.suite.cases) * k
    with click.progressbar(
        length=total, label=f"{loaded.suite.name}", file=sys.stderr, show_pos=True
    ) as bar:

        def progress(done: CaseRun) -> None:
            bar.update(1)

        report = run_suite(loaded, agent=agent, repeat=k, progress=progress)
    if report_file is not None:
        report_file.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    if as_json:
        echo_json(report.model_dump(mode="json"))
    else:
        render(report)
    sys.exit(1 if report.failed_cases else 0)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def render(report: Report) -> None:
    rows = []
    for case in report.cases:
        runs = case.runs
        passed = sum(r["passed"] for r in runs)
        statuses = ",".join(sorted({r["status"] for r in runs}))
        first = next((r["failures"][0] for r in runs if r["failures"]), "")
        rows.append(
            (case.case_id, "PASS" if case.passed else "FAIL", f"{passed}/{len(runs)}", statuses,
             first)
        )  # fmt: skip
    table(["case", "verdict", "runs", "status", "first failure"], rows)
    m = report.metrics
    cost = "-" if m.cost_per_success_usd is None else f"${m.cost_per_success_usd:.4f}"
    click.echo(
        f"\n{report.suite} ({report.suite_kind}), agent {report.agent_name}"
        f" v{report.agent_version} {report.agent_hash[:12]}"
    )
    click.echo(
        f"pass^{report.repeat}: {_pct(m.pass_rate)} of {m.cases} cases;"
        f" completion {_pct(m.completion_rate)}, escalation {_pct(m.escalation_rate)},"
        f" policy violations {m.policy_violations:.2f}/run, cost per success {cost},"
        f" p95 latency {m.p95_latency_ms:.0f} ms"
    )
    for case in report.failed_cases:
        for run in case.runs:
            for failure in run["failures"]:
                click.echo(f"FAILED {case.case_id} (run {run['repeat']}): {failure}")


@click.command("gate")
@click.option("--baseline", "baseline_file", type=_FILE, required=True,
              help="The report of the version in production.")  # fmt: skip
@click.option("--candidate", "candidate_file", type=_FILE, required=True,
              help="The report of the new model, prompt or tool version.")  # fmt: skip
@json_option
@debug_option
def gate_command(baseline_file: Path, candidate_file: Path, as_json: bool, debug: bool) -> None:
    """Compare two eval reports of one suite; exit 1 when the candidate regressed."""
    baseline, candidate = load_report(baseline_file), load_report(candidate_file)
    rows = gate(baseline, candidate)
    ok = all(r.passed for r in rows)
    if as_json:
        echo_json(
            {
                "passed": ok,
                "suite": baseline.suite,
                "rows": [
                    {"metric": r.metric, "baseline": r.baseline, "candidate": r.candidate,
                     "delta": r.delta, "threshold": r.threshold, "passed": r.passed}
                    for r in rows
                ],
            }
        )  # fmt: skip
    else:
        table(
            ["metric", "baseline", "candidate", "delta", "threshold", "verdict"],
            [
                (r.metric, _num(r.baseline), _num(r.candidate), _num(r.delta, signed=True),
                 r.threshold, "ok" if r.passed else "REGRESSED")
                for r in rows
            ],
        )  # fmt: skip
        click.echo(f"\ngate {'passed' if ok else 'FAILED'} for suite {baseline.suite}")
    sys.exit(0 if ok else 1)


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"
