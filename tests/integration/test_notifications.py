"""Outbound notifications from a real `charter serve` to a real receiver process that checks
signatures: nothing lost while the receiver is down, failed deliveries retried by hand, a
server killed mid-delivery delivers after restart; claims never overlap. Both stores."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers.cli import run_charter
from tests.helpers.refund_agent import write_refund_agent

from charter.server._notify import signature
from charter.store import open_store
from charter.store._notifications import KINDS, Route
from charter.testing.receiver import received

SECRET = "s3cret-shared-with-the-receiver"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "NOTIFY_SECRET": SECRET}
    for name in ("CHARTER_DB", "CHARTER_AUDIT_KEY", "CHARTER_AUDIT_KEY_FILE"):
        env.pop(name, None)
    return env


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def receiving(port: int, log: Path, *, hang: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    args = ["--port", str(port), "--secret", SECRET, "--log", str(log)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter.testing.receiver", *args, *(["--hang"] if hang else [])],
        env=_env(),
    )
    try:
        _wait(lambda: _answers(port), "the receiver did not start")
        yield proc
    finally:
        _stop(proc)


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.TransportError:
        return False
    return True


@contextmanager
def serving(
    tmp: Path, db_url: str, config: Path, *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    port = _port()
    args = ["serve", "--db", db_url, "--port", str(port), "--config", str(config)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", *args], cwd=tmp, env=env or _env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait(lambda: proc.poll() is not None or _answers(port), "serve did not start")
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        yield proc
    finally:
        _stop(proc)
        proc.stderr.close()  # type: ignore[union-attr]


def _wait(done: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := done()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def _config(tmp: Path, port: int, **more: Any) -> Path:
    endpoint = {
        "name": "ops",
        "url": f"http://127.0.0.1:{port}/hook",
        "tenants": ["acme"],
        "secret_env": "NOTIFY_SECRET",
    }
    section = {"endpoints": [endpoint], "backoff_s": 0.2, "max_backoff_s": 0.5, "poll_s": 0.1}
    path = tmp / "serve.yaml"
    path.write_text(json.dumps({"notifications": {**section, **more}}))  # JSON is YAML
    return path


def _runs(tmp: Path, db_url: str, *tenants: str) -> dict[str, str]:
    """One finished run per tenant (scripted: it answers at once): run id -> tenant."""
    (tmp / "prompt.md").write_text("You help.")
    (tmp / "script.json").write_text(json.dumps([{"content": "done"}] * 10))
    (tmp / "agent.yaml").write_text(
        "agent:\n  name: helper\n  instructions: prompt.md\n"
        "  model: {provider: scripted, script: script.json}\n  tools: []\n"
    )
    runs = {}
    for tenant in tenants:
        started = run_charter(tmp, "start", "agent.yaml", "--input", "hi", "--tenant", tenant,
                              "--principal", "ann", "--db", db_url, "--json")  # fmt: skip
        assert started.returncode == 0, started.stderr
        runs[json.loads(started.stdout)["run_id"]] = tenant
    worked = run_charter(tmp, "worker", "--until-idle", "--db", db_url)
    assert worked.returncode == 0, worked.stderr
    return runs


def _deliveries(tmp: Path, db_url: str, *more: str) -> list[dict[str, Any]]:
    listed = run_charter(tmp, "notifications", "list", "--json", "--db", db_url, *more)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)  # type: ignore[no-any-return]


def _delivered(tmp: Path, db_url: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        found = _deliveries(tmp, db_url)
        return len(found) == count and all(d["status"] == "delivered" for d in found)

    return check


def test_a_receiver_that_is_down_loses_nothing(tmp_path: Path, store_url: str) -> None:
    port = _port()
    runs = _runs(tmp_path, store_url, "acme", "acme", "globex")
    log = tmp_path / "received.jsonl"
    with serving(tmp_path, store_url, _config(tmp_path, port, max_attempts=1000)):
        # The receiver is down: the deliveries are attempted and kept.
        _wait(lambda: any(d["attempts"] >= 2 for d in _deliveries(tmp_path, store_url)),
              "no retry while the receiver was down")  # fmt: skip
        with receiving(port, log):
            _wait(_delivered(tmp_path, store_url, 2), "not every delivery arrived")
    rows = _deliveries(tmp_path, store_url)
    got = received(log)
    assert all(entry["verified"] for entry in got)
    assert {e["delivery_id"] for e in got} == {d["delivery_id"] for d in rows}
    acme = {r for r, tenant in runs.items() if tenant == "acme"}
    assert {(e["body"]["run_id"], e["kind"]) for e in got} == {(r, "run_succeeded") for r in acme}
    assert all(e["body"]["tenant"] == "acme" and e["body"]["agent"] == "helper" for e in got)
    assert all(d["last_status"] == 200 and d["attempts"] >= 2 for d in rows)


def test_failed_deliveries_are_listed_and_retried(tmp_path: Path, db_url: str) -> None:
    port = _port()
    _runs(tmp_path, db_url, "acme")
    config = _config(tmp_path, port, max_attempts=2)
    with serving(tmp_path, db_url, config):
        failed = _wait(lambda: _deliveries(tmp_path, db_url, "--failed"), "never failed")
        assert failed[0]["attempts"] == 2 and failed[0]["last_status"] is None
        log = tmp_path / "received.jsonl"
        with receiving(port, log):
            wrong = run_charter(tmp_path, "notifications", "retry", "dlv_nope", "--db", db_url)
            assert wrong.returncode == 3 and "no notification delivery" in wrong.stderr
            again = run_charter(tmp_path, "notifications", "retry", "--all-failed",
                                "--as", "ops@acme.com", "--db", db_url, "--json")  # fmt: skip
            assert json.loads(again.stdout) == {"retried": [failed[0]["delivery_id"]]}
            _wait(_delivered(tmp_path, db_url, 1), "the retried delivery did not arrive")
        assert [e["delivery_id"] for e in received(log)] == [failed[0]["delivery_id"]]
    audit = run_charter(tmp_path, "audit", "log", "--json", "--db", db_url)
    assert "notifications_retried" in audit.stdout and "ops@acme.com" in audit.stdout


@pytest.mark.durability
def test_a_server_killed_mid_delivery_delivers_after_restart(
    tmp_path: Path, store_url: str
) -> None:
    port = _port()
    (run_id,) = _runs(tmp_path, store_url, "acme")
    config = _config(tmp_path, port, timeout_s=30, lease_s=3)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    with receiving(port, first, hang=True), serving(tmp_path, store_url, config) as serve:
        _wait(lambda: received(first), "the delivery never reached the receiver")
        _stop(serve, signal.SIGKILL)  # mid-delivery: the receiver has not answered
    [row] = _deliveries(tmp_path, store_url)
    assert row["status"] == "pending"
    with receiving(port, second), serving(tmp_path, store_url, config):
        _wait(_delivered(tmp_path, store_url, 1), "not delivered after the restart")
    [again] = received(second)
    assert again["delivery_id"] == received(first)[0]["delivery_id"] == row["delivery_id"]
    assert again["verified"] and again["body"]["run_id"] == run_id


def test_two_claimers_never_take_the_same_delivery(tmp_path: Path, store_url: str) -> None:
    _runs(tmp_path, store_url, *["acme"] * 6)

    async def scenario() -> tuple[list[str], list[str], int]:
        a, b = open_store(store_url), open_store(store_url)
        try:
            made = await a.fan_out([Route("ops", "http://x", frozenset({"run_succeeded"}))])
            assert await b.fan_out([Route("ops", "http://x", frozenset({"run_succeeded"}))]) == 0
            claims = await asyncio.gather(
                a.claim_deliveries("a", endpoints=["ops"], limit=4, lease_s=60),
                b.claim_deliveries("b", endpoints=["ops"], limit=4, lease_s=60),
            )
            late = await a.claim_deliveries("c", endpoints=["ops"], limit=10, lease_s=60)
            assert late == []  # all leased
            first = claims[0][0]
            lost = await b.settle_delivery(
                first, claimer="b", http_status=200, error=None, retry_at=None
            )
            assert lost is False  # fenced: not b's claim
            return [c.delivery_id for c in claims[0]], [c.delivery_id for c in claims[1]], made
        finally:
            await a.close()
            await b.close()

    one, two, made = asyncio.run(scenario())
    assert made == 6 and len(one) + len(two) == 6 and not set(one) & set(two)


def test_the_readme_verify_example_accepts_our_signature() -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    (example,) = [b for b in blocks if "def verify(" in b]
    scope: dict[str, Any] = {}
    exec(example, scope)
    body, now = b'{"kind":"run_failed"}', int(time.time())
    header = signature(SECRET.encode(), now, body)
    assert scope["verify"](SECRET.encode(), header, body)
    assert not scope["verify"](SECRET.encode(), header, body + b" ")
    assert not scope["verify"](SECRET.encode(), signature(SECRET.encode(), now - 900, body), body)


def test_two_servers_on_one_database_send_each_delivery_once(tmp_path: Path, pg_url: str) -> None:
    port = _port()
    runs = _runs(tmp_path, pg_url, *["acme"] * 8)
    log = tmp_path / "received.jsonl"
    config = _config(tmp_path, port)
    with receiving(port, log), serving(tmp_path, pg_url, config), serving(tmp_path, pg_url, config):
        _wait(_delivered(tmp_path, pg_url, len(runs)), "not every delivery arrived")
    got = received(log)
    assert sorted(e["body"]["run_id"] for e in got) == sorted(runs)  # each once, no duplicate
    assert len({e["delivery_id"] for e in got}) == len(runs)


def test_an_approval_and_a_cancellation_make_notifications(tmp_path: Path, store_url: str) -> None:
    write_refund_agent(tmp_path)
    started = run_charter(tmp_path, "start", "agent.yaml", "--input", "refund", "--tenant",
                          "acme", "--principal", "ann", "--db", store_url, "--json")  # fmt: skip
    run_id = json.loads(started.stdout)["run_id"]
    assert run_charter(tmp_path, "worker", "--until-idle", "--db", store_url).returncode == 0
    cancel = run_charter(tmp_path, "runs", "cancel", run_id, "--reason", "dup", "--db", store_url)
    assert cancel.returncode == 0, cancel.stderr
    assert run_charter(tmp_path, "worker", "--until-idle", "--db", store_url).returncode == 0

    async def fanned() -> list[tuple[str, str]]:
        store = open_store(store_url)
        try:
            assert await store.fan_out([Route("ops", "http://x", frozenset(KINDS))]) == 2
            return sorted((d.kind, d.run_id) for d in await store.deliveries())
        finally:
            await store.close()

    kinds = asyncio.run(fanned())
    assert kinds == [("approval_requested", run_id), ("run_cancelled", run_id)]


def test_a_wrong_secret_is_refused_by_the_receiver_and_retried(tmp_path: Path, db_url: str) -> None:
    port = _port()
    _runs(tmp_path, db_url, "acme")
    log = tmp_path / "received.jsonl"
    config = _config(tmp_path, port, max_attempts=2)
    env = {**_env(), "NOTIFY_SECRET": "not-the-receivers-secret"}
    with receiving(port, log), serving(tmp_path, db_url, config, env=env):
        [failed] = _wait(lambda: _deliveries(tmp_path, db_url, "--failed"), "never failed")
    assert (failed["last_status"], failed["last_error"], failed["attempts"]) == (401, "HTTP 401", 2)
    assert [e["verified"] for e in received(log)] == [False, False]


def test_an_endpoint_without_its_secret_stops_the_start(tmp_path: Path, db_url: str) -> None:
    config = _config(tmp_path, _port())
    done = run_charter(tmp_path, "serve", "--db", db_url, "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert "$NOTIFY_SECRET is not set" in done.stderr and "Traceback" not in done.stderr
