"""One name per concept: durations in seconds end in ``_s`` (milliseconds in ``_ms``).

An AST scan of ``src/charter``: no parameter, dataclass or pydantic field, or attribute is
named ``*_seconds``, ``*_secs``, ``seconds`` or ``secs``. A violation names the file, the line
and the name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "charter"

SECONDS = re.compile(r"(^|_)(seconds|secs)$")

ALLOWED = {
    # The ``sleep`` tool's argument: the model sees it in the tool's schema and the log
    # records it in every call's arguments, so it keeps the name it was published with.
    ("tools.py", "seconds"),
}


def names_in(tree: ast.AST) -> list[tuple[int, str]]:
    """Parameters, annotated class fields and ``self.x`` attributes, with their lines."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arguments):
            params = [*node.posonlyargs, *node.args, *node.kwonlyargs, node.vararg, node.kwarg]
            found.extend((a.lineno, a.arg) for a in params if a is not None)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    found.append((item.lineno, item.target.id))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            found.append((node.lineno, node.attr))
    return found


def seconds_not_in_s(root: Path) -> list[str]:
    wrong = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name in sorted(names_in(tree)):
            if SECONDS.search(name) and (str(path.relative_to(root)), name) not in ALLOWED:
                wrong.append(f"{path.relative_to(root.parent)}:{line}: {name}")
    return wrong


def test_durations_in_seconds_are_named_with_s() -> None:
    assert seconds_not_in_s(SRC) == [], "name a duration in seconds *_s (timeout_s, lease_s)"


def test_the_scan_finds_each_kind_of_name(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "bad.py").write_text(
        "class Budgets:\n"
        "    timeout_seconds: float\n"
        "def wait(poll_secs: float, *, seconds: int) -> None:\n"
        "    self.lease_seconds = 1\n"
        "def fine(timeout_s: float, elapsed_ms: float, wait_seconds_ago: int) -> None: ...\n"
    )
    assert seconds_not_in_s(root) == [
        "pkg/bad.py:2: timeout_seconds",
        "pkg/bad.py:3: poll_secs",
        "pkg/bad.py:3: seconds",
        "pkg/bad.py:4: lease_seconds",
    ]
