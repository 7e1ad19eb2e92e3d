"""Outbound notifications: signed POSTs of what happens to runs, from the durable outbox.

The store writes a notification in the commit of each event worth one (an approval
requested, a run succeeded, failed, escalated or cancelled: ``store/_notifications.py``).
This module is the delivery loop ``charter serve`` runs beside the API when its config has a
``notifications:`` section: it fans new notifications out to the endpoints they match,
claims due deliveries (a lease, so several servers on one PostgreSQL database do not send
the same delivery twice in the normal case) and POSTs each one.

Each POST carries ``Charter-Delivery`` (the delivery id: the same on every attempt, for the
receiver to drop duplicates), ``Charter-Event`` (the kind) and ``Charter-Signature:
t=<unix>,v1=<hex>``, where hex is ``HMAC-SHA256(secret, f"{t}.{body}")`` (the scheme of
Stripe and of Charter's inbound hooks). A 2xx answer delivers it; anything else (or no
answer within ``timeout_s``) is retried after ``backoff_s``, doubled each time up to
``max_backoff_s``, until ``max_attempts``; then it is failed (the dead letter), listed by
``charter notifications list --failed`` and made due again by ``charter notifications retry``.
The guarantee is at least once: a receiver that answered but whose answer was lost (or a
server killed after the POST) gets the delivery again, with the same delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from charter.clock import Clock, new_worker_id, wall_clock
from charter.errors import ConfigError
from charter.runtime import Runtime
from charter.store import NOTIFICATION_KINDS as KINDS, ClaimedDelivery, NotificationOutbox, Route

log = logging.getLogger("charter.notify")

SIGNATURE_HEADER = "Charter-Signature"
DELIVERY_HEADER = "Charter-Delivery"
EVENT_HEADER = "Charter-Event"


class Endpoint(BaseModel):
    """Where notifications go, which ones, and the secret that signs them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(pattern=r"^https?://")
    events: tuple[str, ...] = KINDS
    tenants: tuple[str, ...] | None = None
    secret_env: str = Field(description="The environment variable holding the signing secret.")

    @model_validator(mode="after")
    def _known_events(self) -> Endpoint:
        unknown = sorted(set(self.events) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown event kind(s) {unknown}; known: {', '.join(KINDS)}")
        return self

    def route(self) -> Route:
        tenants = None if self.tenants is None else frozenset(self.tenants)
        return Route(self.name, self.url, frozenset(self.events), tenants)

    def secret(self) -> bytes:
        value = os.environ.get(self.secret_env)
        if not value:
            raise ConfigError(
                f"notification endpoint {self.name!r}: ${self.secret_env} is not set",
                hint=f"export {self.secret_env}=<a long random secret shared with the receiver>",
            )
        return value.encode()


class NotificationsConfig(BaseModel):
    """The ``notifications:`` section of ``charter serve --config``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoints: tuple[Endpoint, ...]
    max_attempts: int = Field(8, ge=1)
    backoff_s: float = Field(2.0, gt=0)
    max_backoff_s: float = Field(600.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    poll_s: float = Field(0.5, gt=0, description="How often to look for new notifications.")
    lease_s: float | None = Field(
        None, gt=0, description="How long a claimed delivery is its claimer's; 2*timeout_s+5."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> NotificationsConfig:
        names = [e.name for e in self.endpoints]
        if len(set(names)) != len(names):
            raise ValueError(f"two endpoints share a name: {sorted(names)}")
        return self

    def check_secrets(self) -> None:
        for endpoint in self.endpoints:
            endpoint.secret()

    def lease(self) -> float:
        """How long a claimed delivery is left to its claimer: past the POST's timeout."""
        return self.lease_s or 2 * self.timeout_s + 5

    def backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Charter-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Notifier:
    """The delivery loop of one server (:meth:`run` until cancelled)."""

    def __init__(
        self,
        outbox: NotificationOutbox,
        config: NotificationsConfig,
        *,
        clock: Clock = wall_clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.outbox, self.config, self.clock = outbox, config, clock
        self.claimer = f"notify:{new_worker_id()}"
        self.secrets = {e.name: e.secret() for e in config.endpoints}  # fail at start, not later
        self.routes = [e.route() for e in config.endpoints]
        self._client = httpx.AsyncClient(timeout=config.timeout_s, transport=transport)

    async def run(self) -> None:
        try:
            while True:
                try:
                    busy = await self.once()
                except Exception:  # the database is away a moment: try again, never stop
                    log.exception("notification delivery round failed")
                    busy = False
                if not busy:
                    await asyncio.sleep(self.config.poll_s)
        finally:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    async def once(self, *, limit: int = 50) -> bool:
        """One round: fan out, claim, POST; True if there was anything to do."""
        made = await self.outbox.fan_out(self.routes)
        claimed = await self.outbox.claim_deliveries(
            self.claimer,
            endpoints=list(self.secrets),
            limit=limit,
            lease_s=self.config.lease(),
        )
        await asyncio.gather(*(self._deliver(d) for d in claimed))
        return bool(made or claimed)

    async def _deliver(self, claimed: ClaimedDelivery) -> None:
        body = claimed.body()
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: claimed.delivery_id,
            EVENT_HEADER: claimed.kind,
            SIGNATURE_HEADER: signature(self.secrets[claimed.endpoint], int(self.clock()), body),
        }
        status: int | None = None
        error: str | None
        try:
            answer = await self._client.post(claimed.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            status = answer.status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        retry_at = None
        if error is not None and claimed.attempt < self.config.max_attempts:
            retry_at = self.clock() + self.config.backoff(claimed.attempt)
        await self.outbox.settle_delivery(
            claimed, claimer=self.claimer, http_status=status, error=error, retry_at=retry_at
        )


@contextlib.asynccontextmanager
async def notifying(rt: Runtime, config: NotificationsConfig | None) -> AsyncIterator[None]:
    """The delivery loop, while the server runs (nothing without a ``notifications:``)."""
    if config is None:
        yield
        return
    notifier = Notifier(rt.operations.notifications, config, clock=rt.clock)
    task = asyncio.create_task(notifier.run(), name="charter-notify")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
