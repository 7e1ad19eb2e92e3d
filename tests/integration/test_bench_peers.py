"""``bench/peers.py`` without its extra: the peers are skipped with a line naming the extra,
and Charter's row and the raw SQLite floor are still measured (exit 0).

The peers are hidden whether or not the extra is installed: packages named ``langgraph`` and
``dbos`` whose import fails stand first on ``PYTHONPATH``, so the script meets what a machine
without them meets (an ``ImportError``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "bench" / "peers.py"


def _run_without_peers(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    hidden = tmp_path / "hidden"
    for package in ("langgraph", "dbos"):
        (hidden / package).mkdir(parents=True)
        (hidden / package / "__init__.py").write_text(
            f"raise ImportError('{package} hidden by the test')\n"
        )
    env = {**os.environ, "PYTHONPATH": str(hidden)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "5", "--repeats", "1", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_peers_missing_are_skipped_and_charter_is_measured(tmp_path: Path) -> None:
    done = _run_without_peers(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == 3, done.stdout  # LangGraph twice (with and without history), DBOS
    for line in skipped:
        assert "pip install -e '.[bench]'" in line, line
    assert any("DBOS" in line and "cannot import dbos" in line for line in skipped)
    assert any("LangGraph" in line and "cannot import langgraph" in line for line in skipped)
    charter = [line for line in lines if line.startswith("Charter ")]
    assert len(charter) == 1, done.stdout
    assert charter[0].split()[2] == "1.00x"  # CPU ratio of Charter to itself
    assert any(line.startswith("raw SQLite INSERT+COMMIT ") for line in lines), done.stdout
    assert "Traceback" not in done.stderr


def test_json_reports_charter_run_and_the_skipped_peers(tmp_path: Path) -> None:
    done = _run_without_peers(tmp_path, "--json", "--no-history")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert sorted(results["systems"]) == ["charter", "raw"]
    assert sorted(results["skipped"]) == ["dbos", "langgraph"]
    charter = results["systems"]["charter"]
    assert charter["statuses"] == ["succeeded"]
    assert charter["steps"] == 6  # five tool steps and the final answer
    assert charter["cpu_ms_per_step"] > 0
    assert charter["total_bytes"] > charter["empty_store_bytes"]
