"""Run the real `charter` command in a child process, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_charter(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m charter ARGS` in ``cwd``, with this interpreter's import path.

    CHARTER_DB and OPENAI_API_KEY are removed so that the caller's environment cannot leak in.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("CHARTER_DB", None)
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "charter", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
