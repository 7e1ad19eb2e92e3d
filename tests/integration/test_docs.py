"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_python_example_runs(tmp_path: Path) -> None:
    (example,) = _blocks("python")
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0].split(" ", 2)
    assert first[1:] == ["succeeded", "Refunded 20.00 on order 1042."]
    assert "tool_call_started" in done.stdout  # the refund's intent was committed


def test_readme_opens_with_the_two_commands() -> None:
    (commands,) = _blocks("sh")[:1]
    lines = [line.split("#")[0].strip() for line in commands.strip().splitlines()]
    assert lines == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_readme_agent_yaml_has_every_documented_field() -> None:
    yaml_block = _blocks("yaml")[0]
    for field in (
        "name:",
        "version:",
        "instructions:",
        "provider:",
        "base_url:",
        "tools:",
        "budgets:",
        "max_steps",
        "max_tool_calls",
        "max_tokens_total",
        "timeout_seconds",
    ):
        assert field in yaml_block
