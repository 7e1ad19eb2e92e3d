"""The notifications outbox (tables ``notifications`` and ``notification_deliveries``,
schema 15), as parts of both stores.

A step's commit that appends an event an outside system may want to hear of (see
:func:`kind_of`) writes one ``notifications`` row in the same transaction: one INSERT for
that rare event, nothing for the others, so the hot step path is not slowed and no
notification is lost to a crash. Everything else happens off the step path, in the delivery
loop of ``charter serve`` (``server/_notify.py``):

1. ``fan_out`` turns each new notification into one ``notification_deliveries`` row per
   configured endpoint (:class:`Route`) it matches, and marks it fanned out;
2. ``claim_deliveries`` takes due deliveries: it counts the attempt, records the claimer and
   pushes ``next_attempt_at`` out by a lease, so another server skips them (PostgreSQL:
   ``FOR UPDATE SKIP LOCKED``) and a server that dies mid-POST leaves them due again;
3. ``settle_delivery`` records the answer of that attempt (HTTP status or error): delivered,
   due again at a later time, or failed (the dead letter, listed and retried by hand with
   ``charter notifications``), fenced by claimer and attempt so a late answer of a lost
   claim changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from charter.clock import new_delivery_id
from charter.errors import NotFoundError, RunStateError
from charter.events import Event, RunFinished
from charter.store import _audit

T = TypeVar("T")

KINDS: tuple[str, ...] = (
    "approval_requested",
    "run_succeeded",
    "run_failed",
    "run_escalated",
    "run_cancelled",
)
"""What a notification can be about (an endpoint's ``events``)."""

DeliveryStatus = Literal["pending", "delivered", "failed"]

_COLUMNS = (
    "d.delivery_id, d.run_id, d.seq, d.endpoint, d.url, d.status, d.attempts,"
    " d.next_attempt_at, d.claimed_by, d.last_status, d.last_error, d.created_at,"
    " d.finished_at, n.kind, r.tenant"
)
_FROM = (
    " FROM notification_deliveries d"
    " JOIN notifications n ON n.run_id = d.run_id AND n.seq = d.seq"
    " JOIN runs r ON r.run_id = d.run_id"
)
_UNFANNED = (
    "SELECT n.run_id, n.seq, n.kind, r.tenant FROM notifications n"
    " JOIN runs r ON r.run_id = n.run_id WHERE n.fanned_out_at IS NULL"
    " ORDER BY n.created_at, n.run_id, n.seq LIMIT {p}"
)
_DELIVERY = (
    "INSERT INTO notification_deliveries (delivery_id, run_id, seq, endpoint, url, status,"
    " attempts, next_attempt_at, created_at)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, 'pending', 0, {p}, {p})"
)
_FANNED = "UPDATE notifications SET fanned_out_at = {p} WHERE run_id = {p} AND seq = {p}"
_DUE = (
    "SELECT delivery_id FROM notification_deliveries WHERE status = 'pending'"
    " AND next_attempt_at <= {p} AND endpoint IN ({names}) ORDER BY next_attempt_at LIMIT {p}"
)
_CLAIM = (
    "UPDATE notification_deliveries SET attempts = attempts + 1, claimed_by = {p},"
    " next_attempt_at = {p} WHERE delivery_id = {p} AND status = 'pending'"
)
_CLAIMED = (
    "SELECT d.delivery_id, d.endpoint, d.url, d.attempts, d.run_id, d.seq, n.kind, r.tenant,"
    " r.agent_name, r.principal, e.at, e.payload" + _FROM + " JOIN events e ON"
    " e.run_id = d.run_id AND e.seq = d.seq WHERE d.delivery_id IN ({ids})"
)
_SETTLE = (
    "UPDATE notification_deliveries SET status = {p}, next_attempt_at = {p}, last_status = {p},"
    " last_error = {p}, finished_at = {p}"
    " WHERE delivery_id = {p} AND claimed_by = {p} AND attempts = {p} AND status = 'pending'"
)
_RETRY = (
    "UPDATE notification_deliveries SET status = 'pending', attempts = 0, next_attempt_at = {p},"
    " finished_at = NULL WHERE delivery_id = {p} AND status = 'failed'"
)


def kind_of(event: Event) -> str | None:
    """The notification kind an event makes, or None (most events make none)."""
    if event.type == "approval_requested":
        return "approval_requested"
    if isinstance(event.body, RunFinished):
        return f"run_{event.body.status}"
    return None


def outbox_sql(p: str) -> str:
    """Insert one :func:`outbox_rows` row; ``p`` is the driver's placeholder."""
    return f"INSERT INTO notifications (run_id, seq, kind, created_at) VALUES ({p}, {p}, {p}, {p})"


def outbox_rows(events: Iterable[Event], now: float) -> list[tuple[str, int, str, float]]:
    """The ``notifications`` rows a commit of ``events`` writes."""
    return [(e.run_id, e.seq, k, now) for e in events if (k := kind_of(e)) is not None]


@dataclass(frozen=True, slots=True)
class Route:
    """A configured endpoint as the fan-out sees it: which notifications it gets."""

    endpoint: str
    url: str
    kinds: frozenset[str]
    tenants: frozenset[str] | None = None
    """None: every tenant."""

    def matches(self, kind: str, tenant: str) -> bool:
        return kind in self.kinds and (self.tenants is None or tenant in self.tenants)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification for one endpoint, and where its delivery stands."""

    delivery_id: str
    run_id: str
    seq: int
    endpoint: str
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float | None
    claimed_by: str | None
    last_status: int | None
    """The HTTP status of the last answer (None: no answer: refused, timed out)."""
    last_error: str | None
    created_at: float
    finished_at: float | None
    kind: str
    tenant: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this server attempts now (``attempt`` fences its settlement), with what its
    body says: the event and the run it belongs to."""

    delivery_id: str
    endpoint: str
    url: str
    attempt: int
    run_id: str
    seq: int
    kind: str
    tenant: str
    agent: str
    principal: str
    at: float
    event: dict[str, Any]

    def body(self) -> bytes:
        """The POSTed JSON: the same bytes on every attempt (the delivery id is a header)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        for name in ("endpoint", "url", "attempt"):
            del fields[name]
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _claimed(row: Sequence[Any]) -> ClaimedDelivery:
    delivery_id, endpoint, url, attempt, run_id, seq, kind, tenant, agent, who, at, payload = row
    return ClaimedDelivery(
        delivery_id, endpoint, url, int(attempt), run_id, int(seq), kind, tenant, agent, who,
        float(at), json.loads(payload),
    )  # fmt: skip


def _delivery(row: Sequence[Any]) -> Delivery:
    values = list(row)
    values[2], values[6] = int(values[2]), int(values[6])
    return Delivery(*values)


def _listing(p: str, status: DeliveryStatus | None) -> str:
    where = f" WHERE d.status = {p}" if status is not None else ""
    return f"SELECT {_COLUMNS}{_FROM}{where} ORDER BY d.created_at DESC, d.delivery_id LIMIT {p}"


def _settlement(
    error: str | None, retry_at: float | None, now: float
) -> tuple[DeliveryStatus, float | None, float | None]:
    """(status, next_attempt_at, finished_at) after an attempt."""
    if error is None:
        return "delivered", None, now
    if retry_at is None:
        return "failed", None, now
    return "pending", retry_at, None


def _retried(actor: str | None, ids: Sequence[str]) -> _audit.AuditEntry:
    return _audit.AuditEntry("notifications_retried", None, actor, {"delivery_ids": list(ids)})


def _not_retryable(found: Delivery | None, delivery_id: str, url: str) -> Exception:
    if found is None:
        return NotFoundError(
            f"no notification delivery {delivery_id!r} in {url}",
            hint="list them with: charter notifications list",
        )
    return RunStateError(
        f"delivery {delivery_id} is {found.status}; only a failed delivery is retried",
        hint="list the failed ones with: charter notifications list --failed",
    )


class NotificationOutbox(Protocol):
    """The outbox's role of a store (the ``Store`` protocol includes it)."""

    async def fan_out(self, routes: Sequence[Route], *, limit: int = 200) -> int: ...
    async def claim_deliveries(
        self, claimer: str, *, endpoints: Sequence[str], limit: int, lease_s: float
    ) -> list[ClaimedDelivery]: ...
    async def settle_delivery(
        self,
        claimed: ClaimedDelivery,
        *,
        claimer: str,
        http_status: int | None,
        error: str | None,
        retry_at: float | None,
    ) -> bool: ...
    async def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 100
    ) -> list[Delivery]: ...
    async def retry_deliveries(
        self, delivery_ids: Sequence[str] | None, *, actor: str | None
    ) -> list[str]: ...


class SQLiteNotifications:
    if TYPE_CHECKING:  # provided by SQLiteStore
        url: str
        audit_key: _audit.AuditKey | None

        async def _write(self, op: Callable[[sqlite3.Connection, float], T]) -> T: ...
        async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    async def fan_out(self, routes: Sequence[Route], *, limit: int = 200) -> int:
        """Deliveries for up to ``limit`` new notifications; the number of deliveries made."""

        def op(conn: sqlite3.Connection, now: float) -> int:
            made = 0
            for run_id, seq, kind, tenant in conn.execute(_UNFANNED.format(p="?"), (limit,)):
                for route in routes:
                    if route.matches(kind, tenant):
                        args = (new_delivery_id(), run_id, seq, route.endpoint, route.url, now)
                        conn.execute(_DELIVERY.format(p="?"), (*args, now))
                        made += 1
                conn.execute(_FANNED.format(p="?"), (now, run_id, seq))
            return made

        return await self._write(op)

    async def claim_deliveries(
        self, claimer: str, *, endpoints: Sequence[str], limit: int, lease_s: float
    ) -> list[ClaimedDelivery]:
        def op(conn: sqlite3.Connection, now: float) -> list[ClaimedDelivery]:
            names = ", ".join("?" * len(endpoints))
            due = conn.execute(_DUE.format(p="?", names=names), (now, *endpoints, limit))
            ids = [row[0] for row in due.fetchall()]
            for delivery_id in ids:
                conn.execute(_CLAIM.format(p="?"), (claimer, now + lease_s, delivery_id))
            query = _CLAIMED.format(ids=", ".join("?" * len(ids)))
            return [_claimed(r) for r in conn.execute(query, ids)] if ids else []

        if not endpoints:
            return []
        return await self._write(op)

    async def settle_delivery(
        self,
        claimed: ClaimedDelivery,
        *,
        claimer: str,
        http_status: int | None,
        error: str | None,
        retry_at: float | None,
    ) -> bool:
        """Record an attempt's answer (``error`` None: delivered); False if the claim was lost."""

        def op(conn: sqlite3.Connection, now: float) -> bool:
            status, next_at, finished = _settlement(error, retry_at, now)
            args = (status, next_at, http_status, error, finished)
            fence = (claimed.delivery_id, claimer, claimed.attempt)
            return conn.execute(_SETTLE.format(p="?"), (*args, *fence)).rowcount == 1

        return await self._write(op)

    async def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Deliveries, newest first (``status``: only those)."""
        args: tuple[Any, ...] = (limit,) if status is None else (status, limit)
        rows = await self._read(lambda c: c.execute(_listing("?", status), args).fetchall())
        return [_delivery(r) for r in rows]

    async def retry_deliveries(
        self, delivery_ids: Sequence[str] | None, *, actor: str | None
    ) -> list[str]:
        """Make failed deliveries due now (None: every failed one); audited with ``actor``."""

        def op(conn: sqlite3.Connection, now: float) -> list[str]:
            if delivery_ids is None:
                query = "SELECT delivery_id FROM notification_deliveries WHERE status = 'failed'"
                ids = [r[0] for r in conn.execute(query)]
            else:
                ids = list(delivery_ids)
            for delivery_id in ids:
                if conn.execute(_RETRY.format(p="?"), (now, delivery_id)).rowcount != 1:
                    row = conn.execute(
                        f"SELECT {_COLUMNS}{_FROM} WHERE d.delivery_id = ?", (delivery_id,)
                    ).fetchone()
                    raise _not_retryable(
                        None if row is None else _delivery(row), delivery_id, self.url
                    )
            if ids:
                _audit.sqlite_append(conn, [_retried(actor, ids)], now, self.audit_key)
            return ids

        return await self._write(op)


class PostgresNotifications:
    if TYPE_CHECKING:  # provided by PostgresStore
        url: str
        audit_key: _audit.AuditKey | None

        async def _fetch(self, query: str, args: Any = None, *, now: bool = False) -> list[Any]: ...
        def _cursor(
            self, *, write: bool, run_id: str | None = None
        ) -> AbstractAsyncContextManager[Any]: ...
        async def _now(self, cur: Any) -> float: ...

    async def fan_out(self, routes: Sequence[Route], *, limit: int = 200) -> int:
        made = 0
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            # Another server fanning out at the same time skips these rows.
            await cur.execute(_UNFANNED.format(p="%s") + " FOR UPDATE OF n SKIP LOCKED", (limit,))
            for run_id, seq, kind, tenant in await cur.fetchall():
                for route in routes:
                    if route.matches(kind, tenant):
                        args = (new_delivery_id(), run_id, seq, route.endpoint, route.url, now)
                        await cur.execute(
                            _DELIVERY.format(p="%s") + " ON CONFLICT DO NOTHING", (*args, now)
                        )
                        made += cur.rowcount
                await cur.execute(_FANNED.format(p="%s"), (now, run_id, seq))
        return made

    async def claim_deliveries(
        self, claimer: str, *, endpoints: Sequence[str], limit: int, lease_s: float
    ) -> list[ClaimedDelivery]:
        if not endpoints:
            return []
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            due = _DUE.format(p="%s", names="%s").replace("IN (%s)", "= ANY(%s)")
            await cur.execute(due + " FOR UPDATE SKIP LOCKED", (now, list(endpoints), limit))
            ids = [row[0] for row in await cur.fetchall()]
            if not ids:
                return []
            await cur.execute(
                _CLAIM.format(p="%s").replace("delivery_id = %s", "delivery_id = ANY(%s)"),
                (claimer, now + lease_s, ids),
            )
            await cur.execute(_CLAIMED.format(ids="%s").replace("IN (%s)", "= ANY(%s)"), (ids,))
            return [_claimed(r) for r in await cur.fetchall()]

    async def settle_delivery(
        self,
        claimed: ClaimedDelivery,
        *,
        claimer: str,
        http_status: int | None,
        error: str | None,
        retry_at: float | None,
    ) -> bool:
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            status, next_at, finished = _settlement(error, retry_at, now)
            args = (status, next_at, http_status, error, finished)
            fence = (claimed.delivery_id, claimer, claimed.attempt)
            await cur.execute(_SETTLE.format(p="%s"), (*args, *fence))
            return bool(cur.rowcount == 1)

    async def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 100
    ) -> list[Delivery]:
        args: tuple[Any, ...] = (limit,) if status is None else (status, limit)
        return [_delivery(r) for r in await self._fetch(_listing("%s", status), args)]

    async def retry_deliveries(
        self, delivery_ids: Sequence[str] | None, *, actor: str | None
    ) -> list[str]:
        async with self._cursor(write=True) as cur:
            now = await self._now(cur)
            if delivery_ids is None:
                await cur.execute(
                    "SELECT delivery_id FROM notification_deliveries WHERE status = 'failed'"
                    " FOR UPDATE"
                )
                ids = [r[0] for r in await cur.fetchall()]
            else:
                ids = list(delivery_ids)
            for delivery_id in ids:
                await cur.execute(_RETRY.format(p="%s"), (now, delivery_id))
                if cur.rowcount != 1:
                    await cur.execute(
                        f"SELECT {_COLUMNS}{_FROM} WHERE d.delivery_id = %s", (delivery_id,)
                    )
                    row = await cur.fetchone()
                    raise _not_retryable(
                        None if row is None else _delivery(row), delivery_id, self.url
                    )
            if ids:
                await _audit.postgres_append(cur, [_retried(actor, ids)], now, self.audit_key)
            return ids
