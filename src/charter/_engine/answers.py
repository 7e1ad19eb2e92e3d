"""Which model answers the run may use, and what the unusable ones cost.

A server can answer HTTP 200 with nothing usable in it. The engine, not each provider, decides:

* an answer the server stopped at its token limit (``finish_reason`` ``length``, Anthropic's
  ``max_tokens``, or a server-reported output count that reached ``max_output_tokens``: some
  servers say ``stop`` when they cut) is *truncated*: neither its text nor its tool calls are
  taken, even when the calls parse, because the cut may have dropped a later call or the end
  of a sentence that changes its meaning. Code ``model_truncated``.
* an answer with no tool calls and no content but whitespace is *empty*: it is not a final
  answer. Code ``model_empty_answer``.

Both are retryable: the step asks again within ``max_attempts`` and the budgets, then the run
escalates. Every answered attempt, usable or not, is priced and recorded
(:class:`~charter.events.RejectedAnswer`), and its tokens and cost count against the budgets.
"""

from __future__ import annotations

from typing import Any

from charter._engine.state import RunState
from charter.agents import Budgets
from charter.errors import ModelEmptyAnswerError, ModelError, ModelTruncatedError
from charter.events import RejectedAnswer, Usage
from charter.models import ModelResponse, ModelSpec

TRUNCATED = frozenset({"length", "max_tokens"})
"""The ``finish_reason`` values that say the answer hit the token limit."""


def check(response: ModelResponse, spec: ModelSpec) -> None:
    """Raise :class:`ModelTruncatedError` or :class:`ModelEmptyAnswerError` for an answer the
    run must not use; the error carries the answer's usage."""
    where = f"the answer of the {spec.provider} model {spec.name!r}"
    said: dict[str, Any] = {
        "finish_reason": response.finish_reason,
        "input_tokens": response.usage.input_tokens,
        "output_tokens": response.usage.output_tokens,
        "retryable": True,
    }
    limit = spec.max_output_tokens
    at_limit = (
        limit is not None and response.usage_reported and response.usage.output_tokens >= limit
    )
    if response.finish_reason in TRUNCATED or at_limit:
        raise ModelTruncatedError(
            f"{where} was cut off at the {f'{limit} ' if limit else ''}token limit after "
            f"{response.usage.output_tokens} output tokens "
            f"(finish_reason {response.finish_reason!r})",
            hint="raise the model's max_output_tokens",
            **said,
        )
    if not response.tool_calls and not (response.content or "").strip():
        raise ModelEmptyAnswerError(
            f"{where} was empty: no content and no tool calls "
            f"(finish_reason {response.finish_reason!r})",
            **said,
        )


class Rejections:
    """The answered but unusable attempts of one model step, priced at the step's model."""

    def __init__(self) -> None:
        self.answers: list[RejectedAnswer] = []

    def note(self, attempt: int, exc: ModelError, spec: ModelSpec) -> None:
        if not exc.answered:
            return
        usage = Usage(input_tokens=exc.input_tokens, output_tokens=exc.output_tokens)
        self.answers.append(
            RejectedAnswer(
                attempt=attempt,
                code=exc.code,
                finish_reason=exc.finish_reason,
                usage=usage,
                cost_usd=spec.cost_usd(usage),
            )
        )

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=sum(a.usage.input_tokens for a in self.answers),
            output_tokens=sum(a.usage.output_tokens for a in self.answers),
        )

    @property
    def cost_usd(self) -> float:
        return round(sum(a.cost_usd for a in self.answers), 12)

    def exhaust(self, budgets: Budgets, state: RunState) -> bool:
        """Whether the run's spending so far plus these answers' reaches the token or money
        budget: then the step stops asking."""
        tokens, cost = state.tokens + self.usage.total, state.cost_usd + self.cost_usd
        if budgets.max_tokens_total and tokens >= budgets.max_tokens_total:
            return True
        return budgets.max_cost_usd is not None and cost >= budgets.max_cost_usd

    def failed(self) -> dict[str, Any]:
        """The fields of the step's ``model_call_failed`` these answers fill."""
        return {"rejected": tuple(self.answers), "usage": self.usage, "cost_usd": self.cost_usd}

    def answered(self, response: ModelResponse, spec: ModelSpec, attempts: int) -> dict[str, Any]:
        """The fields of the step's ``model_responded`` that say what it cost and why it
        stopped: ``usage`` and ``cost_usd`` are the accepted answer's plus these."""
        return {
            "usage": response.usage + self.usage,
            "cost_usd": spec.cost_usd(response.usage) + self.cost_usd,
            "finish_reason": response.finish_reason,
            "attempts": attempts,
            "rejected": tuple(self.answers),
            "ignored_text": response.ignored_text,
        }
