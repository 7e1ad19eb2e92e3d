"""What a run's log keeps of prompts and tool payloads: per-agent logging settings, applied
to each event body *before* it is sealed and written.

In an agent file::

    logging:
      store_prompt: false      # user messages and model text/proposals are not kept
      store_tool_io: true      # tool results are kept (redacted, if pii_redaction)
      pii_redaction: true      # e-mail addresses, phone numbers, card numbers
      redact_patterns: ["ORD-[0-9]{6}"]   # more regular expressions to redact

A redacted value is replaced by a marker (``[redacted:email]``, ``[not stored]``), and the
event lists the paths it changed in its ``redacted`` field (``["text"]``,
``["output.customer.email"]``), so a reader of the log knows a value was there.

What is never redacted, because the engine needs it to act exactly once or to decide: ids,
call ids, idempotency keys, hashes, policy decisions and rule ids, and the *arguments* of a
call (``tool_call_proposed``, ``policy_evaluated``, ``approval_requested``): after a crash
a pending write is called again with the arguments in the log, and an approval is bound to
their hash. Keep personal data out of arguments, or out of tools, where that matters.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, field_validator

from charter.events import (
    EventBody,
    MessageReceived,
    ModelCallFailed,
    ModelResponded,
    RunFinished,
    ToolCallFailed,
    ToolCallSucceeded,
)

NOT_STORED = "[not stored]"

PII_PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "card": r"\b(?:\d[ -]?){12,18}\d\b",
    "phone": r"(?<![\w])\+?\d[\d ().-]{7,}\d\b",
}
"""Card numbers before phone numbers: a card would otherwise look like a long phone number."""


class LoggingSettings(BaseModel):
    """An agent's ``logging`` section: what its runs' logs keep."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store_prompt: bool = True
    """False: user messages and the model's text and proposed arguments are not kept."""
    store_tool_io: bool = True
    """False: tool results (outputs, error messages) are not kept."""
    pii_redaction: bool = False
    redact_patterns: tuple[str, ...] = ()
    """Regular expressions whose matches are replaced by ``[redacted:custom]``."""

    @field_validator("redact_patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                msg = f"redact pattern {pattern!r} is not a regular expression: {exc}"
                raise ValueError(msg) from exc
        return patterns

    @property
    def active(self) -> bool:
        return self != LoggingSettings()


class Redactor:
    """Applies one agent's settings to event bodies. Pure: same body in, same body out."""

    def __init__(self, settings: LoggingSettings) -> None:
        self.settings = settings
        kinds: list[tuple[str, str]] = []
        if settings.pii_redaction:
            kinds += list(PII_PATTERNS.items())
        kinds += [("custom", p) for p in settings.redact_patterns]
        self._patterns = [(kind, re.compile(p)) for kind, p in kinds]

    def apply(self, body: EventBody) -> EventBody:
        """The body as it may be stored (itself when nothing changed)."""
        s = self.settings
        changes: dict[str, Any] = {}
        paths: list[str] = []
        match body:
            case MessageReceived():
                self._field(changes, paths, "text", body.text, keep=s.store_prompt)
            case ModelCallFailed():
                self._field(changes, paths, "excerpt", body.excerpt, keep=s.store_prompt)
            case ModelResponded():
                self._field(changes, paths, "content", body.content, keep=s.store_prompt)
                self._field(changes, paths, "ignored_text", body.ignored_text, keep=s.store_prompt)
                calls = []
                for i, call in enumerate(body.tool_calls):
                    sub: dict[str, Any] = {}
                    path = f"tool_calls.{i}.arguments"
                    self._field(sub, paths, path, call.arguments, keep=s.store_prompt)
                    calls.append(call.model_copy(update={"arguments": sub[path]}) if sub else call)
                if calls != list(body.tool_calls):
                    changes["tool_calls"] = tuple(calls)
            case ToolCallSucceeded():
                self._field(changes, paths, "output", body.output, keep=s.store_tool_io)
            case ToolCallFailed():
                message: dict[str, Any] = {}
                path = "error.message"
                self._field(message, paths, path, body.error.message, keep=s.store_tool_io)
                if message:
                    error = body.error.model_copy(update={"message": message[path]})
                    changes["error"] = error
            case RunFinished():
                self._field(changes, paths, "output", body.output, keep=s.store_prompt)
        if not paths:
            return body
        return body.model_copy(update={**changes, "redacted": tuple(paths)})

    def _field(
        self, changes: dict[str, Any], paths: list[str], path: str, value: Any, *, keep: bool
    ) -> None:
        if value is None:
            return
        if not keep:
            changes[path] = NOT_STORED
            paths.append(path)
            return
        new = self._scrub(value, path, paths)
        if new is not value:
            changes[path] = new

    def _scrub(self, value: Any, path: str, paths: list[str]) -> Any:
        """The value with every match replaced; ``paths`` gets each path that changed."""
        if isinstance(value, str):
            if path.endswith("arguments"):  # a JSON text: scrub inside it, keep it JSON
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError:
                    parsed = None
                if isinstance(parsed, dict | list):
                    new = self._scrub(parsed, path, paths)
                    return value if new is parsed else json.dumps(new)
            text = value
            for kind, pattern in self._patterns:
                text = pattern.sub(f"[redacted:{kind}]", text)
            if text != value:
                paths.append(path)
                return text
            return value
        if isinstance(value, dict):
            out = {k: self._scrub(v, f"{path}.{k}", paths) for k, v in value.items()}
            return value if all(out[k] is value[k] for k in value) else out
        if isinstance(value, list | tuple):
            items = [self._scrub(v, f"{path}.{i}", paths) for i, v in enumerate(value)]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value


def redact_url(url: str) -> str:
    """A database URL with its password (in the user part or the query) replaced by ``***``:
    what messages, logs and ``--help`` show of it."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        if ":" in credentials:
            credentials = credentials.split(":", 1)[0] + ":***"
        netloc = f"{credentials}@{host}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs])
    return urlunsplit(parts._replace(netloc=netloc, query=query))
