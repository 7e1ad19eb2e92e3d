"""A watched policy file: valid edits are picked up, invalid ones refused, the last set kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter import ConfigError
from charter.policy import PolicyFile

GOOD = (
    "policy:\n  name: p\n  rules:\n    - id: reads\n      when: {effect: read}\n      then: allow\n"
)


def test_a_bad_edit_is_refused_and_the_last_valid_set_kept(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    watched = PolicyFile(path)
    first = watched.current
    assert watched.reload() is False  # unchanged

    path.write_text(GOOD.replace("then: allow", "then: alow"))
    assert watched.reload() is False
    assert watched.current is first
    assert watched.last_error is not None
    assert "policy.yaml:6" in watched.last_error.message and "alow" in watched.last_error.message

    path.write_text(GOOD.replace("then: allow", "then: deny"))
    assert watched.reload() is True
    assert watched.current.hash != first.hash and watched.last_error is None


def test_the_first_load_must_succeed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such policy file"):
        PolicyFile(tmp_path / "missing.yaml")
