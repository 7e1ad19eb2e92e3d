"""A GGUF model run in this process through llama.cpp (the cyllama binding), offline.

The tools are described in the system prompt, and a grammar made from a JSON schema forces
every answer into one of two shapes::

    {"tool_calls": [{"name": <an offered tool>, "arguments": <that tool's input schema>}]}
    {"content": "..."}

so the model either calls one tool (one call per step: small models do better so) with
arguments its schema accepts, or answers. The model's earlier turns are shown to it in the
same JSON shapes. Inference is blocking CPU work: it runs in a thread, one call at a time per
loaded model. The model file defaults to ``NAME.gguf`` in the model cache directory
(``$CHARTER_MODEL_DIR`` or ``~/.cache/charter/models``), which ``scripts/get-local-model`` fills.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from charter.errors import ConfigError, ModelError, ModelResponseError, ModelTruncatedError
from charter.events import ProposedCall, Usage
from charter.models import _local_engine as engine
from charter.models._base import Message, ModelRequest, ModelResponse, ModelSpec, ToolSpec
from charter.models._json_answer import strict_object

DEFAULT_MAX_OUTPUT_TOKENS = 512
_FORMAT = (
    'Answer with one JSON object: {"tool_calls": [{"name": <function-name>, "arguments": '
    '<args-json-object>}]} to call a function, or {"content": "<your reply>"} once the work '
    "is done."
)
_ANSWER_ONLY = 'Answer with one JSON object: {"content": "<your reply>"}.'


class LocalModel:
    """The ``local`` provider: a GGUF file, loaded once per process and path."""

    provider = "local"

    def __init__(self, spec: ModelSpec) -> None:
        try:
            import cyllama.llama.llama_cpp  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "the local provider needs the 'cyllama' package",
                hint="pip install 'charter[local]'",
            ) from exc
        self.name = spec.name
        self._spec = spec
        self.path = _model_path(spec)
        self.endpoint = str(self.path)
        self.sha256 = spec.sha256 or (
            engine.PINNED_SHA256.get(spec.name) if spec.path is None else None
        )
        self.threads = spec.threads or engine.cores()
        self.max_output_tokens = spec.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        if not self.path.is_file():
            raise ConfigError(
                f"the local model file {self.path} does not exist",
                hint=engine.GET_MODEL_HINT if spec.path is None else "check the model's path",
            )

    def load(self) -> engine.LoadedModel:
        """Verify (once per process) and load (once per process) the model file; blocking."""
        return engine.load(self.path, sha256=self.sha256)

    async def respond(self, request: ModelRequest) -> ModelResponse:
        return await asyncio.to_thread(self.respond_sync, request)

    def respond_sync(self, request: ModelRequest) -> ModelResponse:
        """One blocking call: what :meth:`respond` runs in a thread."""
        response, _ = self.generate(request)
        return response

    def generate(self, request: ModelRequest) -> tuple[ModelResponse, engine.Generation]:
        """One blocking call, with the engine's figures (for benchmarks)."""
        loaded = self.load()
        prompt = loaded.tokenize(render_prompt(loaded.chat_template, request))
        needed = len(prompt) + self.max_output_tokens
        if needed > self._spec.context_tokens:
            raise ModelError(
                f"the prompt of {len(prompt)} tokens and up to {self.max_output_tokens} answer "
                f"tokens exceed the local model's context of {self._spec.context_tokens} tokens",
                hint="raise the model's context_tokens or lower the agent's max_context_messages",
            )
        try:
            gen = loaded.generate(
                prompt,
                grammar=response_grammar(_tool_key(request.tools)),
                temperature=self._spec.temperature,
                max_tokens=self.max_output_tokens,
                threads=self.threads,
                context_tokens=self._spec.context_tokens,
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"llama.cpp failed on {self.name!r}: {exc}") from exc
        return self._response(request, gen), gen

    def _response(self, request: ModelRequest, gen: engine.Generation) -> ModelResponse:
        # Sampling again can only give another answer when the model samples at random.
        retryable = self._spec.temperature > 0
        spent: dict[str, Any] = {
            "input_tokens": gen.prompt_tokens,
            "output_tokens": gen.output_tokens,
        }
        if not gen.finished:  # refused by the run loop like any cut-off answer: retried, escalated
            raise ModelTruncatedError(
                f"the local model {self.name!r} was cut off after {gen.output_tokens} tokens "
                f"mid-answer: {_clip(gen.text)}",
                hint="raise the model's max_output_tokens",
                retryable=True,
                finish_reason="length",
                **spent,
            )
        try:
            body = json.loads(gen.text)
        except json.JSONDecodeError as exc:
            raise ModelResponseError(
                f"the local model {self.name!r} answered malformed JSON ({exc}): {_clip(gen.text)}",
                retryable=retryable,
                finish_reason="stop",
                **spent,
            ) from exc
        usage = Usage(input_tokens=gen.prompt_tokens, output_tokens=gen.output_tokens)
        calls = body.get("tool_calls") if isinstance(body, dict) else None
        if isinstance(calls, list) and calls:
            proposed = tuple(
                ProposedCall(
                    call_id=f"call_{request.step}_{i}",
                    name=str(call.get("name", "")),
                    arguments=json.dumps(call.get("arguments", {}), ensure_ascii=False),
                )
                for i, call in enumerate(c if isinstance(c, dict) else {} for c in calls)
            )
            return ModelResponse(content=None, tool_calls=proposed, usage=usage, model=self.name)
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, str):
            raise ModelResponseError(
                f"the local model {self.name!r} answered neither a tool call nor content: "
                f"{_clip(gen.text)}",
                retryable=retryable,
                finish_reason="stop",
                **spent,
            )
        return ModelResponse(content=content, tool_calls=(), usage=usage, model=self.name)


def _model_path(spec: ModelSpec) -> Path:
    if spec.path is not None:
        return Path(spec.path).expanduser().resolve()
    if "/" in spec.name or spec.name.startswith("."):
        raise ConfigError(
            f"the local model name {spec.name!r} is not a file name",
            hint="name a model in the model cache directory, or give its 'path'",
        )
    return engine.model_dir() / f"{spec.name}.gguf"


def _clip(text: str, width: int = 120) -> str:
    text = text.replace("\n", " ")
    return repr(text if len(text) <= width else text[: width - 1] + "…")


# -- the prompt ---------------------------------------------------------------------------------


def render_prompt(template: str, request: ModelRequest) -> str:
    """The request as the model's chat template lays it out (ChatML when it has none).

    A template that lists tools itself (as Qwen's does, in the words the model was trained
    on) is given them; otherwise the system message lists them, one line each.
    """
    tools = request.tools
    if template and "tools" in template:
        fmt = _FORMAT if tools else _ANSWER_ONLY
        try:
            return _render_jinja(template, chat_messages(request.messages, fmt), tools)
        except Exception:  # a template the sandbox cannot run: fall back to ChatML
            pass
    messages = chat_messages(request.messages, tools_section(tools))
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def _render_jinja(template: str, messages: list[dict[str, str]], tools: Sequence[ToolSpec]) -> str:
    from cyllama._vendor.jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value, **_: json.dumps(value, ensure_ascii=False)
    functions = [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]
    return str(
        env.from_string(template).render(
            messages=messages, tools=functions or None, add_generation_prompt=True
        )
    )


def chat_messages(messages: Sequence[Message], guide: str) -> list[dict[str, str]]:
    """Plain chat turns; ``guide`` (the answer format, maybe the tools) ends the system message."""
    out: list[dict[str, str]] = []
    if not messages or messages[0].role != "system":
        out.append({"role": "system", "content": guide})
    for i, m in enumerate(messages):
        if m.role == "system":
            content = f"{m.content or ''}\n\n{guide}" if i == 0 else m.content or ""
        elif m.role == "assistant" and m.tool_calls:
            calls = [{"name": c.name, "arguments": _arguments(c.arguments)} for c in m.tool_calls]
            content = json.dumps({"tool_calls": calls}, ensure_ascii=False)
        elif m.role == "assistant":
            content = json.dumps({"content": m.content or ""}, ensure_ascii=False)
        else:
            content = m.content or ""
        out.append({"role": m.role, "content": content})
    return out


def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return text


def tools_section(tools: Sequence[ToolSpec]) -> str:
    """The tools, one line each (``name(arg: type, opt?: type) - description``), and the format."""
    if not tools:
        return _ANSWER_ONLY
    lines = ["# Tools"]
    for t in tools:
        lines.append(f"- {t.name}({_signature(t.parameters)}) - {t.description}")
    return "\n".join([*lines, "", _FORMAT])


def _signature(schema: dict[str, Any]) -> str:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return "..."
    required = set(schema.get("required", ()))
    return ", ".join(
        f"{name}{'' if name in required else '?'}: {_type(prop)}" for name, prop in props.items()
    )


def _type(prop: Any) -> str:
    if not isinstance(prop, dict):
        return "any"
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items'))}"
    return kind if isinstance(kind, str) else "any"


# -- the grammar --------------------------------------------------------------------------------


def _tool_key(tools: Sequence[ToolSpec]) -> tuple[tuple[str, str], ...]:
    return tuple((t.name, json.dumps(t.parameters)) for t in tools)  # order matters: kept


@lru_cache(maxsize=64)
def response_grammar(tools: tuple[tuple[str, str], ...]) -> str:
    """The GBNF grammar of the two answer shapes, for the given ``(name, schema json)`` tools."""
    from cyllama.utils.json_schema_to_grammar import json_schema_to_grammar

    return str(json_schema_to_grammar(response_schema(tools)))


def response_schema(tools: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    answer = strict_object({"content": {"type": "string"}})
    if not tools:
        return answer
    calls = [
        strict_object({"name": {"const": name}, "arguments": _arguments_schema(schema)})
        for name, schema in tools
    ]
    call_list = {"type": "array", "items": {"anyOf": calls}, "minItems": 1, "maxItems": 1}
    return {"anyOf": [strict_object({"tool_calls": call_list}), answer]}


def _arguments_schema(schema_json: str) -> dict[str, Any]:
    """The tool's input schema when the grammar converter takes it, else any JSON object."""
    from cyllama.utils.json_schema_to_grammar import json_schema_to_grammar

    schema = json.loads(schema_json)
    try:
        json_schema_to_grammar(schema)
    except Exception:  # the runtime still validates the arguments
        return {"type": "object"}
    return schema if isinstance(schema, dict) else {"type": "object"}
