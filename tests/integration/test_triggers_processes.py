"""Triggers with real processes on SQLite and PostgreSQL: several `charter worker` and
`charter serve` processes tick one schedule and start exactly one run per tick; a real
`charter serve --config` takes signed webhooks and refuses forged, stale and replayed ones."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers.cli import run_charter
from tests.helpers.server import _env, _free_port, _stop

from charter.agents import load_agent
from charter.runtime import Runtime
from charter.schedules import next_tick
from charter.store import open_store
from charter.webhooks import sign

SECRET = "s3cret-for-the-tickets-hook-0123456789"


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    (tmp_path / "script.json").write_text(json.dumps([{"content": "done"}] * 500))
    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent:\n  name: helper\n  instructions: |\n    Help.\n"
        "  model: {provider: scripted, script: script.json}\n"
    )
    return path


def _start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "charter", *args], cwd=cwd, env={**_env(), **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


@contextmanager
def server(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    port = _free_port()
    proc = _start(cwd, "serve", "--port", str(port), *args, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"charter serve exited: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "charter serve did not answer"
            time.sleep(0.1)
        yield base
    finally:
        _stop(proc)


@contextmanager
def worker(cwd: Path, db_url: str) -> Iterator[None]:
    proc = _start(cwd, "worker", "--db", db_url, "--tick-interval", "0.1")
    try:
        yield
    finally:
        _stop(proc)


def _runs(url: str) -> list[Any]:
    async def main() -> list[Any]:
        async with Runtime(store=open_store(url)) as rt:
            return [(await rt.events(r.run_id))[0].body for r in await rt.list_runs(limit=1000)]

    return asyncio.run(main())


def test_several_workers_and_servers_start_exactly_one_run_per_tick(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    now = time.time()
    ten_minutes_ago = now - 600

    async def add() -> float:  # added ten minutes ago, while no process was ticking
        async with Runtime(store=open_store(store_url), clock=lambda: ten_minutes_ago) as rt:
            s = await rt.schedules.add(
                "every-minute", cron="* * * * *", agent=load_agent(agent), input="tick",
                missed="catch-up", tenant="acme", actor="ops",
            )  # fmt: skip
            return s.next_tick_at

    first = asyncio.run(add())
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(worker(tmp_path, store_url))
        for _ in range(2):
            stack.enter_context(
                server(
                    tmp_path, "--db", store_url, "--agent", "agent.yaml", "--tick-interval", "0.1"
                )
            )
        deadline = time.monotonic() + 60
        while True:  # until the ten missed ticks have been started and the schedule moved on
            started = [b for b in _runs(store_url) if b.trigger is not None]
            if len(started) >= 10:
                break
            assert time.monotonic() < deadline, f"only {len(started)} runs started"
            time.sleep(0.2)
        time.sleep(1)  # every ticker has had several more passes at the same ticks
    started = [b for b in _runs(store_url) if b.trigger is not None]
    ticks = sorted(b.trigger.tick_at for b in started)
    assert len(ticks) == len(set(ticks)), "a tick started two runs"
    expected = [first]
    while next_tick("* * * * *", expected[-1]) <= ticks[-1]:
        expected.append(next_tick("* * * * *", expected[-1]))
    assert ticks == expected and len(ticks) >= 10  # each tick once, none missed
    assert all(b.tenant == "acme" and b.trigger.kind == "schedule" for b in started)


def _hook_config(tmp_path: Path) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(
        "hooks:\n"
        "  tickets:\n"
        "    agent: helper\n"
        "    secret_env: TICKETS_SECRET\n"
        "    tenant_field: account\n"
        '    input: "Ticket {ticket.id}: {ticket.subject}"\n'
        "    tolerance_s: 300\n"
    )
    return path


def _deliver(
    base: str, body: bytes, *, delivery: str, at: float | None = None, secret: str = SECRET,
    hook: str = "tickets", signature: str | None = None,
) -> httpx.Response:  # fmt: skip
    stamp = str(int(time.time() if at is None else at))
    headers = {
        "Charter-Timestamp": stamp,
        "Charter-Delivery": delivery,
        "Charter-Signature": signature or sign(secret.encode(), stamp, body),
        "Content-Type": "application/json",
    }
    return httpx.post(f"{base}/v1/hooks/{hook}", content=body, headers=headers, timeout=30)


def test_signed_webhooks_start_one_run_per_delivery_and_forgeries_are_refused(
    tmp_path: Path, agent: Path, store_url: str
) -> None:
    config = _hook_config(tmp_path)
    args = ("--db", store_url, "--agent", "agent.yaml", "--config", str(config))
    body = json.dumps({"account": "acme", "ticket": {"id": 7, "subject": "refund"}}).encode()
    with server(tmp_path, *args, env={"TICKETS_SECRET": SECRET}) as base:
        first = _deliver(base, body, delivery="d-1")
        assert first.status_code == 202, first.text
        run_id = first.json()["run_id"]
        # a redelivery, signed again later with a new timestamp: the same run
        again = _deliver(base, body, delivery="d-1", at=time.time() + 2)
        assert again.status_code == 202 and again.json()["run_id"] == run_id

        refusals = {
            "forged": _deliver(base, body, delivery="d-2", secret="not-the-secret-0123456789"),
            "stale": _deliver(base, body, delivery="d-3", at=time.time() - 3600),
            "future": _deliver(base, body, delivery="d-4", at=time.time() + 3600),
            "tampered": _deliver(base, body.replace(b"refund", b"refunds"), delivery="d-5",
                                 signature=first.request.headers["Charter-Signature"]),
            # the first delivery's exact signature and timestamp under a new delivery id
            "replayed": httpx.post(
                f"{base}/v1/hooks/tickets", content=body, timeout=30,
                headers={**first.request.headers, "charter-delivery": "d-6"},
            ),
            "unsigned": httpx.post(f"{base}/v1/hooks/tickets", content=body, timeout=30),
            "unknown hook": _deliver(base, body, delivery="d-7", hook="nope"),
            "unmappable": _deliver(base, b'{"account": "acme"}', delivery="d-8"),
        }  # fmt: skip
        statuses = {
            k: (r.status_code, r.json().get("error", {}).get("code", r.text))
            for k, r in refusals.items()
        }
        assert statuses == {
            "forged": (401, "unauthenticated"),
            "stale": (401, "unauthenticated"),
            "future": (401, "unauthenticated"),
            "tampered": (401, "unauthenticated"),
            "replayed": (401, "unauthenticated"),
            "unsigned": (401, "unauthenticated"),
            "unknown hook": (404, "not_found"),
            "unmappable": (400, "input"),
        }, statuses
    started = _runs(store_url)
    assert len(started) == 1  # no refusal started a run
    only = started[0]
    assert (only.tenant, only.principal, only.input) == ("acme", "hook:tickets", "Ticket 7: refund")
    assert only.trigger.kind == "webhook" and only.trigger.delivery_id == "d-1"
    assert only.trigger.signed_at is not None and only.trigger.read_at is not None

    async def audit() -> list[Any]:
        async with Runtime(store=open_store(store_url)) as rt:
            return [r.data for r in await rt.audit_log(kind="hook_refused")]

    reasons = sorted(d["reason"] for d in asyncio.run(audit()))
    assert reasons == sorted(
        ["bad_signature", "stale", "stale", "bad_signature", "replayed", "missing_header",
         "not_found", "input"]
    )  # fmt: skip


def test_serve_refuses_a_hook_whose_secret_is_not_set(tmp_path: Path, agent: Path) -> None:
    config = _hook_config(tmp_path)
    done = run_charter(tmp_path, "serve", "--agent", "agent.yaml", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert "TICKETS_SECRET" in done.stderr and "Traceback" not in done.stderr
    config.write_text(config.read_text() + "    colour: blue\n")
    done = run_charter(tmp_path, "serve", "--agent", "agent.yaml", "--config", str(config))
    assert done.returncode == 2 and "hooks.tickets.colour: unknown key" in done.stderr
