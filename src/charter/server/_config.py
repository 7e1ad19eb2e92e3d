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
from charter.server._hooks import HookConfig
from charter.server._notify import NotificationsConfig
from charter.server._oidc import OidcConfig


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hooks: dict[str, HookConfig] = {}
    """Inbound webhooks by name (``server/_hooks.py``)."""
    notifications: NotificationsConfig | None = None
    """Signed POSTs of what happens to runs (``server/_notify.py``)."""
    oidc: OidcConfig | None = None
    """JWT bearer tokens beside API tokens (``server/_oidc.py``)."""


def load_config(path: str | Path) -> ServerConfig:
    """The file's configuration; ConfigError naming the file and the first wrong key."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return ServerConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(
            f"{path}: {where}: {message}",
            hint="sections: hooks, notifications, oidc (see docs/architecture.md)",
        ) from None
