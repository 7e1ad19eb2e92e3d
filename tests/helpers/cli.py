"""Run the real `charter` command in a child process, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_charter(
    cwd: Path, *args: str, timeout: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m charter ARGS` in ``cwd``, with this interpreter's import path and ``env``
    added to the environment.

    CHARTER_DB, OPENAI_API_KEY, the audit key variables and the terminal's settings
    (COLUMNS, LINES, NO_COLOR, FORCE_COLOR: pytest-xdist's workers set COLUMNS) are removed
    first, so that the caller's environment cannot leak in.
    """
    extra = env
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    leaks = ("CHARTER_DB", "OPENAI_API_KEY", "CHARTER_AUDIT_KEY", "CHARTER_AUDIT_KEY_FILE")
    for name in (*leaks, "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR"):
        env.pop(name, None)
    env.update(extra or {})
    return subprocess.run(
        [sys.executable, "-m", "charter", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
