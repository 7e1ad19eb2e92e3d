"""A test double of an OpenAI-compatible chat-completions server (standard library only).

::

    with FakeOpenAIServer(responses=[{"content": "hello"}]) as server:
        spec = ModelSpec(provider="openai", name="gpt-test", base_url=server.base_url)
        ...
        server.requests  # the JSON bodies received, in order

Each response is served once, in order, to ``POST /v1/chat/completions``:

* ``{"content": "text"}`` -- a plain answer;
* ``{"tool_calls": [{"name": ..., "arguments": "raw json" | {...}}], "content": ...}``;
* ``{"status": 500, "error": "message"}`` -- a failing endpoint (any 4xx/5xx status);
* ``{"raw": {...} | "text"}`` -- that body verbatim (status 200 unless ``"status"`` is given).

A tool call may give its own ``"id"`` (say ``""``, as some local servers send); a response
may give its ``"finish_reason"`` (say ``"length"``: cut off at the token limit).

A text or tool-call response may also carry ``"usage"``: a dict of ``prompt_tokens`` and
``completion_tokens`` to report, or ``None`` to leave usage out of the reply. A request for
a model in ``unknown_models`` gets a 404 like OpenAI's; when the responses run out, a 500.
"""

from __future__ import annotations

import json
import time
from typing import Any

from charter.testing._http_server import FakeHandler, FakeHTTPServer

__all__ = ["FakeOpenAIServer"]


class _Handler(FakeHandler):
    def do_GET(self) -> None:
        self._send(404, _error(404, f"unknown path {self.path}"))


class FakeOpenAIServer(FakeHTTPServer):
    """Serves scripted chat completions on 127.0.0.1 from a background thread.

    ``base_url`` is ``http://127.0.0.1:PORT/v1``; still known after the server stops.
    """

    _path = "/v1/chat/completions"
    _url_path = "/v1"
    _thread_name = "fake-openai"
    _handler_class = _Handler

    def _error(self, status: int, message: str) -> dict[str, Any]:
        return _error(status, message)

    def _model_not_found(self, model: str) -> dict[str, Any]:
        return _error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )

    def _reply(
        self, index: int, model: str, request: dict[str, Any], spec: dict[str, Any]
    ) -> dict[str, Any]:
        return _completion(index, model, request, spec)


def _completion(
    index: int, model: str, request: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any]:
    calls: list[dict[str, Any]] = [
        {
            "id": str(c.get("id", f"call_fake_{index}_{i}")),
            "type": "function",
            "function": {
                "name": str(c["name"]),
                "arguments": c["arguments"]
                if isinstance(c.get("arguments"), str)
                else json.dumps(c.get("arguments", {})),
            },
        }
        for i, c in enumerate(spec.get("tool_calls", ()))
    ]
    content = spec.get("content")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    reply: dict[str, Any] = {
        "id": f"chatcmpl-fake-{index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": spec.get("finish_reason") or ("tool_calls" if calls else "stop"),
                "logprobs": None,
            }
        ],
    }
    usage = spec.get("usage", {})
    if usage is not None:
        prompt = int(usage.get("prompt_tokens", _estimate(json.dumps(request.get("messages")))))
        out = _estimate(content) + sum(_estimate(c["function"]["arguments"]) for c in calls)
        completion = int(usage.get("completion_tokens", out))
        reply["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return reply


def _error(status: int, message: str, *, code: str | None = None) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _estimate(text: str | None) -> int:
    return 0 if not text else max(1, len(text) // 4)
