"""A model that answers from a run's log: ``charter replay`` serves each step's recorded response.

The response for a request is the recorded ``model_responded`` of step ``request.step + 1``
(steps count the responses already committed), so a replay that re-asks a step after a crash
gets the same answer again. A recorded ``model_call_failed`` is raised as the same error. A
step the log does not hold raises :class:`~charter.errors.ModelError`: the replay then records
a failure where the original went on, and the comparison shows where.
"""

from __future__ import annotations

from collections.abc import Iterable

from charter.errors import (
    ModelAuthError,
    ModelError,
    ModelNotServedError,
    ModelRateLimitedError,
    ModelResponseError,
    ModelUnavailableError,
)
from charter.events import ModelCallFailed, ModelResponded
from charter.models._base import ModelRequest, ModelResponse

_ERRORS: dict[str, type[ModelError]] = {
    cls.code: cls
    for cls in (
        ModelError,
        ModelUnavailableError,
        ModelRateLimitedError,
        ModelAuthError,
        ModelNotServedError,
        ModelResponseError,
    )
}


class ReplayModel:
    """Serves recorded responses by step. ``provider`` and ``name`` follow the last served one."""

    def __init__(self, recorded: Iterable[ModelResponded | ModelCallFailed]) -> None:
        self._by_step: dict[int, ModelResponded | ModelCallFailed] = {}
        for body in recorded:
            self._by_step.setdefault(body.step, body)
        first = next(iter(self._by_step.values()), None)
        self.provider = first.provider if first is not None else "replay"
        self.name = first.model if first is not None else "replay"

    async def respond(self, request: ModelRequest) -> ModelResponse:
        step = request.step + 1
        recorded = self._by_step.get(step)
        if recorded is None:
            raise ModelError(f"replay: the log holds no model response for step {step}")
        self.provider, self.name = recorded.provider, recorded.model
        if isinstance(recorded, ModelCallFailed):
            error = _ERRORS.get(recorded.error.code, ModelError)
            raise error(recorded.error.message, retryable=recorded.error.retryable)
        return ModelResponse(
            content=recorded.content,
            tool_calls=recorded.tool_calls,
            usage=recorded.usage,
            model=recorded.model,
        )
