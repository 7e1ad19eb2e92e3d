"""A webhook receiver double: an outside system that takes Charter's notifications.

Run it as a process (``python -m charter.testing.receiver --port P --secret S --log FILE``):
it verifies each POST's ``Charter-Signature`` (``t=<unix>,v1=HMAC-SHA256(secret, t.body)``,
within ``--tolerance`` seconds) on its own, without Charter's code, appends one JSON line per
request to ``--log`` (``delivery_id``, ``kind``, ``verified``, ``body``) and answers 200, or
401 to a bad signature. ``--hang`` takes requests but never answers (a receiver stuck
mid-delivery).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def verify(secret: bytes, header: str, body: bytes, *, tolerance_s: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` recently enough."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def serve(port: int, secret: bytes, log: Path, *, hang: bool = False) -> None:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ok = verify(secret, self.headers.get("Charter-Signature", ""), body)
            entry: dict[str, Any] = {
                "delivery_id": self.headers.get("Charter-Delivery"),
                "kind": self.headers.get("Charter-Event"),
                "verified": ok,
                "body": json.loads(body or b"null"),
            }
            with lock, log.open("a") as out:
                out.write(json.dumps(entry) + "\n")
            if hang:
                time.sleep(3600)
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def received(log: Path) -> list[dict[str, Any]]:
    """What a receiver logged, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    serve(args.port, args.secret.encode(), args.log, hang=args.hang)


if __name__ == "__main__":
    main()
