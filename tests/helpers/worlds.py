"""An eval world of the tests' own, to show that a suite's ``world:`` is what its cases run in."""

from __future__ import annotations

from pathlib import Path

from charter.testing.systems import FinalState, SupportDesk, Systems, SystemsState


class NotedState(SystemsState):
    note: str
    """Required: a case without it does not load."""


class NotedFinal(FinalState):
    note: str | None = None


class Noted(SupportDesk):
    """The support desk plus a note: the fixtures write it to a file, the checks read it."""

    state_model = NotedState
    final_state_model = NotedFinal

    def __init__(self, systems: Systems, where: Path) -> None:
        super().__init__(systems)
        self.where = where

    @classmethod
    def create(cls, where: Path, state: SystemsState) -> Noted:
        assert isinstance(state, NotedState)
        desk = SupportDesk.create(where, state)
        (where / "note.txt").write_text(state.note)
        return cls(desk.systems, where)

    def check(self, final_state: FinalState) -> list[str]:
        problems = super().check(final_state)
        assert isinstance(final_state, NotedFinal)
        seen = (self.where / "note.txt").read_text()
        if final_state.note is not None and seen != final_state.note:
            problems.append(f"the note says {seen!r}, expected {final_state.note!r}")
        return problems


NOT_A_WORLD = object()
