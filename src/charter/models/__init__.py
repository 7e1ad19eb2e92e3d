"""The model interface: a request of messages and tool specs in, a response of text or calls out.

Providers: ``scripted`` (responses from a JSON script, for tests and reproducible demos),
``openai`` (any OpenAI-compatible chat-completions endpoint, with tool calling or a JSON-schema
constrained answer), ``anthropic`` (the messages API) and ``local`` (a GGUF file, in process).
"""

from __future__ import annotations

from charter.models._base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ModelSpec,
    ToolSpec,
    build_model,
    estimate_tokens,
)
from charter.models._replay import ReplayModel
from charter.models._routing import CachePolicy, Route, Routing, StepRule
from charter.models._scripted import ScriptedModel

__all__ = [
    "CachePolicy",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSpec",
    "ReplayModel",
    "Route",
    "Routing",
    "ScriptedModel",
    "StepRule",
    "ToolSpec",
    "build_model",
    "estimate_tokens",
]
