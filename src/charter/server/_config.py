"""``charter serve --config FILE``: the server's YAML configuration, one section per feature.

::

    notifications:          # server/_notify.py: signed POSTs of what happens to runs
      endpoints:
        - name: ops
          url: https://hooks.example.com/charter
          events: [approval_requested, run_failed, run_escalated]
          tenants: [acme]               # optional; default every tenant
          secret_env: CHARTER_NOTIFY_OPS_SECRET
    oidc:                   # server/_oidc.py: JWT bearer tokens beside API tokens
      issuer: https://login.example.com/
      audience: charter
      jwks_url: https://login.example.com/.well-known/jwks.json

Each section's model lives in its feature's module; an unknown key anywhere is an error
naming it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from charter.errors import ConfigError
from charter.server._notify import NotificationsConfig
from charter.server._oidc import OidcConfig


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    notifications: NotificationsConfig | None = None
    oidc: OidcConfig | None = None


def load_config(path: str | Path) -> ServerConfig:
    """The configuration in ``path``; ConfigError naming the key that is wrong."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read the server config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"the server config {path} is not YAML: {exc}") from None
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"the server config {path} is wrong: {problems}") from None
