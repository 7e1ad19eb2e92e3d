"""Model wrappers tests share."""

from __future__ import annotations

from typing import Any

from charter.models import ModelRequest, ModelResponse, ScriptedModel, ToolSpec

LOOKUP = ToolSpec(
    name="lookup",
    description="Look up an order.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
)
"""The one tool the provider tests offer a model."""


class Recording:
    """A scripted model that keeps every request it was sent (what the model was shown)."""

    provider = "scripted"
    name = "scripted"

    def __init__(self, script: Any) -> None:
        self._inner = ScriptedModel(script)
        self.requests: list[ModelRequest] = []

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return await self._inner.respond(request)
