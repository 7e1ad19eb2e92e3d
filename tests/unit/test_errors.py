"""The error tree drawn in errors.py is the real one: codes, exit codes and parents."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import charter.errors as errors_module
from charter.errors import CharterError, ModelError, ToolError

_ROW = re.compile(
    r"^(?P<indent>[\s│├└─]*?)(?P<name>[A-Z]\w*Error)(\s+(?P<code>\w+)\s+(?P<exit>\d+))?\b"
)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def _table() -> dict[str, tuple[str | None, int | None, str | None]]:
    """name -> (code, exit code, parent name) as drawn in the module docstring.

    The root's row is the table's header, so its code and exit code are not drawn.
    """
    doc = errors_module.__doc__ or ""
    rows: dict[str, tuple[str | None, int | None, str | None]] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = _ROW.match(line.strip("\n"))
        if not match:
            continue
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        exit_code = int(match["exit"]) if match["exit"] else None
        rows[match["name"]] = (match["code"], exit_code, parent)
        stack.append((depth, match["name"]))
    return rows


# Charter's own classes only: a tool module may subclass ToolError for codes of its own.
CHARTER_ERRORS = sorted(
    (c for c in [CharterError, *_all_subclasses(CharterError)] if c.__module__ == "charter.errors"),
    key=lambda c: c.__name__,
)


def test_the_docstring_tree_lists_every_error_class() -> None:
    assert set(_table()) == {cls.__name__ for cls in CHARTER_ERRORS}


@pytest.mark.parametrize("cls", CHARTER_ERRORS, ids=lambda c: c.__name__)
def test_each_error_has_the_code_exit_code_and_parent_the_tree_states(cls: type) -> None:
    code, exit_code, parent = _table()[cls.__name__]
    if cls is CharterError:
        assert (code, exit_code, parent) == (None, None, None)
        assert (cls.code, cls.exit_code) == ("charter", 1)
        assert cls.__bases__ == (Exception,)
        return
    assert cls.code == code  # type: ignore[attr-defined]
    assert cls.exit_code == exit_code  # type: ignore[attr-defined]
    assert [base.__name__ for base in cls.__bases__] == [parent]


def test_error_codes_are_distinct() -> None:
    codes = [cls.code for cls in CHARTER_ERRORS]  # type: ignore[attr-defined]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", CHARTER_ERRORS, ids=lambda c: c.__name__)
def test_each_error_has_a_usable_exit_code(cls: type) -> None:
    assert isinstance(cls.exit_code, int)  # type: ignore[attr-defined]
    assert 1 <= cls.exit_code <= 125  # type: ignore[attr-defined]


def _constructed_in(root: Path) -> set[str]:
    """The names called anywhere under ``root`` (``X(...)`` and ``module.X(...)``)."""
    called: set[str] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return called


def test_every_error_class_is_raised_by_charter_or_is_a_parent() -> None:
    # An error class nothing raises is a promise the code does not keep (a user who writes
    # ``except`` for it waits for nothing): raise it, or delete it and its row above.
    src = Path(errors_module.__file__).parent
    called = _constructed_in(src)
    unused = [
        cls.__name__
        for cls in CHARTER_ERRORS
        if cls.__name__ not in called and not cls.__subclasses__()
    ]
    assert unused == []


def test_tool_errors_share_the_tool_exit_code() -> None:
    tool_errors = [ToolError, *_all_subclasses(ToolError)]
    assert {cls.exit_code for cls in tool_errors} == {8}


def test_to_dict_carries_code_message_and_hint() -> None:
    error = errors_module.ConflictError("run moved on", hint="retry later")
    assert error.to_dict() == {"code": "conflict", "message": "run moved on", "hint": "retry later"}
    assert str(error) == "run moved on (retry later)"
    assert str(errors_module.NotFoundError("no run")) == "no run"


def test_model_error_says_whether_it_is_retryable() -> None:
    assert ModelError("x").retryable is False
    assert ModelError("x", retryable=True).retryable is True
    assert ModelError("x", retryable=True).to_dict()["code"] == "model"
