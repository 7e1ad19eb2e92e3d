"""Tool calling for endpoints that have none: a JSON-schema constrained answer instead.

The request carries ``response_format: {"type": "json_schema", ...}`` whose schema admits two
shapes, the same ones the local provider's grammar forces::

    {"tool_calls": [{"name": <an offered tool>, "arguments": <that tool's input schema>}, ...]}
    {"content": "..."}

The tools are described in the system message; the model's earlier calls are shown to it as
such JSON, and tool results as user turns naming the call (servers without tool calling often
reject the ``tool`` role).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from charter.errors import ModelResponseError
from charter.events import ProposedCall
from charter.models._base import Message, ToolSpec

SCHEMA_NAME = "charter_answer"
_FORMAT = (
    'Answer with one JSON object: {"tool_calls": [{"name": <tool name>, "arguments": '
    '<arguments object>}]} to call tools, or {"content": "<your reply>"} once the work is done.'
)
_ANSWER_ONLY = 'Answer with one JSON object: {"content": "<your reply>"}.'


def response_format(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """The ``response_format`` that constrains the answer to the two shapes."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "schema": answer_schema(tools), "strict": True},
    }


def answer_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    answer = strict_object({"content": {"type": "string"}})
    if not tools:
        return answer
    calls = [
        strict_object(
            {"name": {"type": "string", "enum": [t.name]}, "arguments": _args(t.parameters)}
        )
        for t in tools
    ]
    call_list = {"type": "array", "items": {"anyOf": calls}, "minItems": 1}
    return {"anyOf": [strict_object({"tool_calls": call_list}), answer]}


def strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema object with exactly these properties, each required."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _args(schema: dict[str, Any]) -> dict[str, Any]:
    return schema if schema.get("type") == "object" else {"type": "object"}


def chat_messages(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> list[dict[str, str]]:
    """The conversation as plain system/user/assistant turns, the answer format in the system."""
    guide = _guide(tools)
    names = {c.call_id: c.name for m in messages for c in m.tool_calls}
    out: list[dict[str, str]] = []
    if not messages or messages[0].role != "system":
        out.append({"role": "system", "content": guide})
    for i, m in enumerate(messages):
        if m.role == "system":
            text = f"{m.content or ''}\n\n{guide}" if i == 0 else m.content or ""
            out.append({"role": "system", "content": text})
        elif m.role == "assistant" and m.tool_calls:
            calls = [{"name": c.name, "arguments": _loads(c.arguments)} for c in m.tool_calls]
            out.append({"role": "assistant", "content": json.dumps({"tool_calls": calls})})
        elif m.role == "assistant":
            out.append({"role": "assistant", "content": json.dumps({"content": m.content or ""})})
        elif m.role == "tool":
            name = names.get(m.tool_call_id or "", "a tool")
            text = f"Result of the call to {name} ({m.tool_call_id}):\n{m.content or ''}"
            out.append({"role": "user", "content": text})
        else:
            out.append({"role": "user", "content": m.content or ""})
    return out


def _guide(tools: Sequence[ToolSpec]) -> str:
    if not tools:
        return _ANSWER_ONLY
    described = [
        {"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools
    ]
    return f"# Tools\n{json.dumps(described, indent=1)}\n\n{_FORMAT}"


def _loads(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return text


def parse_answer(
    text: str | None, *, step: int, where: str, retryable: bool
) -> tuple[str | None, tuple[ProposedCall, ...], str | None]:
    """The (content, calls, ignored text) of a constrained answer; :class:`ModelResponseError`
    if it is not one.

    Servers that do not enforce the schema wrap the object in a markdown fence or write on
    after it. What is accepted: the answer's text must *begin* with one JSON object of one of
    the two shapes, after optional whitespace and an optional opening fence (```` ``` ```` or
    ```` ```json ````); anything after that first complete object is ignored and returned as
    the third value (the run log records it as ``ignored_text``). Text before the object, a
    value that is not an object, or an object of neither shape is refused. A blank answer is
    returned as no content and no calls: the run loop refuses it as ``model_empty_answer``.

    A call's ``arguments`` are kept as JSON text; arguments given as a string are kept verbatim
    (the run loop rejects them as ``malformed_arguments`` when they are not a JSON object).
    """
    if not (text or "").strip():
        return None, (), None  # an empty answer: the run loop refuses it (model_empty_answer)
    body, ignored = _first_object(text or "", where=where, retryable=retryable)
    calls = body.get("tool_calls")
    if isinstance(calls, list) and calls:
        proposed = []
        for i, call in enumerate(calls):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ModelResponseError(
                    f"the answer of {where} has a tool call without a name",
                    retryable=retryable,
                    excerpt=_clip(text or ""),
                )
            args = call.get("arguments", {})
            raw = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            proposed.append(
                ProposedCall(call_id=f"call_{step}_{i}", name=call["name"], arguments=raw)
            )
        return None, tuple(proposed), ignored
    content = body.get("content")
    if not isinstance(content, str):
        raise ModelResponseError(
            f"the answer of {where} is neither tool calls nor content",
            retryable=retryable,
            excerpt=_clip(text or ""),
        )
    return content, (), ignored


_FENCE = re.compile(r"\A```[A-Za-z]*[ \t]*\n?")


def _first_object(text: str, *, where: str, retryable: bool) -> tuple[dict[str, Any], str | None]:
    """The JSON object the answer begins with, and the text after it (None when only
    whitespace, or a closing fence, follows)."""
    stripped = text.strip()
    fence = _FENCE.match(stripped)
    start = stripped[fence.end() :].lstrip() if fence else stripped
    try:
        body, end = json.JSONDecoder().raw_decode(start)
    except json.JSONDecodeError as exc:
        raise ModelResponseError(
            f"the answer of {where} does not begin with a JSON object ({exc})",
            retryable=retryable,
            excerpt=_clip(text),
        ) from exc
    if not isinstance(body, dict):
        raise ModelResponseError(
            f"the answer of {where} is neither tool calls nor content",
            retryable=retryable,
            excerpt=_clip(text),
        )
    rest = start[end:].strip()
    if fence and rest.startswith("```"):
        rest = rest[3:].strip()
    return body, rest or None


def _clip(text: str, width: int = 120) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
