"""Every run the demo, the examples, the README example and the eval suites create replays
identically, on SQLite (where they were made) and on PostgreSQL (the same runs, copied)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from tests.helpers.cli import run_charter

from charter import Runtime
from charter.agents import load_agent
from charter.demo.run import run_demo
from charter.evals import load_suite, run_suite
from charter.events import ApprovalDecided, ToolOutcomeUnknown
from charter.replay import replay_run
from charter.store import copy_store, open_store

ROOT = Path(__file__).resolve().parents[2]
SUITES = sorted(p for p in (ROOT / "examples" / "evals").glob("*.yaml") if "agent" not in p.name)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """SQLite URLs of every database the demo, the example agent and the suites wrote."""
    base = tmp_path_factory.mktemp("everything")
    assert run_demo(base / "demo", echo=lambda _: None) == 0
    urls = [f"sqlite:///{base / 'demo' / 'charter.db'}"]
    shutil.copytree(ROOT / "examples", base / "examples")
    example = run_charter(
        base, "run", "examples/support/agent.yaml", "--input", "Order 1002 cracked"
    )
    assert example.returncode == 0, example.stderr
    urls.append(f"sqlite:///{base / 'charter.db'}")
    for suite in SUITES:
        loaded = load_suite(suite)
        agent_path = loaded.agent_path or ROOT / "src" / "charter" / "demo" / "agent.yaml"
        where = base / "evals" / suite.stem
        run_suite(loaded, agent=load_agent(agent_path), workdir=where)
        urls += [f"sqlite:///{db}" for db in sorted(where.glob("*/charter.db"))]
    yield urls


async def _replay_all(url: str) -> tuple[int, set[str]]:
    """Replay every run at ``url``; the number of runs and the kinds of recovery seen."""
    kinds: set[str] = set()
    async with Runtime.open(url) as rt:
        run_ids = await rt.store.run_ids()
        for run_id in run_ids:
            report = await replay_run(rt.store, run_id)
            assert report.identical, (url, run_id, report.divergence)
            for e in await rt.events(run_id):
                if isinstance(e.body, ToolOutcomeUnknown):
                    kinds.add(f"unknown:{e.body.resolution}")
                if isinstance(e.body, ApprovalDecided):
                    kinds.add("approval")
    return len(run_ids), kinds


def test_every_run_replays_identically_on_sqlite(made: list[str], tmp_path: Path) -> None:
    async def main() -> tuple[int, set[str]]:
        total, kinds = 0, set()
        for url in made:
            count, seen = await _replay_all(url)
            total, kinds = total + count, kinds | seen
        return total, kinds

    total, kinds = asyncio.run(main())
    assert total >= 7 + 1 + len(SUITES)  # the demo's seven, the example, a case per suite
    # the demo's crash run (reconciled after a SIGKILL), its approval, the escalated email
    assert {"unknown:reconcile", "unknown:escalate", "approval"} <= kinds
    last = made[0]
    result = run_charter(tmp_path, "replay", "--db", last, "--json", _last_run(last))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["identical"] is True


def test_every_run_replays_identically_on_postgres(made: list[str], pg_url: str) -> None:
    """Each database copied in turn into one schema, emptied between (a copy goes into an
    empty database: inbox ids and approval ids are per database)."""

    def empty() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                    " AND tablename NOT IN ('charter_migrations', 'agents', 'runs')"
                )
            ]  # agents stay (a copy adds a spec only once); runs go last (referenced)
            with conn.transaction():  # DELETE: cheaper than TRUNCATE on a few rows
                for table in [*tables, "runs"]:
                    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))

    async def copied(url: str) -> int:
        source, target = open_store(url), open_store(pg_url)
        try:
            await copy_store(source, target)
        finally:
            await source.close()
            await target.close()
        count, _ = await _replay_all(pg_url)
        empty()
        return count

    async def main() -> int:
        return sum([await copied(url) for url in made])

    assert asyncio.run(main()) >= 7 + 1 + len(SUITES)


def _last_run(url: str) -> str:
    async def main() -> str:
        async with Runtime.open(url) as rt:
            return (await rt.store.run_ids())[-1]

    return asyncio.run(main())


REPLAY_HERE = """

async def replay() -> None:
    from charter.replay import replay_run

    async with Runtime.open(URL) as rt:
        for run_id in await rt.store.run_ids():
            report = await replay_run(rt.store, run_id)
            print("replayed", run_id, report.identical, report.divergence)


asyncio.run(replay())
"""


@pytest.mark.replay_exempt(
    "its run's tools live in the script (__main__), where the test replays it; elsewhere"
    " replay is unavailable by design, as the test checks"
)
def test_the_readme_example_run_replays_in_its_own_process(store_url: str, tmp_path: Path) -> None:
    """Its tools live in the script (``__main__``): replay where they import, on both stores."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    (example,) = [b for b in blocks if "def lookup_order" in b]
    assert '"sqlite:///charter.db"' in example
    script = tmp_path / "example.py"
    script.write_text(example.replace('"sqlite:///charter.db"', "URL") + REPLAY_HERE)
    script.write_text(f"URL = {store_url!r}\n" + script.read_text())
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    replayed = [line.split() for line in done.stdout.splitlines() if line.startswith("replayed")]
    assert [(r[2], r[3]) for r in replayed] == [("True", "None")]
    elsewhere = run_charter(tmp_path, "replay", replayed[0][1], "--db", store_url)
    assert elsewhere.returncode == 10, elsewhere.stderr
    assert "__main__:lookup_order" in elsewhere.stderr
