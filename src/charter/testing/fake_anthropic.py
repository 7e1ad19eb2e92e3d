"""A test double of Anthropic's messages API (standard library only).

::

    with FakeAnthropicServer(responses=[{"content": "hello"}]) as server:
        spec = ModelSpec(provider="anthropic", name="claude-test", base_url=server.base_url)
        ...
        server.requests  # the JSON bodies received, in order

Each response is served once, in order, to ``POST /v1/messages``:

* ``{"content": "text"}`` -- a plain answer;
* ``{"tool_calls": [{"name": ..., "arguments": {...}, "id"?: ...}], "content"?: "text"}``
  -- ``tool_use`` blocks (after a text block when ``content`` is given);
* ``{"status": 529, "error": "message", "type"?: "overloaded_error"}`` -- a failing endpoint;
* ``{"raw": {...} | "text"}`` -- that body verbatim (status 200 unless ``"status"`` is given).

A text or tool-call response may carry ``"stop_reason"`` (default ``tool_use`` or
``end_turn``) and ``"usage"`` (``input_tokens``/``output_tokens`` to report). A request for a
model in ``unknown_models`` gets a 404 ``not_found_error``; when ``api_key`` is set, a request
with another key (``x-api-key``, or a bearer token) gets a 401 ``authentication_error``;
when the responses run out, a 500. ``api_keys`` records the key each request carried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from email.message import Message
from typing import Any

from charter.testing._http_server import FakeHTTPServer

__all__ = ["FakeAnthropicServer"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class FakeAnthropicServer(FakeHTTPServer):
    """Serves scripted messages on 127.0.0.1 from a background thread.

    ``base_url`` is ``http://127.0.0.1:PORT`` (the SDK adds ``/v1/messages``); known after a
    stop too.
    """

    _path = "/v1/messages"
    _url_path = ""
    _thread_name = "fake-anthropic"

    def __init__(
        self,
        responses: Iterable[dict[str, Any]] = (),
        *,
        unknown_models: Iterable[str] = (),
        api_key: str | None = None,
    ) -> None:
        super().__init__(responses, unknown_models=unknown_models)
        self.api_key = api_key
        self.api_keys: list[str | None] = []

    def _serves(self, path: str) -> bool:
        return super()._serves(path.split("?")[0])

    def _refusal(self, model: str, headers: Message) -> tuple[int, Any] | None:
        key = _key(headers)
        self.api_keys.append(key)
        if self.api_key is not None and key != self.api_key:
            return 401, _error(401, "invalid x-api-key")  # the API's own words
        return super()._refusal(model, headers)

    def _error(self, status: int, message: str) -> dict[str, Any]:
        return _error(status, message)

    def _model_not_found(self, model: str) -> dict[str, Any]:
        return _error(404, f"model: {model}")

    def _failure(self, status: int, spec: dict[str, Any]) -> dict[str, Any]:
        return _error(status, str(spec.get("error", "")), kind=spec.get("type"))

    def _reply(
        self, index: int, model: str, request: dict[str, Any], spec: dict[str, Any]
    ) -> dict[str, Any]:
        return _message(index, model, request, spec)


def _key(headers: Message) -> str | None:
    """The key sent as ``x-api-key``, or as a bearer token (as newer SDKs send it)."""
    bearer = headers.get("Authorization") or ""
    if bearer.startswith("Bearer "):
        return bearer.removeprefix("Bearer ")
    return headers.get("x-api-key")


def _message(
    index: int, model: str, request: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if spec.get("content") is not None:
        blocks.append({"type": "text", "text": str(spec["content"])})
    for i, call in enumerate(spec.get("tool_calls", ())):
        blocks.append(
            {
                "type": "tool_use",
                "id": str(call.get("id", f"toolu_fake_{index}_{i}")),
                "name": str(call["name"]),
                "input": call.get("arguments", {}),
            }
        )
    stop = spec.get("stop_reason") or ("tool_use" if spec.get("tool_calls") else "end_turn")
    usage = spec.get("usage") or {}
    prompt = json.dumps([request.get("system"), request.get("messages")])
    return {
        "id": f"msg_fake_{index}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": int(usage.get("input_tokens", _estimate(prompt))),
            "output_tokens": int(usage.get("output_tokens", _estimate(json.dumps(blocks)))),
        },
    }


def _error(status: int, message: str, *, kind: str | None = None) -> dict[str, Any]:
    kind = kind or _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _estimate(text: str) -> int:
    return max(1, len(text) // 4)
