"""``charter replay``, ``charter rerun`` and ``charter diff``: thin skins over the library."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from charter.cli._options import db_option, debug_option, json_option, with_runtime
from charter.cli._render import echo_json
from charter.diff import render_diff
from charter.inputs import read_text_file
from charter.replay import ReplayReport
from charter.runtime import Runtime


@click.command("replay")
@click.argument("run_id")
@db_option
@json_option
@debug_option
def replay_command(run_id: str, db_url: str, as_json: bool, debug: bool) -> None:
    """Re-execute a run from its log and check that the same events come out.

    Model responses, tool results, messages and decisions are served from the log; nothing is
    called or written. Exit 0 when identical, 1 at the first divergent event (both versions
    are printed), 10 when the run cannot be replayed here (its tools do not import, or
    retention removed payloads).
    """

    async def timed(rt: Runtime) -> tuple[ReplayReport, float]:
        began = time.perf_counter()
        report = await rt.replay(run_id)
        return report, time.perf_counter() - began

    report, took = with_runtime(db_url, timed, read_only=True)
    if as_json:
        echo_json({**report.to_dict(), "seconds": round(took, 4)})
    elif report.divergence is None:
        click.echo(
            f"identical: {report.events} events of {run_id} replayed in"
            f" {report.drives} drive(s), {took * 1000:.0f} ms"
        )
    else:
        d = report.divergence
        click.echo(f"DIVERGED at seq {d.seq} of {run_id} (drive {report.drives})")
        click.echo(f"  original: {_one_line(d.original)}")
        click.echo(f"  replayed: {_one_line(d.replayed)}")
    if report.divergence is not None:
        sys.exit(1)


def _one_line(body: dict[str, Any] | None) -> str:
    return "(no event)" if body is None else json.dumps(body, sort_keys=True, default=str)


@click.command("rerun")
@click.argument("run_id")
@click.option("--model", "model", default=None, help="A model name, or a YAML/JSON model section.")
@click.option(
    "--instructions",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A file with the new instructions (system prompt).",
)
@click.option(
    "--agent",
    "agent_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A new version of the agent (YAML).",
)
@click.option(
    "--simulators",
    default=None,
    help="module:attribute of a charter.rerun.Simulators for calls the recording lacks.",
)
@db_option
@json_option
@debug_option
def rerun_command(
    run_id: str,
    model: str | None,
    instructions: Path | None,
    agent_file: Path | None,
    simulators: str | None,
    db_url: str,
    as_json: bool,
    debug: bool,
) -> None:
    """What if: run RUN_ID's input again with a new model, prompt or agent version.

    Tools are never called: a call the original made (same tool, same arguments) gets the
    recorded result; another goes to a registered simulator, or stops the rerun
    ("unrecorded call"). Results are marked simulated in the log; the new run names the
    original (rerun_of). Compare them with charter diff. Exit 0 when the rerun succeeded,
    1 when it did not, 10 when RUN_ID cannot be rerun (tools do not import, payloads removed).
    """
    from charter.rerun import RerunChanges, import_simulators

    if model is None and instructions is None and agent_file is None:
        raise click.UsageError("give --model, --instructions or --agent")
    changes = RerunChanges(
        model=model,
        instructions=None
        if instructions is None
        else read_text_file(
            str(instructions), what=f"--instructions {instructions}", max_bytes=None
        ),
        agent_file=agent_file,
    )
    sims = import_simulators(simulators) if simulators else None

    result = with_runtime(db_url, lambda rt: rt.rerun(run_id, changes=changes, simulators=sims))
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(f"rerun of {run_id}: {result.run_id} {result.status}")
        if result.reason:
            click.echo(f"  reason: {result.reason}")
        click.echo(f"  compare: charter diff {run_id} {result.run_id}")
    if result.status != "succeeded":
        sys.exit(1)  # the rerun failed, was escalated or stopped


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@db_option
@json_option
@debug_option
def diff_command(run_a: str, run_b: str, db_url: str, as_json: bool, debug: bool) -> None:
    """Compare two runs side by side: status, steps, tool calls, decisions, tokens, cost."""
    diff = with_runtime(db_url, lambda rt: rt.diff(run_a, run_b), read_only=True)
    if as_json:
        echo_json(diff.to_dict())
    else:
        for line in render_diff(diff):
            click.echo(line)
