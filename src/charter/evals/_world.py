"""The world interface: what an eval case needs from the simulated outside world.

The tools under test act on systems outside Charter (a CRM, billing, a mail relay). Evals do
not know those systems; a suite names its *world* (``world:``, by default
:data:`DEFAULT_WORLD`), and each run of a case gets a fresh one through two small contracts:

* :class:`WorldKind`, what the name resolves to: the grammar of a case's fixtures
  (``state:``) and of its expected end state (``expect.final_state:``), both pydantic models,
  and ``create``, which sets a world up in the run's directory from the fixtures (records to
  add, faults such as latency to inject);
* :class:`World`, one run's world: the ``resources`` that point the tools at it
  (``Runtime(resources=...)`` -> ``ToolContext.resources``), ``heal`` (take the injected
  faults away before a killed worker's runs resume), and the two readings the checks make of
  its final state: effects recorded twice for one idempotency key, and what differs from
  ``expect.final_state``.

A name is an entry point of the group :data:`ENTRY_POINTS` (the demo's support desk is
registered as ``support_desk`` by Charter's own package metadata) or a dotted path
``package.module:Name``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from charter.errors import ConfigError

ENTRY_POINTS = "charter.eval_worlds"
DEFAULT_WORLD = "support_desk"
"""The demo's simulated support desk (CRM, tickets, billing, mail)."""


class World(Protocol):
    """One run's simulated outside world, set up fresh for it."""

    def resources(self) -> Mapping[str, str]:
        """The runtime's ``resources`` that point the case's tools at this world."""
        ...

    def heal(self) -> None:
        """Take away the faults the fixtures injected (before a killed worker's runs resume)."""
        ...

    def duplicates(self) -> list[str]:
        """Effects recorded more than once for one idempotency key, one line each
        (``expect.exactly_once``)."""
        ...

    def check(self, final_state: Any) -> list[str]:
        """Each way the world differs from ``final_state`` (a ``final_state_model``), one
        short line each; empty when it matches."""
        ...


class WorldKind(Protocol):
    """What a suite's ``world:`` names: the grammar of its fixtures and how to set one up."""

    @property
    def state_model(self) -> type[BaseModel]:
        """What a case may give as ``state:`` (checked when the suite loads)."""
        ...

    @property
    def final_state_model(self) -> type[BaseModel]:
        """What a case may expect as ``expect.final_state:`` (checked when the suite loads)."""
        ...

    def create(self, where: Path, state: Any) -> World:
        """A fresh world in the directory ``where``, as ``state`` (a ``state_model``) says.
        A ``charter worker`` started in ``where`` without resources must find it too."""
        ...


_MEMBERS = ("state_model", "final_state_model", "create")


def resolve_world(name: str) -> WorldKind:
    """The world ``name`` names (an entry point or ``module:attribute``); ConfigError if none."""
    if ":" in name:
        module, _, attribute = name.partition(":")
        try:
            found = getattr(importlib.import_module(module), attribute)
        except ImportError as exc:
            raise ConfigError(f"world {name!r}: cannot import {module}: {exc}") from exc
        except AttributeError:
            raise ConfigError(f"world {name!r}: {module} has no {attribute}") from None
    else:
        points = entry_points(group=ENTRY_POINTS, name=name)
        if not points:
            known = sorted(p.name for p in entry_points(group=ENTRY_POINTS))
            raise ConfigError(
                f"no eval world named {name!r} (entry points {ENTRY_POINTS}:"
                f" {', '.join(known) or 'none'})",
                hint="name one as package.module:Name, or reinstall the package that provides it",
            )
        found = next(iter(points)).load()
    missing = [m for m in _MEMBERS if not hasattr(found, m)]
    if missing:
        raise ConfigError(f"world {name!r} is not an eval world: it lacks {', '.join(missing)}")
    kind: WorldKind = found
    return kind


__all__ = ["DEFAULT_WORLD", "ENTRY_POINTS", "World", "WorldKind", "resolve_world"]
