"""Operations: what an operator does to a Charter database as a whole.

::

    async with Runtime.open("postgresql://charter@db/charter", read_only=True) as rt:
        status = await rt.operations.status()          # schema, runs by status, workers
        report = await rt.operations.stats(since=parse_since("24h"))

The runtime works runs; its :attr:`~charter.runtime.Runtime.operations` look after the
database they live in: its schema and status, a copy to another database, the workers that
announced themselves, the kill switches, who holds which role, the API tokens of ``charter
serve``, payload retention and the fleet figures. Each method is one call that returns plain
data (records with ``to_dict``, reports), so the command line renders it and an HTTP server
can serve it. Whether the database may be
created, migrated or written is decided once, when the runtime is opened (``read_only``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from charter import approvals
from charter.clock import Clock, wall_clock
from charter.errors import ConfigError, UnauthenticatedError
from charter.principals import canonical_principal
from charter.retention import RetentionPolicy, RetentionReport, apply
from charter.stats import StatsReport
from charter.store import (
    TOKEN_PREFIX,
    ApiToken,
    AuditEntry,
    CopyReport,
    KillSwitch,
    KillSwitchAction,
    NotificationOutbox,
    RoleGrant,
    Store,
    WorkerInfo,
    copy_store,
    open_store,
    token_hash,
)


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    """The database at a glance (``charter db status``)."""

    url: str
    """The database, its password hidden."""
    schema_version: int
    latest_schema_version: int
    """The newest schema this Charter knows (``charter db migrate`` brings it there)."""
    runs: dict[str, int]
    """Runs by status."""
    workers: int
    """Workers that announced themselves."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "schema_version": self.schema_version,
            "latest_schema_version": self.latest_schema_version,
            "runs": dict(self.runs),
            "workers": self.workers,
        }


class Operations:
    """The operator's calls on one store (``Runtime.operations``)."""

    def __init__(self, store: Store, *, clock: Clock = wall_clock) -> None:
        self.store = store
        self.clock = clock

    # -- the database ---------------------------------------------------------------------------

    async def status(self) -> DatabaseStatus:
        """Schema version, runs by status and announced workers. On a runtime opened to write,
        the schema has been created or migrated first (``charter db migrate``)."""
        return DatabaseStatus(
            url=self.store.url,
            schema_version=await self.store.schema_version(),
            latest_schema_version=self.store.latest_schema_version(),
            runs=await self.store.run_counts(),
            workers=len(await self.store.list_workers()),
        )

    async def copy_to(
        self, target_url: str, *, progress: Callable[[int, int], None] | None = None
    ) -> CopyReport:
        """Copy every table that holds state into the database ``target_url`` names (created
        or migrated), verifying each run's chain (see ``charter.store.copy_store``).

        ``progress(done, total)`` hears of the runs: once with ``done`` 0 before the first,
        then after each.
        """
        target = open_store(target_url)
        try:
            total = len(await self.store.run_ids())
            done = 0
            if progress is not None:
                progress(0, total)

            def advance(_: str) -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, total)

            return await copy_store(self.store, target, on_run=advance)
        finally:
            await target.close()

    async def workers(self) -> list[WorkerInfo]:
        """Workers that announced themselves, with their leases and last heartbeat."""
        return await self.store.list_workers()

    # -- kill switches and roles ----------------------------------------------------------------

    async def kill_switches(self) -> list[KillSwitch]:
        """The switches that are on."""
        return await self.store.kill_switches()

    async def set_kill_switch(
        self,
        *,
        tenant: str = "*",
        agent: str = "*",
        on: bool,
        reason: str = "",
        action: KillSwitchAction = "wait",
        actor: str | None = None,
    ) -> list[KillSwitch]:
        """Switch writes off (``on``) or back on for ``tenant`` and ``agent`` (``*``: all),
        recorded in the audit log with ``actor``; returns the switches now on."""
        await self.store.set_kill_switch(
            tenant=tenant, agent=agent, on=on, reason=reason, action=action, actor=actor
        )
        return await self.store.kill_switches()

    async def roles(self, *, principal: str | None = None) -> list[RoleGrant]:
        """Every role grant, or one principal's (compared canonically)."""
        return await approvals.role_grants(self.store, principal=principal)

    async def set_role(
        self, *, principal: str, role: str, tenant: str, on: bool, actor: str | None = None
    ) -> list[RoleGrant]:
        """Grant (``on``) or take away ``role`` in ``tenant`` (``*``: every tenant), recorded
        with ``actor``; returns the principal's grants now (:func:`charter.approvals.set_role`)."""
        await approvals.set_role(
            self.store, principal=principal, role=role, tenant=tenant, on=on, actor=actor
        )
        return await approvals.role_grants(self.store, principal=principal)

    # -- notifications (charter serve's outbox) ------------------------------------------------

    @property
    def notifications(self) -> NotificationOutbox:
        """The notifications outbox (``store/_notifications.py``): what ``charter serve``'s
        delivery loop works and ``charter notifications`` lists and retries."""
        return self.store

    # -- API tokens (charter serve) -------------------------------------------------------------

    async def create_token(
        self,
        *,
        principal: str,
        tenant: str,
        roles: Sequence[str] = (),
        expires_in_s: float | None = None,
        actor: str | None = None,
    ) -> tuple[str, ApiToken]:
        """A new API token for ``principal`` in ``tenant`` with ``roles``: the token itself
        (shown once, never stored) and its stored record (which holds only its sha256).
        Recorded in the audit log with ``actor``."""
        if not tenant or tenant == "*":
            raise ConfigError(
                f"a token belongs to one tenant, not {tenant!r}", hint="give --tenant NAME"
            )
        if expires_in_s is not None and expires_in_s <= 0:
            raise ConfigError("a token's lifetime must be positive", hint="e.g. --expires 30d")
        token_id = f"tok_{secrets.token_hex(6)}"
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = self.clock()
        record = ApiToken(
            token_id=token_id,
            token_hash=token_hash(token),
            principal=canonical_principal(principal),
            tenant=tenant,
            roles=tuple(dict.fromkeys(roles)),
            created_at=now,
            expires_at=None if expires_in_s is None else now + expires_in_s,
            revoked_at=None,
        )
        await self.store.insert_token(record, actor=actor)
        return token, record

    async def tokens(self) -> list[ApiToken]:
        """Every API token, oldest first (their hashes, never their secrets)."""
        return await self.store.api_tokens()

    async def revoke_token(self, token_id: str, *, actor: str | None = None) -> ApiToken:
        """Refuse ``token_id`` from now on (audited with ``actor``); NotFoundError if unknown."""
        return await self.store.revoke_token(token_id, at=self.clock(), actor=actor)

    async def authenticate(self, token: str | None) -> ApiToken:
        """The token record a bearer presents; UnauthenticatedError, naming why, when it is
        missing, unknown, expired or revoked."""
        if not token:
            raise UnauthenticatedError(
                "no API token: send the header Authorization: Bearer TOKEN",
                hint="create one with: charter tokens create PRINCIPAL --tenant T --role R",
            )
        record = await self.store.find_token(token_hash(token))
        if record is None:
            raise UnauthenticatedError("unknown API token", hint="check it was copied whole")
        if record.revoked_at is not None:
            raise UnauthenticatedError(f"API token {record.token_id} was revoked")
        if not record.valid_at(self.clock()):
            raise UnauthenticatedError(f"API token {record.token_id} has expired")
        return record

    async def record(self, kind: str, *, actor: str | None, detail: dict[str, Any]) -> None:
        """Append one record of ``kind`` to the audit log: how a front end (``charter serve``'s
        ``api_action`` and ``api_refused``) records who asked for an operator action."""
        await self.store.audit([AuditEntry(kind, None, actor, detail)])

    # -- retention and figures ------------------------------------------------------------------

    async def apply_retention(
        self, policy: RetentionPolicy, *, dry_run: bool = False, actor: str | None = None
    ) -> RetentionReport:
        """Remove (or count, ``dry_run``) the payloads of finished runs older than their TTL
        (:mod:`charter.retention`); the chains and the run skeletons stay."""
        return await apply(self.store, policy, dry_run=dry_run, actor=actor)

    async def stats(
        self, *, since: float | None = None, agent: str | None = None, tenant: str | None = None
    ) -> StatsReport:
        """Fleet figures over the runs created since ``since`` (:mod:`charter.stats`;
        ``parse_since("7d")`` gives the time)."""
        return await self.store.stats(since=since, agent=agent, tenant=tenant)


__all__ = ["DatabaseStatus", "Operations"]
