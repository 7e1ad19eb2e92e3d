"""Every run replays, or says exactly why not: caches, unimportable tools, retention, reruns."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.cli import run_charter

from charter import Agent, ModelSpec, Runtime, tool
from charter.events import ModelResponded, RunFinished, ToolCallSucceeded
from charter.models._routing import CachePolicy
from charter.redaction import LoggingSettings
from charter.replay import replay_run
from charter.rerun import RerunChanges, rerun


@tool(effect="read", cacheable=True)
def stock(sku: str) -> dict[str, Any]:
    """How many of an item are in stock."""
    return {"sku": sku, "count": 3}


CACHED_SCRIPT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "stock", "arguments": {"sku": "kettle"}}]},
    {"content": "3 kettles in stock."},
]


def _cached_agent() -> Agent:
    return Agent(
        name="stocker",
        instructions="Answer stock questions.",
        model=ModelSpec(provider="scripted", name="script-c", script=CACHED_SCRIPT),
        tools=[stock],
        cache=CachePolicy(models=True, tools=True),
    )


def test_runs_served_from_the_caches_replay_identically_on_both_stores(store_url: str) -> None:
    async def main() -> list[str]:
        async with Runtime.open(store_url) as rt:
            first = await rt.run(_cached_agent(), "Kettles?", tenant="acme")
            second = await rt.run(_cached_agent(), "Kettles?", tenant="acme")
            events = await rt.events(second.run_id)
            hits = [e.body for e in events if isinstance(e.body, ModelResponded) and e.body.cached]
            assert hits, "the second run's model answers came from the response cache"
            third = await rt.run(
                Agent(
                    name="stocker",
                    version="2",
                    instructions="Answer stock questions.",
                    model=ModelSpec(provider="scripted", name="script-c", script=CACHED_SCRIPT),
                    tools=[stock],
                ),
                "Kettles?",
                tenant="acme",
            )
            reads = [
                e.body for e in await rt.events(third.run_id)
                if isinstance(e.body, ToolCallSucceeded)
            ]  # fmt: skip
            assert [b.cached for b in reads] == [True]  # served from the result cache
            ids = [first.run_id, second.run_id, third.run_id]
            for run_id in ids:
                report = await replay_run(rt.store, run_id)
                assert report.identical, (run_id, report.divergence)
            return ids

    ids = asyncio.run(main())
    for run_id in ids:
        done = run_charter(Path.cwd(), "replay", run_id, "--db", store_url, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["identical"] is True


SCRIPT_RUN = '''
import asyncio, sys
import charter
from charter import Agent, ModelSpec, Runtime


@charter.tool(effect="read")
def lookup_order(order_id: str) -> dict[str, str]:
    """Find an order by id."""
    return {"order_id": order_id, "status": "delivered"}


script = [
    {"tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "1042"}}]},
    {"content": "Delivered."},
]
agent = Agent(name="scripted_support", instructions="Help.",
              model=ModelSpec(provider="scripted", script=script), tools=[lookup_order])


async def main() -> None:
    async with Runtime.open(sys.argv[1]) as rt:
        run = await rt.run(agent, "Where is 1042?")
        print(run.run_id)


asyncio.run(main())
'''


def _importable_run(url: str) -> str:
    async def main() -> str:
        async with Runtime.open(url) as rt:
            return (await rt.run(_cached_agent(), "Kettles?")).run_id

    return asyncio.run(main())


@pytest.mark.replay_exempt(
    "its script's run uses the tool __main__:lookup_order, which imports only in that script:"
    " replay is unavailable elsewhere by design, as the test checks"
)
def test_a_run_whose_tools_do_not_import_gets_one_message_and_breaks_no_other_command(
    store_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT_RUN)
    done = subprocess.run(
        [sys.executable, str(script), store_url], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    script_run = done.stdout.strip()
    good_run = _importable_run(store_url)

    replayed = run_charter(tmp_path, "replay", script_run, "--db", store_url)
    assert replayed.returncode == 10, replayed.stderr
    assert replayed.stderr.startswith(f"error: cannot replay run {script_run}:")
    assert "__main__:lookup_order" in replayed.stderr
    assert "Traceback" not in replayed.stderr and replayed.stdout == ""
    rerun = run_charter(tmp_path, "rerun", script_run, "--model", "other", "--db", store_url)
    assert rerun.returncode == 10, rerun.stderr
    assert "__main__:lookup_order" in rerun.stderr

    listed = run_charter(tmp_path, "tools", "list", "--json", "--db", store_url)
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["stock"]
    assert "__main__:lookup_order" in listed.stderr  # named, not silently dropped
    ok = run_charter(tmp_path, "replay", good_run, "--db", store_url)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.replay_exempt("retention removes its run's payloads, which a replay needs")
def test_a_run_whose_payloads_retention_removed_cannot_be_replayed_or_rerun(
    store_url: str, tmp_path: Path
) -> None:
    run_id = _importable_run(store_url)
    done = run_charter(tmp_path, "retention", "apply", "--ttl", "tool_payloads=0s",
                       "--db", store_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    replayed = run_charter(tmp_path, "replay", run_id, "--db", store_url)
    assert replayed.returncode == 10, (replayed.stdout, replayed.stderr)
    assert replayed.stderr.startswith(f"error: cannot replay run {run_id}:")
    assert "retention removed" in replayed.stderr and "DIVERGED" not in replayed.stdout
    rerun = run_charter(tmp_path, "rerun", run_id, "--model", "other", "--db", store_url)
    assert rerun.returncode == 10, (rerun.stdout, rerun.stderr)
    assert "retention removed" in rerun.stderr
    listed = run_charter(tmp_path, "runs", "list", "--json", "--db", store_url)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]  # nothing started


def test_rerun_exits_non_zero_when_the_rerun_failed(db_url: str, tmp_path: Path) -> None:
    run_id = _importable_run(db_url)
    (tmp_path / "model.yaml").write_text(
        "provider: scripted\nname: script-d\n"
        "script:\n  - tool_calls: [{name: stock, arguments: {sku: toaster}}]\n"
        "  - content: done\n"
    )
    failed = run_charter(tmp_path, "rerun", run_id, "--model", "model.yaml", "--db", db_url)
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "failed" in failed.stdout and "unrecorded call: stock" in failed.stdout
    (tmp_path / "same.yaml").write_text(
        "provider: scripted\nname: script-e\nscript:\n"
        "  - tool_calls: [{name: stock, arguments: {sku: kettle}}]\n  - content: done\n"
    )
    ok = run_charter(tmp_path, "rerun", run_id, "--model", "same.yaml", "--db", db_url)
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    assert "succeeded" in ok.stdout
    (tmp_path / "latin1.md").write_bytes(b"R\xe9pondez en fran\xe7ais.")
    bad = run_charter(tmp_path, "rerun", run_id, "--instructions", "latin1.md", "--db", db_url)
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert bad.stderr.startswith("error: --instructions latin1.md is not UTF-8 text")


def test_a_rerun_replays_identically_with_its_served_results_marked(store_url: str) -> None:
    """A rerun's results carry ``simulated: recording``; its replay serves the same mark."""

    async def main() -> tuple[str, list[str | None]]:
        async with Runtime.open(store_url) as rt:
            original = await rt.run(_cached_agent(), "Kettles?")
            again = await rerun(rt, original.run_id, changes=RerunChanges(model="script-r"))
            assert again.status == "succeeded", again
            served = [
                e.body.simulated
                for e in await rt.events(again.run_id)
                if isinstance(e.body, ToolCallSucceeded)
            ]
            report = await replay_run(rt.store, again.run_id)
            assert report.identical, report.divergence
            return again.run_id, served

    _, served = asyncio.run(main())
    assert served == ["recording"]


def test_a_rerun_stopped_by_an_unrecorded_call_replays_up_to_where_it_stopped(
    store_url: str,
) -> None:
    """The rerun's loop never commits the step it was in; ``run_finished.abandoned`` says the
    run was ended from outside its loop there, so the replay stops there too."""
    toaster = ModelSpec(provider="scripted", name="script-t", script=[
        {"tool_calls": [{"name": "stock", "arguments": {"sku": "toaster"}}]},
        {"content": "done"},
    ])  # fmt: skip

    async def main() -> None:
        async with Runtime.open(store_url) as rt:
            original = await rt.run(_cached_agent(), "Kettles?")
            changed = dataclasses.replace(_cached_agent(), model=toaster)
            stopped = await rerun(rt, original.run_id, changes=RerunChanges(agent=changed))
            assert stopped.status == "failed" and "unrecorded call" in (stopped.reason or "")
            last = (await rt.events(stopped.run_id))[-1].body
            assert isinstance(last, RunFinished) and last.abandoned
            report = await replay_run(rt.store, stopped.run_id)
            assert report.identical, report.divergence
            assert report.replayed == report.events

    asyncio.run(main())


@tool(effect="read")
def customer(order_id: str) -> dict[str, Any]:
    """Who ordered."""
    return {"name": "Ann", "email": "ann@example.com", "order": f"ORD-{order_id}"}


@pytest.mark.parametrize(
    "settings",
    [LoggingSettings(pii_redaction=True), LoggingSettings(store_prompt=False, store_tool_io=False)],
    ids=["pii_redaction", "nothing_stored"],
)
def test_a_run_whose_log_was_redacted_replays_identically(
    store_url: str, settings: LoggingSettings
) -> None:
    """The log holds the values as redacted: the replay's model proposes the calls with the
    arguments ``tool_call_proposed`` kept (never redacted), and its redaction of what is
    already redacted records the paths the original recorded."""
    script = [
        {"tool_calls": [{"name": "customer", "arguments": {"order_id": "123456"}}]},
        {"content": "Mailed ann@example.com about ORD-123456"},
    ]
    agent = Agent(
        name="mailer",
        instructions="Mail the customer.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[customer],
        logging=settings,
    )

    async def main() -> None:
        async with Runtime.open(store_url) as rt:
            run = await rt.run(agent, "Who ordered 123456?")
            assert run.status == "succeeded"
            responded = [
                e.body for e in await rt.events(run.run_id) if isinstance(e.body, ModelResponded)
            ]
            assert responded[0].redacted or responded[-1].redacted  # the log was redacted
            report = await replay_run(rt.store, run.run_id)
            assert report.identical, report.divergence

    asyncio.run(main())
