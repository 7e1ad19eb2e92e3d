"""What the fake model servers share: a scripted JSON endpoint on 127.0.0.1 (standard library).

A subclass names its path and answers in its API's shapes (``_reply``, ``_error``); this base
serves it from a background thread, records each request body, hands the scripted responses
out once each, in order, and serves ``{"raw": ...}`` and ``{"status": ...}`` responses itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = ["FakeHTTPServer", "FakeHandler"]


class FakeHandler(BaseHTTPRequestHandler):
    """Reads a POSTed JSON object and sends what ``server_fake`` answers."""

    # HTTP/1.0: one request per connection, so no keep-alive socket outlives a test.
    protocol_version = "HTTP/1.0"
    server_fake: ClassVar[FakeHTTPServer]

    def do_POST(self) -> None:
        fake = self.server_fake
        if not fake._serves(self.path):
            self._send(404, fake._error(404, f"unknown path {self.path}"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            self._send(400, fake._error(400, f"the body is not JSON: {exc}"))
            return
        if not isinstance(body, dict):
            self._send(400, fake._error(400, "the body must be a JSON object"))
            return
        self._send(*fake._answer(body, self.headers))

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


class FakeHTTPServer:
    """Serves scripted responses on 127.0.0.1 from a background thread."""

    _path: ClassVar[str]  # the one path served to POST, say "/v1/messages"
    _url_path: ClassVar[str]  # what ``base_url`` ends with after the port, say "/v1"
    _thread_name: ClassVar[str]
    _handler_class: ClassVar[type[FakeHandler]] = FakeHandler  # or one that adds methods

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
        """``http://127.0.0.1:PORT`` and the subclass's ``_url_path``; known after a stop too."""
        if self._base_url is None:
            raise RuntimeError("the fake server has not started; use it as a context manager")
        return self._base_url

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("the fake server is already running")
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}{self._url_path}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() waits for the loop to notice
            name=self._thread_name,
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # What a subclass fills in.

    def _error(self, status: int, message: str) -> dict[str, Any]:
        """The API's JSON error body."""
        raise NotImplementedError

    def _reply(
        self, index: int, model: str, request: dict[str, Any], spec: dict[str, Any]
    ) -> dict[str, Any]:
        """The API's JSON answer to ``request`` for the scripted response ``spec``."""
        raise NotImplementedError

    def _serves(self, path: str) -> bool:
        """Whether a POST to ``path`` reaches the endpoint."""
        return path.rstrip("/") == self._path

    def _model_not_found(self, model: str) -> dict[str, Any]:
        """The API's 404 body for a model in ``unknown_models``."""
        raise NotImplementedError

    def _refusal(self, model: str, headers: Message) -> tuple[int, Any] | None:
        """Called under the lock once a request is recorded: a status and body to refuse with."""
        if model in self.unknown_models:
            return 404, self._model_not_found(model)
        return None

    def _failure(self, status: int, spec: dict[str, Any]) -> dict[str, Any]:
        """The body for a scripted ``{"status": ..., "error": ...}`` response."""
        return self._error(status, str(spec.get("error", "")))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        """``_handler_class`` bound to this server."""
        return type("Handler", (self._handler_class,), {"server_fake": self})

    # The shared part.

    def _answer(self, body: dict[str, Any], headers: Message) -> tuple[int, Any]:
        """The status and body (a JSON value, or text sent verbatim) for one request."""
        model = str(body.get("model", ""))
        with self._lock:
            self.requests.append(body)
            refusal = self._refusal(model, headers)
            if refusal is not None:
                return refusal
            if self._served >= len(self.responses):
                return 500, self._error(
                    500, f"the fake server has no response left ({self._served})"
                )
            index = self._served
            self._served += 1
            spec = self.responses[index]
        if "raw" in spec:
            return int(spec.get("status", 200)), spec["raw"]
        if "status" in spec:
            status = int(spec["status"])
            return status, self._failure(status, spec)
        return 200, self._reply(index, model, body, spec)
