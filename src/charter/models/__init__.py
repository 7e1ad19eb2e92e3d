"""The model interface: a request of messages and tool specs in, a response of text or calls out.

Providers: ``scripted`` (responses from a JSON script, for tests and reproducible demos) and
``openai`` (any OpenAI-compatible chat-completions endpoint with tool calling).
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
from charter.models._scripted import ScriptedModel

__all__ = [
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSpec",
    "ScriptedModel",
    "ToolSpec",
    "build_model",
    "estimate_tokens",
]
