"""A model that answers from a script: deterministic, offline, for tests and demos."""

from __future__ import annotations

import json
import re
from typing import Any

from charter.errors import ConfigError, ModelError
from charter.events import ProposedCall, Usage
from charter.models._base import ModelRequest, ModelResponse, estimate_tokens


class ScriptedModel:
    """Gives the ``step``-th scripted response of the script that matches the run's input.

    A script is a list of responses; each is ``{"content": "final answer"}`` or
    ``{"tool_calls": [{"name": ..., "arguments": {...} | "raw json text"}], "content": ...}``.
    Several scripts may be given as ``{"scripts": [{"match": "regex", "responses": [...]}]}``;
    the first whose regex matches the run's first user message answers. The response depends
    only on the step number, so a resumed run gets the same answers as before the crash.
    """

    provider = "scripted"

    def __init__(self, script: Any, *, name: str = "scripted") -> None:
        self.name = name
        self._scripts = _parse(script)
        self._chosen: dict[str, list[dict[str, Any]]] = {}

    def _script_for(self, request: ModelRequest) -> list[dict[str, Any]]:
        """The script for this run, chosen once by its first user message."""
        chosen = self._chosen.get(request.run_id)
        if chosen is not None:
            return chosen
        first_user = next((m.content or "" for m in request.messages if m.role == "user"), "")
        chosen = next((r for pat, r in self._scripts if pat.search(first_user)), None)
        if chosen is None:
            raise ModelError(f"no script matches the input {first_user[:60]!r}")
        if len(self._chosen) >= 10_000:
            self._chosen.clear()
        self._chosen[request.run_id] = chosen
        return chosen

    async def respond(self, request: ModelRequest) -> ModelResponse:
        responses = self._script_for(request)
        if request.step >= len(responses):
            raise ModelError(
                f"the script has {len(responses)} responses; step {request.step} asked for more"
            )
        raw = responses[request.step]
        calls = tuple(
            ProposedCall(
                call_id=f"call_{request.step}_{i}",
                name=str(c["name"]),
                arguments=c["arguments"]
                if isinstance(c.get("arguments"), str)
                else json.dumps(c.get("arguments", {})),
            )
            for i, c in enumerate(raw.get("tool_calls", ()))
        )
        content = raw.get("content")
        # The same estimate as estimate_tokens, over the whole prompt at once (this runs per step).
        prompt = sum(len(m.content) for m in request.messages if m.content) // 4
        out = estimate_tokens(content) + sum(estimate_tokens(c.arguments) for c in calls)
        return ModelResponse(
            content=content,
            tool_calls=calls,
            usage=Usage(input_tokens=prompt, output_tokens=out),
            model=self.name,
            usage_reported=False,
        )


def _check_response(response: dict[str, Any], where: str) -> None:
    unknown = set(response) - {"content", "tool_calls"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    calls = response.get("tool_calls", [])
    if not isinstance(calls, list):
        raise ConfigError(f"{where}: 'tool_calls' must be a list")
    for k, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ConfigError(f"{where}: tool call {k} needs a 'name'")
        if not isinstance(call.get("arguments", {}), dict | str):
            raise ConfigError(f"{where}: tool call {k}: 'arguments' must be an object or text")


def _parse(script: Any) -> list[tuple[re.Pattern[str], list[dict[str, Any]]]]:
    if isinstance(script, list):
        script = {"scripts": [{"match": "", "responses": script}]}
    if not isinstance(script, dict) or not isinstance(script.get("scripts"), list):
        raise ConfigError(
            "a model script must be a list of responses or {'scripts': [...]}",
        )
    parsed = []
    for i, entry in enumerate(script["scripts"]):
        responses = entry.get("responses") if isinstance(entry, dict) else None
        if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
            raise ConfigError(f"script {i}: 'responses' must be a list of objects")
        for j, r in enumerate(responses):
            _check_response(r, f"script {i} response {j}")
        try:
            pattern = re.compile(str(entry.get("match", "")), re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"script {i}: bad 'match' regex: {exc}") from exc
        parsed.append((pattern, responses))
    return parsed
