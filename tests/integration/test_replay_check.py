"""The suite-wide replay check itself (``tests/conftest.py``): a test that leaves a run which
does not replay identically errors at teardown, naming the run and the divergence; the
``replay_exempt`` marker, with a reason, opts out; a marker without a reason is refused.

The tests below are run by a real ``pytest`` in a child process, with the project's
conftest loaded as a plugin, on a log tampered with by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECKED = """
import asyncio, json, sqlite3
import pytest
from charter import Agent, ModelSpec, Runtime

AGENT = Agent(name="greeter", instructions="Greet.",
              model=ModelSpec(provider="scripted", script=[{"content": "hello"}]))


def _run_and_tamper(url, path):
    async def main():
        async with Runtime.open(url) as rt:
            return (await rt.run(AGENT, "hi")).run_id
    run_id = asyncio.run(main())
    with sqlite3.connect(path) as conn:
        seq, payload = conn.execute(
            "SELECT seq, payload FROM events WHERE run_id = ? AND type = 'run_finished'",
            (run_id,),
        ).fetchone()
        body = dict(json.loads(payload), output="edited afterwards")
        conn.execute("UPDATE event_log SET payload = ? WHERE seq = ?"
                     " AND run_no = (SELECT run_no FROM runs WHERE run_id = ?)",
                     (json.dumps(body), seq, run_id))
    return run_id


def test_clean(db_url):
    async def main():
        async with Runtime.open(db_url) as rt:
            await rt.run(AGENT, "hi")
    asyncio.run(main())


def test_tampered(db_url, db_path):
    print("RUN", _run_and_tamper(db_url, db_path))


@pytest.mark.replay_exempt("tampers with the log on purpose")
def test_tampered_and_exempt(db_url, db_path):
    _run_and_tamper(db_url, db_path)


@pytest.mark.replay_exempt("")
def test_exempt_without_a_reason(db_url):
    pass
"""


def test_a_run_that_does_not_replay_fails_its_test_unless_exempt_with_a_reason(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_checked.py").write_text(CHECKED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-q", "-rA", "-s", "--rootdir", str(tmp_path), "-c", os.devnull, "test_checked.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "PASSED test_checked.py::test_clean" in out
    assert "PASSED test_checked.py::test_tampered_and_exempt" in out
    assert "ERROR test_checked.py::test_tampered - " in out
    run_id = out.split("RUN ", 1)[1].split()[0]
    assert f"run {run_id}: diverges:" in out
    assert "edited afterwards" in out
    assert "ERROR test_checked.py::test_exempt_without_a_reason" in out
    assert "replay_exempt needs a reason" in out
