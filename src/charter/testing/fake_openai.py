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
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FakeOpenAIServer"]

_PATH = "/v1/chat/completions"


class FakeOpenAIServer:
    """Serves scripted chat completions on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        responses: Iterable[dict[str, Any]] = (),
        *,
        unknown_models: Iterable[str] = (),
    ) -> None:
        self.responses: list[dict[str, Any]] = list(responses)
        self.unknown_models: frozenset[str] = frozenset(unknown_models)
        self.requests: list[dict[str, Any]] = []
        self._served = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``; still known after the server stops."""
        if self._base_url is None:
            raise RuntimeError("the fake server has not started; use it as a context manager")
        return self._base_url

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            raise RuntimeError("the fake server is already running")
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() waits for the loop to notice
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()  # also joins the request threads
        if thread is not None:
            thread.join()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answer(self, body: dict[str, Any]) -> tuple[int, Any]:
        """The status and JSON body for one chat-completions request."""
        model = str(body.get("model", ""))
        with self._lock:
            self.requests.append(body)
            if model in self.unknown_models:
                return 404, _error(
                    404,
                    f"The model `{model}` does not exist or you do not have access to it.",
                    code="model_not_found",
                )
            if self._served >= len(self.responses):
                return 500, _error(500, f"the fake server has no response left ({self._served})")
            index = self._served
            self._served += 1
            spec = self.responses[index]
        if "raw" in spec:
            return int(spec.get("status", 200)), spec["raw"]
        if "status" in spec:
            return int(spec["status"]), _error(int(spec["status"]), str(spec.get("error", "")))
        return 200, _completion(index, model, body, spec)


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so no keep-alive socket outlives a test.
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            if self.path.rstrip("/") != _PATH:
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
            self._send(*server._answer(body))

        def do_GET(self) -> None:
            self._send(404, _error(404, f"unknown path {self.path}"))

        def _send(self, status: int, payload: Any) -> None:
            text = isinstance(payload, str)  # a raw text body, sent as it is
            data = (payload if text else json.dumps(payload)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


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
