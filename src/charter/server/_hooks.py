"""``POST /v1/hooks/{name}``: inbound webhooks, and their section ``hooks:`` of the server's
configuration file. The scheme, the check and the mapping are :mod:`charter.webhooks`; this
route hands it the raw body and headers. No bearer token: the hook's secret is the
credential.

::

    hooks:
      tickets:
        agent: helper                 # an agent this server runs (--agent FILE)
        secret_env: TICKETS_HOOK_SECRET   # the variable holding the secret (never the file)
        tenant: acme                  # or tenant_field: account.slug (a field of the body)
        principal: hook:tickets       # the run's principal (this is the default)
        input: "Ticket {ticket.id}: {ticket.subject}"   # without it: the body is the input
        tolerance_s: 300              # how far the signed timestamp may be from the clock
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from charter.agents import Agent
from charter.errors import ConfigError
from charter.server._auth import RuntimeDep
from charter.webhooks import DEFAULT_TOLERANCE_S, Hook, accept, check_template

MIN_SECRET_BYTES = 16
router = APIRouter()


class HookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="The name of an agent this server runs (--agent FILE).")
    secret_env: str = Field(description="The environment variable that holds the secret.")
    tenant: str | None = None
    tenant_field: str | None = None
    principal: str | None = None
    roles: list[str] = []
    input: str | None = None
    tolerance_s: float = Field(DEFAULT_TOLERANCE_S, gt=0, le=3600)

    @field_validator("input")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @model_validator(mode="after")
    def _one_tenant(self) -> HookConfig:
        if (self.tenant is None) == (self.tenant_field is None):
            raise ValueError("give exactly one of tenant (fixed) or tenant_field (from the body)")
        return self


def build_hooks(config: Mapping[str, HookConfig], agents: Mapping[str, Agent]) -> dict[str, Hook]:
    """The hooks, their secrets read from the environment; ConfigError naming the first hook
    whose agent this server does not run or whose secret is not set (or too short)."""
    hooks: dict[str, Hook] = {}
    for name, c in config.items():
        agent = agents.get(c.agent)
        if agent is None:
            raise ConfigError(
                f"hooks.{name}.agent: this server runs no agent {c.agent!r}",
                hint="start charter serve with --agent FILE for it (it runs:"
                f" {', '.join(sorted(agents)) or 'none'})",
            )
        secret = os.environ.get(c.secret_env, "")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            what = "is not set" if not secret else f"holds fewer than {MIN_SECRET_BYTES} bytes"
            raise ConfigError(
                f"hooks.{name}.secret_env: the environment variable {c.secret_env} {what}",
                hint="export it with the hook's shared secret, e.g. python -c 'import secrets;"
                " print(secrets.token_hex(32))'",
            )
        hooks[name] = Hook(
            name=name, agent=agent, secret=secret.encode(), tenant=c.tenant,
            tenant_field=c.tenant_field, principal=c.principal, roles=tuple(c.roles),
            input=c.input, tolerance_s=c.tolerance_s,
        )  # fmt: skip
    return hooks


class HookAccepted(BaseModel):
    hook: str
    delivery_id: str
    run_id: str = Field(description="The run this delivery started (or its first delivery did).")


@router.post("/v1/hooks/{name}", status_code=202)
async def deliver(name: str, request: Request, rt: RuntimeDep) -> HookAccepted:
    """A signed delivery (headers Charter-Timestamp, Charter-Delivery, Charter-Signature;
    see the README, Webhooks) starts the hook's run; a redelivery returns the same run id.
    Refused (and recorded in the audit log): unknown hook 404, missing or bad signature,
    stale or replayed timestamp 401, a body the hook cannot map 400."""
    hooks: dict[str, Hook] = request.app.state.hooks
    accepted = await accept(rt, hooks, name, dict(request.headers), await request.body())
    return HookAccepted(**accepted.to_dict())


def describe(hooks: Mapping[str, Hook]) -> list[dict[str, Any]]:
    return [{"name": h.name, "agent": h.agent.name} for h in hooks.values()]
