"""The server's configuration file (``charter serve --config FILE``, YAML): one top-level
section per feature, each section's model in its feature's module. An unknown key is an
error naming it."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from charter.errors import ConfigError
from charter.server._hooks import HookConfig


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hooks: dict[str, HookConfig] = {}
    """Inbound webhooks by name (``server/_hooks.py``)."""


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
            f"{path}: {where}: {message}", hint="sections: hooks (see docs/architecture.md)"
        ) from None
