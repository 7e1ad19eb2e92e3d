"""The curated public surface changes only on purpose."""

from __future__ import annotations

import importlib.metadata

import charter

PUBLIC = [
    "Agent",
    "Budgets",
    "CharterError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "LeaseLost",
    "ModelError",
    "ModelSpec",
    "NotFoundError",
    "Reconciliation",
    "RetryPolicy",
    "RunStateError",
    "Runtime",
    "ScriptedModel",
    "StoreError",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "TransientToolError",
    "__version__",
    "ask_principal",
    "load_agent",
    "run_sync",
    "sleep",
    "tool",
]


def test_all_is_pinned() -> None:
    assert charter.__all__ == PUBLIC


def test_every_public_name_imports() -> None:
    namespace: dict[str, object] = {}
    exec("from charter import *", namespace)
    for name in PUBLIC:
        assert getattr(charter, name) is namespace[name], name


def test_no_private_name_is_public() -> None:
    assert not [n for n in charter.__all__ if n.startswith("_") and n != "__version__"]


def test_version_matches_the_installed_distribution() -> None:
    assert charter.__version__ == importlib.metadata.version("charter")
