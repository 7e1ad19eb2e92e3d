"""Named fault points: where durability tests kill a worker with a real SIGKILL.

A worker started with ``--fault-point NAME[:N]`` kills itself the N-th time (default first)
it reaches NAME; with ``--fault-action stop`` it stops itself instead (SIGSTOP), as a process
cut off or frozen past its lease would, until the test sends SIGCONT. Nothing else in the
engine changes when faults are off.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

from charter.errors import ConfigError

FAULT_POINTS = (
    "before_model_commit",  # the model responded; nothing of the step is committed yet
    "after_intent_commit",  # a write call's intent is committed; the call has not started
    "during_tool_call",  # a write call is executing (killed after `during_delay_s`)
    "after_tool_before_commit",  # the tool returned; its result is not committed
    "after_commit",  # the step's last commit is durable
)


@dataclass
class Faults:
    point: str | None = None
    nth: int = 1
    during_delay_s: float = 0.05
    action: str = "kill"
    _hits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, text: str | None, *, during_delay_s: float = 0.05, action: str = "kill"
    ) -> Faults:
        if not text:
            return cls()
        if action not in ("kill", "stop"):
            raise ConfigError(f"fault action must be kill or stop, not {action!r}")
        name, _, nth = text.partition(":")
        if name not in FAULT_POINTS:
            raise ConfigError(
                f"unknown fault point {name!r}", hint=f"one of: {', '.join(FAULT_POINTS)}"
            )
        try:
            count = int(nth) if nth else 1
        except ValueError:
            raise ConfigError(f"fault point count must be a number, not {nth!r}") from None
        return cls(point=name, nth=count, during_delay_s=during_delay_s, action=action)

    def armed(self, name: str) -> bool:
        """Count a visit to ``name``; True when this visit is the one to die at."""
        if self.point != name:
            return False
        self._hits[name] = self._hits.get(name, 0) + 1
        return self._hits[name] == self.nth

    def hit(self, name: str) -> None:
        if self.armed(name):
            if self.action == "stop":
                os.kill(os.getpid(), signal.SIGSTOP)
            else:
                kill_self()


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
