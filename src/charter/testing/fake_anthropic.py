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
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FakeAnthropicServer"]

_PATH = "/v1/messages"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class FakeAnthropicServer:
    """Serves scripted messages on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        responses: Iterable[dict[str, Any]] = (),
        *,
        unknown_models: Iterable[str] = (),
        api_key: str | None = None,
    ) -> None:
        self.responses: list[dict[str, Any]] = list(responses)
        self.unknown_models: frozenset[str] = frozenset(unknown_models)
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.api_keys: list[str | None] = []
        self._served = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the SDK adds ``/v1/messages``); known after a stop too."""
        if self._base_url is None:
            raise RuntimeError("the fake server has not started; use it as a context manager")
        return self._base_url

    def start(self) -> FakeAnthropicServer:
        if self._httpd is not None:
            raise RuntimeError("the fake server is already running")
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answer(self, body: dict[str, Any], key: str | None) -> tuple[int, Any]:
        """The status and body (a JSON value, or text sent verbatim) for one request."""
        model = str(body.get("model", ""))
        with self._lock:
            self.requests.append(body)
            self.api_keys.append(key)
            if self.api_key is not None and key != self.api_key:
                return 401, _error(401, "invalid x-api-key")  # the API's own words
            if model in self.unknown_models:
                return 404, _error(404, f"model: {model}")
            if self._served >= len(self.responses):
                return 500, _error(500, f"the fake server has no response left ({self._served})")
            index = self._served
            self._served += 1
            spec = self.responses[index]
        if "raw" in spec:
            return int(spec.get("status", 200)), spec["raw"]
        if "status" in spec:
            status = int(spec["status"])
            return status, _error(status, str(spec.get("error", "")), kind=spec.get("type"))
        return 200, _message(index, model, body, spec)


def _handler_for(server: FakeAnthropicServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: no socket outlives a test

        def do_POST(self) -> None:
            if self.path.split("?")[0].rstrip("/") != _PATH:
                self._send(404, _error(404, f"unknown path {self.path}"))
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as exc:
                self._send(400, _error(400, f"the body is not JSON: {exc}"))
                return
            if not isinstance(body, dict):
                self._send(400, _error(400, "the body must be a JSON object"))
                return
            self._send(*server._answer(body, self._key()))

        def _key(self) -> str | None:
            """The key sent as ``x-api-key``, or as a bearer token (as newer SDKs send it)."""
            bearer = self.headers.get("Authorization") or ""
            if bearer.startswith("Bearer "):
                return bearer.removeprefix("Bearer ")
            return self.headers.get("x-api-key")

        def _send(self, status: int, payload: Any) -> None:
            text = isinstance(payload, str)
            data = (payload if text else json.dumps(payload)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


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
