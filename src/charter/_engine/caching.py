"""The response cache (model calls) and the result cache (cacheable read tools), in the store.

Keys are the sha256 of a canonical JSON of everything that decides the answer:

* a model call: the tenant, provider, the model's spec (name, sampling parameters, a
  script...), endpoint, version (a GGUF file's sha256), every message of the working context
  and every tool offered;
* a read-tool call: tool name and version, the validated arguments, and the caller as the
  tool's ``cache_scope`` says: ``caller`` (default) is tenant, principal, the principal's
  tenant, roles and environment; ``tenant`` is tenant and environment.

Values are plain JSON. Entries live in the store's ``cache`` table (shared by all workers on
the database) until their TTL passes by the worker's clock. Writes are never cached (only
``@tool(cacheable=True)`` reads are, and only their successes). A hit is recorded on the event
(``cached: true``) with zero cost, tokens and latency; the event carries the whole answer, so
replay and the hash chain see an ordinary event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from charter.events import ProposedCall, RunStarted, Usage
from charter.models import ModelRequest, ModelResponse
from charter.models._routing import CachePolicy
from charter.store import CacheStorage
from charter.tools import Tool


def _digest(material: Any) -> str:
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def model_key(*, identity: str, tenant: str, request: ModelRequest) -> str:
    """The response cache's key for a call to the model ``identity`` names (see
    ``_engine/routing.py``: provider, spec, endpoint, version), per tenant: one tenant's
    prompts and answers are never served to another. Run and step are not in it."""
    messages = [
        [
            m.role,
            m.content,
            [[c.call_id, c.name, c.arguments] for c in m.tool_calls],
            m.tool_call_id,
        ]
        for m in request.messages
    ]
    tools = [[t.name, t.description, t.parameters] for t in request.tools]
    return _digest(["model", identity, tenant, request.parameters, messages, tools])


def tool_key(tool: Tool, *, caller: RunStarted, arguments: dict[str, Any]) -> str:
    """The result cache's key: everything the tool can see of its caller, unless the tool
    declares ``cache_scope="tenant"`` (then the tenant and the environment only)."""
    scope: list[Any] = [caller.tenant, caller.environment]
    if tool.cache_scope == "caller":
        scope += [caller.principal, caller.principal_tenant, sorted(set(caller.roles))]
    return _digest(["tool", tool.name, tool.version, tool.cache_scope, scope, arguments])


def encode_response(response: ModelResponse) -> str:
    return json.dumps(
        {
            "content": response.content,
            "tool_calls": [c.model_dump() for c in response.tool_calls],
            "model": response.model,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_response(text: str) -> ModelResponse | None:
    """The cached response (with zero usage: nothing was spent), or None if unreadable."""
    try:
        raw = json.loads(text)
        calls = tuple(ProposedCall.model_validate(c) for c in raw["tool_calls"])
        return ModelResponse(
            content=raw["content"], tool_calls=calls, usage=Usage(), model=str(raw["model"])
        )
    except (ValueError, KeyError, TypeError):
        return None


class Caches:
    """The run's view of both caches, as its agent's ``cache:`` section allows."""

    def __init__(
        self, *, store: CacheStorage, policy: CachePolicy, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock

    async def response(self, key: str) -> ModelResponse | None:
        text = await self.store.cache_get(key, now=self.clock())
        return None if text is None else decode_response(text)

    async def keep_response(self, key: str, response: ModelResponse) -> None:
        await self.store.cache_put(
            key,
            encode_response(response),
            kind="model",
            now=self.clock(),
            ttl_s=self.policy.models_ttl_s,
        )

    def serves(self, tool: Tool) -> bool:
        return self.policy.tools and tool.cacheable and tool.effect == "read"

    async def result(self, key: str) -> tuple[bool, Any]:
        """``(True, output)`` on a hit, ``(False, None)`` on a miss."""
        text = await self.store.cache_get(key, now=self.clock())
        if text is None:
            return False, None
        return True, json.loads(text)

    async def keep_result(self, key: str, tool: Tool, output: Any) -> None:
        text = json.dumps(output, separators=(",", ":"), ensure_ascii=False)
        await self.store.cache_put(key, text, kind="tool", now=self.clock(), ttl_s=tool.cache_ttl_s)
