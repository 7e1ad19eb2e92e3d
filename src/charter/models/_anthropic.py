"""A model behind Anthropic's messages API, with tool use (the official ``anthropic`` SDK).

The system messages become the request's ``system``; tools go in ``tools`` with their
``input_schema``; the model's calls come back as ``tool_use`` blocks and their results go back
as ``tool_result`` blocks in the next user turn (consecutive turns of one role are merged,
as the API wants roles to alternate).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from charter.errors import ConfigError, ModelError, ModelResponseError
from charter.events import ProposedCall, Usage
from charter.models._base import Message, ModelRequest, ModelResponse, ModelSpec, ToolSpec
from charter.models._http import loggable_url, translate_error

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message as AnthropicMessage

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
DEFAULT_MAX_OUTPUT_TOKENS = 4096
"""The messages API requires ``max_tokens``; this is sent when the spec sets none."""
_PLACEHOLDER_KEY = "not-needed"  # a local proxy may ignore the key


class AnthropicModel:
    """Calls ``POST {base_url}/v1/messages``; the SDK's errors become :class:`ModelError`.

    Like the openai provider, the client never retries (the engine does) and lives for one call.
    """

    provider = "anthropic"

    def __init__(self, spec: ModelSpec) -> None:
        try:
            import anthropic
        except ImportError as exc:
            raise ConfigError(
                "the anthropic provider needs the 'anthropic' package",
                hint="pip install 'charter[anthropic]'",
            ) from exc
        self.name = spec.name
        self._spec = spec
        self._anthropic = anthropic
        self.key_env = (
            spec.api_key_env if "api_key_env" in spec.model_fields_set else DEFAULT_KEY_ENV
        )
        self._base_url = spec.base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
        self.endpoint = loggable_url(self._base_url)
        """The base URL without credentials or query: what errors and the run log show."""
        self.max_output_tokens = spec.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        api_key = os.environ.get(self.key_env) or None
        if api_key is None:
            if spec.base_url is None:
                raise ConfigError(
                    f"the anthropic provider needs an API key in ${self.key_env}",
                    hint=f"export {self.key_env}=..., or set the model's api_key_env",
                )
            api_key = _PLACEHOLDER_KEY
        self._api_key = api_key

    def _client(self) -> AsyncAnthropic:
        return self._anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self._spec.timeout_s,
            max_retries=0,
        )

    def parameters(self) -> dict[str, Any]:
        """The parameters every call sends besides the messages (recorded on model events)."""
        return {"temperature": self._spec.temperature, "max_tokens": self.max_output_tokens}

    async def respond(self, request: ModelRequest) -> ModelResponse:
        system, messages = to_messages(request.messages)
        extra: dict[str, Any] = {}
        if system:
            extra["system"] = system
        if request.tools:
            extra["tools"] = [_tool(t) for t in request.tools]
        try:
            async with self._client() as client:
                response = await client.messages.create(
                    model=self.name,
                    max_tokens=self.max_output_tokens,
                    messages=messages,
                    # not a keyword of every SDK version, so sent as it is in the body
                    extra_body={"temperature": self._spec.temperature},
                    **extra,
                )
        except self._anthropic.AnthropicError as exc:
            raise self._error(exc) from exc
        return self._response(request, response)

    def _response(self, request: ModelRequest, response: AnthropicMessage) -> ModelResponse:
        where = f"{self.endpoint} (model {self.name!r})"
        blocks = getattr(response, "content", None)  # a non-JSON reply arrives as a str
        if not isinstance(blocks, list):
            raise ModelResponseError(
                f"malformed response from {where}: no content blocks", retryable=True
            )
        texts: list[str] = []
        calls: list[ProposedCall] = []
        for i, block in enumerate(blocks):
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(block.text)
            elif kind == "tool_use":
                calls.append(
                    ProposedCall(
                        call_id=block.id or f"call_{request.step}_{i}",
                        name=block.name,
                        arguments=json.dumps(block.input, ensure_ascii=False),
                    )
                )
        # A cut-off answer (stop_reason max_tokens) goes back as such: the loop refuses it.
        u = response.usage
        cached = (u.cache_creation_input_tokens or 0) + (u.cache_read_input_tokens or 0)
        return ModelResponse(
            content="".join(texts) if texts else None,
            tool_calls=tuple(calls),
            usage=Usage(input_tokens=u.input_tokens + cached, output_tokens=u.output_tokens),
            model=response.model or self.name,
            finish_reason=response.stop_reason,
        )

    def _error(self, exc: Exception) -> ModelError:
        return translate_error(
            self._anthropic,
            exc,
            endpoint=self.endpoint,
            model=self.name,
            timeout_s=self._spec.timeout_s,
            key_env=self.key_env,
        )


def to_messages(messages: Sequence[Message]) -> tuple[str, list[Any]]:
    """The system text, and the turns as the messages API wants them (roles alternating)."""
    system = "\n\n".join(m.content or "" for m in messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content or ""}
        ]
    blocks: list[dict[str, Any]] = []
    if m.content:
        blocks.append({"type": "text", "text": m.content})
    for call in m.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.call_id,
                "name": call.name,
                "input": _input(call.arguments),
            }
        )
    return blocks


def _input(arguments: str) -> dict[str, Any]:
    """A call's arguments as the object ``tool_use`` needs ({} for ones the loop rejected)."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool(t: ToolSpec) -> dict[str, Any]:
    return {"name": t.name, "description": t.description, "input_schema": t.parameters}
