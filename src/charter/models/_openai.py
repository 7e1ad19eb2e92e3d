"""A model behind any OpenAI-compatible chat-completions endpoint, with tool calling."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

from charter.errors import ConfigError, ModelError, ModelResponseError
from charter.events import ProposedCall, Usage
from charter.models import _json_answer
from charter.models._base import (
    Message,
    ModelRequest,
    ModelResponse,
    ModelSpec,
    ToolSpec,
    estimate_tokens,
)
from charter.models._http import loggable_url, translate_error

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionMessageParam,
        ChatCompletionMessageToolCallParam,
        ChatCompletionToolParam,
    )

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_PLACEHOLDER_KEY = "not-needed"  # local servers (llama.cpp, vLLM, ...) ignore the key


class OpenAIModel:
    """Calls ``POST {base_url}/chat/completions``; the SDK's errors become :class:`ModelError`.

    With ``tool_calling: json`` the tools go into the system message and the answer is
    constrained by a JSON schema (``response_format``) instead of the ``tools`` parameter.
    The client neither retries (the engine does) nor outlives a call: each call opens and
    closes its own, so no socket is tied to an event loop that may be gone by the next call.
    """

    provider = "openai"

    def __init__(self, spec: ModelSpec) -> None:
        try:
            import openai
        except ImportError as exc:
            raise ConfigError(
                "the openai provider needs the 'openai' package",
                hint="pip install 'charter[openai]'",
            ) from exc
        self.name = spec.name
        self._spec = spec
        self._openai = openai
        self._base_url = spec.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.endpoint = loggable_url(self._base_url)
        """The base URL without credentials or query: what errors and the run log show."""
        api_key = os.environ.get(spec.api_key_env) or None
        if api_key is None:
            if spec.base_url is None:
                raise ConfigError(
                    f"the openai provider needs an API key in ${spec.api_key_env}",
                    hint=f"export {spec.api_key_env}=..., or set the model's base_url "
                    "to a local server",
                )
            api_key = _PLACEHOLDER_KEY
        self._api_key = api_key

    def _client(self) -> AsyncOpenAI:
        return self._openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self._spec.timeout_s,
            max_retries=0,
        )

    def parameters(self) -> dict[str, Any]:
        """The parameters every call sends besides the messages (recorded on model events)."""
        spec = self._spec
        params: dict[str, Any] = {"temperature": spec.temperature}
        if spec.max_output_tokens is not None:
            params["max_tokens"] = spec.max_output_tokens
        if spec.tool_calling != "native":
            params["tool_calling"] = spec.tool_calling
        return params

    async def respond(self, request: ModelRequest) -> ModelResponse:
        spec = self._spec
        extra: dict[str, Any] = {}
        messages: list[ChatCompletionMessageParam]
        if spec.tool_calling == "json":
            plain = _json_answer.chat_messages(request.messages, request.tools)
            messages = cast("list[ChatCompletionMessageParam]", plain)
            extra["response_format"] = _json_answer.response_format(request.tools)
        else:
            messages = [_message(m) for m in request.messages]
            if request.tools:
                extra["tools"] = [_tool(t) for t in request.tools]
        if spec.max_output_tokens is not None:
            extra["max_tokens"] = spec.max_output_tokens
        try:
            async with self._client() as client:
                response = await client.chat.completions.create(
                    model=spec.name, messages=messages, temperature=spec.temperature, **extra
                )
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc
        return self._response(request, response)

    def _response(self, request: ModelRequest, response: ChatCompletion) -> ModelResponse:
        choices = getattr(response, "choices", None)  # a non-JSON reply arrives as a str
        if not choices:
            raise ModelResponseError(
                f"malformed response from {self.endpoint} for model {self.name!r}: no choices",
                retryable=True,
            )
        message, finish = choices[0].message, choices[0].finish_reason
        if self._spec.tool_calling == "json" and finish != "length":
            # A cut-off answer is not parsed: the engine refuses it as ``model_truncated``.
            try:
                content, answered, ignored = _json_answer.parse_answer(
                    message.content,
                    step=request.step,
                    where=f"{self.endpoint} (model {self.name!r})",
                    retryable=self._spec.temperature > 0,
                )
            except ModelResponseError as exc:
                usage = self._usage(request, response, message.content, ())
                exc.finish_reason = finish
                exc.input_tokens, exc.output_tokens = usage.input_tokens, usage.output_tokens
                raise
            return self._finish(request, response, content, answered, ignored)
        calls = []
        for i, tc in enumerate(message.tool_calls or ()):
            if tc.type != "function":
                raise ModelError(
                    f"{self.endpoint} returned a {tc.type!r} tool call for model "
                    f"{self.name!r}; only function calls are supported"
                )
            calls.append(
                ProposedCall(
                    call_id=tc.id or f"call_{request.step}_{i}",
                    name=tc.function.name,
                    arguments=tc.function.arguments,
                )
            )
        return self._finish(request, response, message.content, tuple(calls))

    def _finish(
        self,
        request: ModelRequest,
        response: ChatCompletion,
        content: str | None,
        calls: tuple[ProposedCall, ...],
        ignored: str | None = None,
    ) -> ModelResponse:
        return ModelResponse(
            content=content,
            tool_calls=calls,
            usage=self._usage(request, response, content, calls),
            model=response.model or self.name,
            finish_reason=response.choices[0].finish_reason,
            ignored_text=ignored,
            usage_reported=response.usage is not None,
        )

    def _usage(
        self,
        request: ModelRequest,
        response: ChatCompletion,
        content: str | None,
        calls: tuple[ProposedCall, ...],
    ) -> Usage:
        """The server's token counts, else an estimate (a server that reports none)."""
        if response.usage is not None:
            return Usage(
                input_tokens=response.usage.prompt_tokens,
                output_tokens=response.usage.completion_tokens,
            )
        return Usage(
            input_tokens=sum(estimate_tokens(m.content) for m in request.messages),
            output_tokens=estimate_tokens(content)
            + sum(estimate_tokens(c.arguments) for c in calls),
        )

    def _error(self, exc: Exception) -> ModelError:
        """Translate one of the SDK's exceptions; the only place that knows them."""
        return translate_error(
            self._openai,
            exc,
            endpoint=self.endpoint,
            model=self.name,
            timeout_s=self._spec.timeout_s,
            key_env=self._spec.api_key_env,
        )


def _message(m: Message) -> ChatCompletionMessageParam:
    if m.role == "system":
        return {"role": "system", "content": m.content or ""}
    if m.role == "user":
        return {"role": "user", "content": m.content or ""}
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content or ""}
    if not m.tool_calls:
        return {"role": "assistant", "content": m.content}
    calls: list[ChatCompletionMessageToolCallParam] = [
        {
            "id": c.call_id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for c in m.tool_calls
    ]
    return {"role": "assistant", "content": m.content, "tool_calls": calls}


def _tool(t: ToolSpec) -> ChatCompletionToolParam:
    return {
        "type": "function",
        "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
    }
