"""Charter's errors: one root, a stable ``code`` on each, one table to exit codes.

::

    CharterError                      code            exit
    ├── ConfigError                   config          2   a developer's mistake (agent file, tool)
    │   └── ToolImportError           tool_import     2
    ├── InputError                    input           2   a run's input or a message: not UTF-8,
    │                                                     too large, missing
    ├── NotFoundError                 not_found       3   unknown run id, unknown tool
    ├── StoreError                    store           4   the database cannot be used
    │   ├── SchemaTooNewError         schema_too_new  4
    │   ├── StoreLockedError          store_locked    4
    │   └── ConflictError             conflict        5   a concurrent append or a lost lease
    ├── RunStateError                 run_state       6   e.g. send to a finished run
    ├── ForbiddenError                forbidden       9   e.g. approving one's own request
    ├── UnauthenticatedError          unauthenticated  12  an API token missing, unknown,
    │                                                     expired or revoked (charter serve)
    ├── ReplayUnavailableError        replay_unavailable  10  a run that cannot be replayed or
    │                                                         rerun: its tools do not import
    │                                                         here, retention removed payloads,
    │                                                         or an older Charter kept an answer
    │                                                         only as prose
    ├── IdempotencyConflictError      idempotency_conflict  11  a start's idempotency key
    │                                                         names a run of another request
    ├── ModelError                    model           7   the model provider failed or misbehaved
    │   ├── ModelUnavailableError     model_unavailable   7  unreachable, timed out, 5xx, overloaded
    │   ├── ModelRateLimitedError     model_rate_limited  7  HTTP 429
    │   ├── ModelAuthError            model_auth          7  the key is wrong or not allowed
    │   ├── ModelNotServedError       model_not_found     7  the endpoint does not serve that model
    │   └── ModelResponseError        model_bad_response  7  unparseable, cut off, wrong shape
    │       ├── ModelEmptyAnswerError model_empty_answer  7  no content and no tool calls
    │       └── ModelTruncatedError   model_truncated     7  cut off at the token limit
    └── ToolError                     tool            8   a tool call failed (carried to the model)
        └── TransientToolError        tool_transient  8   safe to retry: the effect did not happen

``http_status(error)`` gives the status ``charter serve`` answers an error with (the table
``HTTP_STATUS`` at the bottom: 400, 401, 403, 404, 409, 503; anything else 500).

Signals the runtime injects into user code derive from ``BaseException`` so that
``except Exception`` in a tool cannot swallow them::

    LeaseLost      raised by ToolContext.ensure_lease() when this worker no longer owns the run
"""

from __future__ import annotations

from typing import Any, ClassVar


class CharterError(Exception):
    """Root of every error Charter raises on purpose."""

    code: ClassVar[str] = "charter"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        """The plain value that crosses a durability boundary (events, JSON output)."""
        return {"code": self.code, "message": self.message, "hint": self.hint}


class ConfigError(CharterError):
    """The developer's configuration is wrong: an agent file, a tool, a URL."""

    code = "config"
    exit_code = 2


class ToolImportError(ConfigError):
    code = "tool_import"


class InputError(CharterError):
    """A run's input or a message cannot be taken: not UTF-8 text, or over the size limit."""

    code = "input"
    exit_code = 2


class NotFoundError(CharterError):
    code = "not_found"
    exit_code = 3


class StoreError(CharterError):
    """The database cannot be opened or written."""

    code = "store"
    exit_code = 4


class SchemaTooNewError(StoreError):
    code = "schema_too_new"


class StoreLockedError(StoreError):
    code = "store_locked"


class ConflictError(StoreError):
    """An append lost a race: the sequence number or the lease epoch moved on."""

    code = "conflict"
    exit_code = 5


class RunStateError(CharterError):
    code = "run_state"
    exit_code = 6


class ForbiddenError(CharterError):
    """The principal may not do this: a missing role, or deciding their own request."""

    code = "forbidden"
    exit_code = 9


class UnauthenticatedError(CharterError):
    """A request to ``charter serve`` carried no API token, or one that is unknown, expired or
    revoked."""

    code = "unauthenticated"
    exit_code = 12


class ReplayUnavailableError(CharterError):
    """A run cannot be replayed (or rerun) here: its tools do not import in this process,
    retention removed payloads the replay would need, or it was recorded by an older Charter
    whose log keeps an answer the replay needs only as prose. Nothing was replayed or started
    (a replay stops where it meets such an answer)."""

    code = "replay_unavailable"
    exit_code = 10


class IdempotencyConflictError(CharterError):
    """A start named an idempotency key that a run of a different request already holds."""

    code = "idempotency_conflict"
    exit_code = 11


class ModelError(CharterError):
    """The model provider failed, or returned something unusable."""

    code = "model"
    exit_code = 7

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool = False,
        finish_reason: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        excerpt: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.excerpt = excerpt
        """The start of the unusable answer, kept out of the message: it is the model's text,
        which an agent's logging settings may forbid storing (``model_call_failed.excerpt``)."""
        self.retryable = retryable
        self.finish_reason = finish_reason
        """Why the server says it stopped, when it answered (``stop``, ``length``...)."""
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        """What an answered but unusable attempt cost: it counts against the budgets."""

    @property
    def answered(self) -> bool:
        """The server answered (and may have charged for it): the answer was unusable."""
        return self.finish_reason is not None or self.input_tokens + self.output_tokens > 0


class ModelUnavailableError(ModelError):
    """The endpoint cannot be reached, timed out, or failed on its side (5xx, overloaded)."""

    code = "model_unavailable"


class ModelRateLimitedError(ModelError):
    code = "model_rate_limited"


class ModelAuthError(ModelError):
    """The endpoint refused the credentials (HTTP 401/403)."""

    code = "model_auth"


class ModelNotServedError(ModelError):
    """The endpoint does not serve the model the spec names (HTTP 404, ``model_not_found``)."""

    code = "model_not_found"


class ModelResponseError(ModelError):
    """The provider answered something unusable: not JSON, cut off, or of the wrong shape."""

    code = "model_bad_response"


class ModelEmptyAnswerError(ModelResponseError):
    """The server answered with neither content nor tool calls: not a final answer."""

    code = "model_empty_answer"


class ModelTruncatedError(ModelResponseError):
    """The answer was cut off at the token limit: neither its text nor its calls are whole."""

    code = "model_truncated"


class ToolError(CharterError):
    """A tool call failed; the error is recorded and returned to the model."""

    code = "tool"
    exit_code = 8


class TransientToolError(ToolError):
    """Raise from a tool to say: this failed, nothing happened, try again later."""

    code = "tool_transient"


class LeaseLost(BaseException):
    """This worker no longer holds the run's lease: another worker may own it now.

    Raised by :meth:`charter.ToolContext.ensure_lease` so that a tool stops before an effect
    that another worker may already be making. Derives from ``BaseException`` so that a tool's
    ``except Exception`` cannot swallow it.
    """

    code = "lease_lost"


HTTP_STATUS: dict[type[CharterError], int] = {
    ConfigError: 400,
    InputError: 400,
    UnauthenticatedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    RunStateError: 409,
    IdempotencyConflictError: 409,
    ConflictError: 409,
    StoreError: 503,
}
"""The HTTP status of an error (its nearest class listed here); 500 for the rest."""


def http_status(error: CharterError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
