"""A policy file watched by a long-lived process: reload it, keep the last valid set.

Runs carry their policy set inside their agent spec, so an edit on disk never reaches a run in
flight. A process that serves new runs for a long time (a server, an operator's console) holds
a :class:`PolicyFile` instead of a fixed set: :meth:`PolicyFile.reload` picks up a valid edit
and refuses an invalid one (the error names file, line and reason), keeping the set it had.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from charter.errors import ConfigError
from charter.policy._evaluate import PolicySet


class PolicyFile:
    """The last valid policy set loaded from ``path``; the first load must succeed."""

    def __init__(self, path: str | Path, *, known_tools: Collection[str] | None = None) -> None:
        self.path = Path(path)
        self._known_tools = known_tools
        self.current: PolicySet = PolicySet.load(self.path, known_tools=known_tools)
        self.last_error: ConfigError | None = None
        """Why the latest reload was refused; None after a good one."""

    def reload(self) -> bool:
        """Load the file again: True if the set changed, False if unchanged or refused."""
        try:
            loaded = PolicySet.load(self.path, known_tools=self._known_tools)
        except ConfigError as exc:
            self.last_error = exc
            return False
        self.last_error = None
        if loaded.hash == self.current.hash:
            return False
        self.current = loaded
        return True
