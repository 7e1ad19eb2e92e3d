"""A model that answers from a run's log: ``charter replay`` serves each step's recorded response.

The response for a request is the recorded ``model_responded`` of step ``request.step + 1``
(steps count the responses already committed), so a replay that re-asks a step after a crash
gets the same answer again. A recorded ``model_call_failed`` is raised as the same error; the
attempts a step made before its last (``attempts``, ``rejected``) fail again in order, the
rejected answers with their recorded usage, so the replayed step records what the original did. A
step the log does not hold raises :class:`~charter.errors.ModelError`: the replay then records
a failure where the original went on, and the comparison shows where.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from charter.errors import (
    ModelAuthError,
    ModelEmptyAnswerError,
    ModelError,
    ModelNotServedError,
    ModelRateLimitedError,
    ModelResponseError,
    ModelTruncatedError,
    ModelUnavailableError,
)
from charter.events import (
    ModelCallFailed,
    ModelResponded,
    ProposedCall,
    ToolCallProposed,
    Usage,
)
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
        ModelEmptyAnswerError,
        ModelTruncatedError,
    )
}


class ReplayModel:
    """Serves recorded responses by step. ``provider``, ``name``, ``endpoint``, ``sha256`` and
    :meth:`parameters` follow the last served one."""

    def __init__(
        self,
        recorded: Iterable[ModelResponded | ModelCallFailed],
        *,
        proposals: Mapping[tuple[int, str], ToolCallProposed] | None = None,
    ) -> None:
        self._proposals = proposals or {}
        """The log's ``tool_call_proposed`` by (step, call id): their arguments are never
        redacted, so they stand in for a call's arguments the log's model answer redacted."""
        self._by_step: dict[int, list[ModelResponded | ModelCallFailed]] = {}
        self._calls: dict[int, int] = {}  # calls served of the step's current event
        for body in recorded:
            self._by_step.setdefault(body.step, []).append(body)
        first = next(iter(self._by_step.values()), [None])[0]
        self.provider = first.provider if first is not None else "replay"
        self.name = first.model if first is not None else "replay"
        self.endpoint = first.endpoint if first is not None else None
        """The endpoint the original called: the replayed model events record it again."""
        answered = [b for bs in self._by_step.values() for b in bs if isinstance(b, ModelResponded)]
        self._parameters = dict(answered[0].parameters) if answered else {}
        self.sha256 = answered[0].model_version if answered else None
        """A local model's file version, as the original recorded it (``model_version``)."""

    def parameters(self) -> dict[str, Any]:
        """The sampling parameters the original sent (``model_responded.parameters``)."""
        return dict(self._parameters)

    async def respond(self, request: ModelRequest) -> ModelResponse:
        step = request.step + 1
        events = self._by_step.get(step)
        if not events:
            raise ModelError(f"replay: the log holds no model response for step {step}")
        recorded = events[0]  # a step asked again (after an outage) has an event per asking
        self.provider, self.name = recorded.provider, recorded.model
        self.endpoint = recorded.endpoint
        if isinstance(recorded, ModelResponded):
            self._parameters = dict(recorded.parameters)
            self.sha256 = recorded.model_version
        attempt = self._calls[step] = self._calls.get(step, 0) + 1
        if attempt >= recorded.attempts and len(events) > 1:
            events.pop(0)  # this asking is settled: the next one gets the next event
            self._calls[step] = 0
        answer = {r.attempt: r for r in recorded.rejected}.get(attempt)
        error: type[ModelError] = _ERRORS.get(answer.code, ModelError) if answer else ModelError
        message, retryable, excerpt = "replay: an earlier attempt of the step failed", True, None
        if isinstance(recorded, ModelCallFailed) and attempt >= recorded.attempts:
            error = _ERRORS.get(recorded.error.code, ModelError)
            message, retryable = recorded.error.message, recorded.error.retryable
            excerpt = recorded.excerpt
        elif isinstance(recorded, ModelResponded) and attempt >= recorded.attempts:
            spent = sum((r.usage for r in recorded.rejected), Usage())
            return ModelResponse(
                content=recorded.content,
                tool_calls=tuple(self._unredacted(recorded)),
                usage=Usage(
                    input_tokens=recorded.usage.input_tokens - spent.input_tokens,
                    output_tokens=recorded.usage.output_tokens - spent.output_tokens,
                ),
                model=recorded.model,
                finish_reason=recorded.finish_reason,
                ignored_text=recorded.ignored_text,
                usage_reported=False,  # accepted once: judged by its finish_reason alone again
            )
        raise error(
            message,
            retryable=retryable,
            finish_reason=answer.finish_reason if answer else None,
            input_tokens=answer.usage.input_tokens if answer else 0,
            output_tokens=answer.usage.output_tokens if answer else 0,
            excerpt=excerpt,
        )

    def _unredacted(self, recorded: ModelResponded) -> Iterator[ProposedCall]:
        for i, call in enumerate(recorded.tool_calls):
            path = f"tool_calls.{i}.arguments"
            hidden = any(p == path or p.startswith(f"{path}.") for p in recorded.redacted)
            proposed = self._proposals.get((recorded.step, call.call_id))
            if hidden and proposed is not None and proposed.arguments is not None:
                call = call.model_copy(update={"arguments": json.dumps(proposed.arguments)})
            yield call
