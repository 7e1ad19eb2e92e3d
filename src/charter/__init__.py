"""Charter: durable, governed, accountable runs for AI agents that act on real systems.

The curated public surface; everything else lives in modules whose names start with ``_`` or
in the submodules ``charter.events``, ``charter.store``, ``charter.models``, ``charter.testing``.
"""

from charter.agents import Agent, Budgets, load_agent
from charter.errors import (
    CharterError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    LeaseLost,
    ModelError,
    NotFoundError,
    RunStateError,
    StoreError,
    ToolError,
    TransientToolError,
)
from charter.models import ModelSpec, ScriptedModel
from charter.runtime import Runtime, run_sync
from charter.tools import (
    Reconciliation,
    RetryPolicy,
    Tool,
    ToolContext,
    ToolRegistry,
    ask_principal,
    sleep,
    tool,
)

__version__ = "0.1.0"

__all__ = [
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
