"""Dependencies point down: every import in ``src/charter`` checked against the layer table.

The table is the one drawn in ``docs/architecture.md`` ("Layers"); keep the two together. A
module may import modules of its own layer or of a layer below it, never above. Every import
counts: at the top of a module, inside a function, under ``if TYPE_CHECKING:``. Two more rules:

* the engine (``charter._engine``) is reached only by the runtime layer (runtime, the worker
  facade, replay, rerun) and by itself: above the runtime, code uses public names;
* the CLI imports nothing private (no ``_``-prefixed module) from outside ``charter.cli``.

And the CLI is a skin: it opens a ``Runtime`` and calls it (its ``operations`` for the
database as a whole); it never opens a store (``open_store``), reaches for the runtime's store
(``rt.store``) or imports from ``charter.store`` anything but types and constants.

A violation names the importing module, its line and the import.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Lowest first. A module belongs to the layer of the longest entry that is it or its package
# (``charter`` stands for charter/__init__.py alone: a new module must be placed).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("charter.errors",)),
    (
        "leaves",
        (
            "charter.events",
            "charter._digests",  # what an event's hash covers (events re-exports it)
            "charter.clock",
            "charter.principals",
            "charter.inputs",
            "charter.redaction",
            "charter._yaml_lines",
            "charter.stats",  # the report's value types; the stores fill them
            "charter.timeline",  # a run's log as lines, for runs show and the HTTP timeline
        ),
    ),
    (
        "contracts",
        ("charter.tools", "charter.policy", "charter.models", "charter.agents", "charter.observer"),
    ),
    ("store", ("charter.store",)),
    ("telemetry", ("charter.telemetry",)),  # the engine's default observer: spans
    ("engine", ("charter._engine",)),
    (
        "runtime",
        (
            "charter",  # the curated public names (charter/__init__.py)
            "charter.runtime",
            "charter.operations",  # the operator's calls on a database (Runtime.operations)
            "charter.schedules",  # cron schedules and their ticker (Runtime.schedules)
            "charter.webhooks",  # signing and checking webhook deliveries, mapping bodies
            "charter.worker",
            "charter.governance",
            "charter.approvals",
            "charter.audit",
            "charter.retention",
            "charter.memory",
            "charter.replay",
            "charter.rerun",
            "charter.diff",
        ),
    ),
    ("evals", ("charter.evals",)),
    # Above the library: the test kit, the demo application, the command line.
    ("testing", ("charter.testing",)),
    ("demo", ("charter.demo",)),
    # The command line and the HTTP server, side by side at the top: neither imports the other.
    ("cli", ("charter.cli", "charter.__main__", "charter.server")),
]

ENGINE = "charter._engine"
SKINS = ("charter.cli", "charter.__main__", "charter.server")  # the top layer's packages
APART = [("charter.server", "charter.cli"), ("charter.cli", "charter.server.")]
ENGINE_CLIENTS = "runtime"  # the only layer (besides the engine) that imports the engine

# Imports that break the rules today, each with the work that removes it. The test fails on
# any violation not listed here, and on an entry that no longer happens (delete it then).
KNOWN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    text: str


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(importer: str, source: str, *, is_package: bool = False) -> list[Import]:
    """Every ``charter`` module ``source`` imports, wherever the import statement is."""
    found: list[Import] = []
    package = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            # ``from charter import telemetry`` imports the module charter.telemetry
            targets = [
                f"{origin}.{a.name}" if _is_module(f"{origin}.{a.name}") else origin
                for a in node.names
            ]
        else:
            continue
        text = ast.unparse(node)
        for target in dict.fromkeys(targets):
            if target == "charter" or target.startswith("charter."):
                found.append(Import(importer, target, node.lineno, text))
    return found


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            below = prefix != "charter" and module.startswith(prefix + ".")  # the root: itself
            if (module == prefix or below) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _private(module: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in module.split("."))


def problem(imp: Import) -> str | None:
    """Why ``imp`` breaks the layering, or None."""
    low, high = layer_of(imp.imported), layer_of(imp.importer)
    if low is None or high is None:
        return None  # test_every_module_has_a_layer names it
    if low > high:
        return f"layer {LAYERS[high][0]!r} may not import layer {LAYERS[low][0]!r} above it"
    inside_engine = imp.importer == ENGINE or imp.importer.startswith(ENGINE + ".")
    if (
        (imp.imported == ENGINE or imp.imported.startswith(ENGINE + "."))
        and not inside_engine
        and LAYERS[high][0] != ENGINE_CLIENTS
    ):
        return "only the runtime layer reaches into the engine; use a public name"
    if LAYERS[high][0] == "cli" and _private(imp.imported):
        own = next(p for p in SKINS if imp.importer == p or imp.importer.startswith(p + "."))
        if not imp.imported.startswith(own + "."):
            return "the CLI and the server import nothing private from other packages"
    if any(imp.importer.startswith(a) and imp.imported.startswith(b) for a, b in APART):
        return "the CLI and the server are side by side: neither imports the other"
    return None


def all_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted((SRC / "charter").rglob("*.py")):
        found += imports_of(
            module_name(path), path.read_text(), is_package=path.name == "__init__.py"
        )
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = [
        module_name(p)
        for p in sorted((SRC / "charter").rglob("*.py"))
        if layer_of(module_name(p)) is None
    ]
    assert not unplaced, f"place these modules in LAYERS (and docs/architecture.md): {unplaced}"


def test_dependencies_point_down() -> None:
    broken: list[str] = []
    seen: set[tuple[str, str]] = set()
    for imp in all_imports():
        why = problem(imp)
        if why is None:
            continue
        seen.add((imp.importer, imp.imported))
        if (imp.importer, imp.imported) not in KNOWN:
            broken.append(f"{imp.importer}:{imp.line}: `{imp.text}`: {why}")
    assert not broken, "imports against the layers:\n" + "\n".join(broken)
    stale = sorted(set(KNOWN) - seen)
    assert not stale, f"these KNOWN exceptions no longer happen, delete them: {stale}"


# The violations this test was written against (issue 11): each must be caught.
@pytest.mark.parametrize(
    ("importer", "statement"),
    [
        ("charter.cli._ops", "from charter.store._copy import copy_store"),
        ("charter.cli._ops", "from charter.store._opening import Mode"),
        ("charter.cli._app", "from charter._engine.worker import WorkerOptions"),
        ("charter.cli._policy", "from charter._engine.governance import Governor"),
        (
            "charter.telemetry",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from charter._engine.loop import RunDriver",
        ),
        ("charter.tools", "def f():\n    from charter.telemetry import trace_id_for"),
        ("charter.evals._runner", "from charter.demo import tools"),
        ("charter.evals._suite", "from charter._engine.faults import FAULT_POINTS"),
        ("charter.testing.redteam", "from charter.demo import tools"),
        ("charter.store._base", "from charter.runtime import Runtime"),
        ("charter.policy._rules", "from .. import store"),
        ("charter.server._app", "from charter.cli._render import echo_json"),
        ("charter.server._app", "from charter.cli import main"),
        ("charter.cli._serve", "from charter.server._app import create_app"),
    ],
)
def test_an_upward_import_is_named(importer: str, statement: str) -> None:
    found = imports_of(importer, statement)
    assert found, statement
    assert all(problem(imp) for imp in found), [imp.imported for imp in found]


def test_a_new_module_must_be_placed() -> None:
    assert layer_of("charter") is not None
    assert layer_of("charter.something_new") is None
    assert layer_of("charter.store._sqlite") == layer_of("charter.store")


def test_downward_and_public_imports_pass() -> None:
    for importer, statement in [
        ("charter.cli._ops", "from charter.store import copy_store"),
        ("charter.cli._app", "from charter.cli._render import table"),
        ("charter.runtime", "from charter._engine.worker import Worker"),
        ("charter._engine.loop", "from charter import telemetry"),
        ("charter.demo.run", "from charter.testing.systems import Systems"),
        ("charter.cli._serve", "from charter.server import create_app"),
        ("charter.server._app", "from charter.server._auth import Caller"),
    ]:
        assert [problem(imp) for imp in imports_of(importer, statement)] == [None]


# -- the CLI is a skin over the runtime ------------------------------------------------------

STORE = "charter.store"


def _a_type_or_constant(value: Any) -> bool:
    """A class, a type alias (``Literal[...]``) or a plain value: not a function to call."""
    return inspect.isclass(value) or not callable(value) or hasattr(value, "__origin__")


def store_reaches(module: str, source: str) -> list[str]:
    """Each place where ``source`` (a CLI module) reaches past the runtime into storage."""
    found: list[str] = []
    store = importlib.import_module(STORE)
    for node in ast.walk(ast.parse(source)):
        line = f"{module}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Name) and node.id == "open_store":
            found.append(f"{line}: opens a store (open a Runtime instead)")
        elif isinstance(node, ast.Attribute) and node.attr in ("store", "open_store"):
            found.append(f"{line}: `{ast.unparse(node)}` reaches past the runtime")
        elif isinstance(node, ast.Import) and any(
            a.name == STORE or a.name.startswith(STORE + ".") for a in node.names
        ):
            found.append(f"{line}: `{ast.unparse(node)}`: import the types by name")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(STORE):
            calls = [
                a.name
                for a in node.names
                if node.module != STORE or not _a_type_or_constant(getattr(store, a.name, len))
            ]
            if calls:
                found.append(f"{line}: imports {', '.join(calls)} from {node.module}")
    return found


def test_the_cli_opens_a_runtime_never_a_store() -> None:
    reaches = [
        reach
        for skin in ("cli", "server")
        for path in sorted((SRC / "charter" / skin).rglob("*.py"))
        for reach in store_reaches(module_name(path), path.read_text())
    ]
    assert not reaches, "the CLI reaches past the runtime:\n" + "\n".join(reaches)


@pytest.mark.parametrize(
    "statement",
    [
        "from charter.store import open_store",
        "from charter.store import copy_store, RunRecord",
        "import charter.store",
        "def f(url):\n    return charter.store.open_store(url)",
        "async def f(rt):\n    return await rt.store.get_approval('a')",
        "from charter.store._sqlite import SQLiteStore",
    ],
)
def test_a_cli_reaching_for_the_store_is_named(statement: str) -> None:
    assert store_reaches("charter.cli._x", statement)


def test_the_cli_may_name_the_stores_types_and_constants() -> None:
    statement = "from charter.store import DEFAULT_URL, KillSwitchAction, RunRecord, RoleGrant"
    assert store_reaches("charter.cli._x", statement) == []
