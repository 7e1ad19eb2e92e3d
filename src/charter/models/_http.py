"""What the HTTP providers share: their SDKs' errors translated once, and a loggable endpoint.

The ``openai`` and ``anthropic`` SDKs raise the same tree of exceptions (same names, same
meaning), so one function turns either into Charter's :class:`ModelError` subclasses, whose
``code`` the run log records on ``model_call_failed``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from charter.errors import (
    ModelAuthError,
    ModelError,
    ModelNotServedError,
    ModelRateLimitedError,
    ModelResponseError,
    ModelUnavailableError,
)


def loggable_url(url: str) -> str:
    """``url`` without credentials, query or fragment: safe to write into the run log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def translate_error(
    sdk: ModuleType,
    exc: Exception,
    *,
    endpoint: str,
    model: str,
    timeout_s: float,
    key_env: str,
) -> ModelError:
    """The SDK's exception as a :class:`ModelError`, retryable when trying again may help."""
    where = f"{endpoint} (model {model!r})"
    if isinstance(exc, sdk.APITimeoutError):
        return ModelUnavailableError(f"{where} did not answer within {timeout_s}s", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ModelUnavailableError(
            f"cannot connect to {where}: {_cause(exc)}",
            hint="check that the server is running and the model's base_url",
            retryable=True,
        )
    if isinstance(exc, sdk.RateLimitError):
        return ModelRateLimitedError(f"{where} is rate limiting: {detail(exc)}", retryable=True)
    if isinstance(exc, sdk.InternalServerError):
        return ModelUnavailableError(
            f"{where} failed with HTTP {exc.status_code}: {detail(exc)}", retryable=True
        )
    if isinstance(exc, sdk.AuthenticationError):
        return ModelAuthError(
            f"{where} rejected the API key in ${key_env} (HTTP 401): {detail(exc)}",
            hint=f"check ${key_env}",
        )
    if isinstance(exc, sdk.PermissionDeniedError):
        return ModelAuthError(
            f"{where} refused the API key in ${key_env} access (HTTP 403): {detail(exc)}",
            hint=f"check that the key in ${key_env} may use model {model!r}",
        )
    if isinstance(exc, sdk.NotFoundError):
        return ModelNotServedError(
            f"{endpoint} does not serve the model {model!r} (HTTP 404): {detail(exc)}",
            hint="check the model's name and base_url",
        )
    if isinstance(exc, sdk.APIStatusError):
        return ModelError(f"{where} refused the request with HTTP {exc.status_code}: {detail(exc)}")
    if isinstance(exc, sdk.APIResponseValidationError):
        return ModelResponseError(f"malformed response from {where}: {exc}", retryable=True)
    return ModelError(f"the call to {where} failed: {exc}")


def detail(exc: Any) -> str:
    """The server's own error message when its body has one, else the SDK's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(getattr(exc, "message", exc))


def _cause(exc: BaseException) -> str:
    """The innermost cause's text ("connection refused"), not only the SDK's "Connection error"."""
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(inner) or type(inner).__name__
    return text if inner is exc else f"{exc} ({text})"
