"""Shared test setup: the repository root on ``sys.path`` and real SQLite files in tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Tool references such as "tests.helpers.tools:lookup" are imported by module name, as a
    # worker in another process would import them.
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "charter.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"
