"""Model protocol and the values that cross it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from charter.errors import ConfigError
from charter.events import ProposedCall, Usage


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message of the working context."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: tuple[ProposedCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the model is told about a tool: name, description, JSON schema of its input."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model call. ``step`` counts the model responses already committed in the run."""

    run_id: str
    step: int
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelResponse:
    content: str | None
    tool_calls: tuple[ProposedCall, ...]
    usage: Usage
    model: str
    finish_reason: str | None = None
    """Why the server says it stopped, as it said it (``stop``, ``length``, ``max_tokens``)."""
    ignored_text: str | None = None
    """``tool_calling: json``: the text the server wrote after the answer's JSON object."""
    usage_reported: bool = True
    """False when ``usage`` is an estimate (the server reported none)."""


class Model(Protocol):
    """A model provider. Raise :class:`charter.errors.ModelError` on failure."""

    provider: str
    name: str

    async def respond(self, request: ModelRequest) -> ModelResponse: ...


class ModelSpec(BaseModel):
    """The ``model:`` section of an agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["scripted", "openai", "anthropic", "local"]
    name: str = "scripted"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    """The variable holding the API key (for ``anthropic``, ``ANTHROPIC_API_KEY`` unless set)."""
    temperature: float = 0.0
    max_output_tokens: int | None = None
    timeout_s: float = 60.0
    max_attempts: int = 3
    outage_waits: int = Field(default=3, ge=0)
    """When the provider stays unavailable or rate-limited through ``max_attempts``, the run
    parks on a timer and tries again later, this many times in a row, before it escalates."""
    outage_wait_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    """The first such wait; each next one doubles (capped at an hour)."""
    tool_calling: Literal["native", "json"] = "native"
    """For ``openai``: ``json`` asks an endpoint without tool calling for a JSON-schema
    constrained answer (``{"tool_calls": [...]}`` or ``{"content": ...}``) instead."""
    input_usd_per_mtok: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    """Price of a million input (prompt) tokens in US dollars, for cost accounting."""
    output_usd_per_mtok: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    """Price of a million output tokens in US dollars."""

    script: Any = None
    """For ``scripted``: a list of responses, or ``{"scripts": [{"match", "responses"}]}``."""
    path: str | None = None
    """For ``local``: the GGUF file [default: ``NAME.gguf`` in the model cache directory]."""
    sha256: str | None = None
    """For ``local``: the file's expected sha256 [default: the pinned hash of a known model]."""
    threads: int | None = Field(default=None, ge=1)
    """For ``local``: CPU threads [default: the cores this process may use]."""
    context_tokens: int = Field(default=8192, ge=256)
    """For ``local``: the context window, prompt and answer together."""

    def cost_usd(self, usage: Usage) -> float:
        """What a response cost at these prices (0 when no price is set)."""
        cost = usage.input_tokens * self.input_usd_per_mtok
        cost += usage.output_tokens * self.output_usd_per_mtok
        return round(cost / 1_000_000, 12)


def build_model(spec: ModelSpec) -> Model:
    """Make the provider a spec names."""
    if spec.provider == "scripted":
        from charter.models._scripted import ScriptedModel

        if spec.script is None:
            raise ConfigError("a scripted model needs a 'script' (a JSON file of responses)")
        return ScriptedModel(spec.script, name=spec.name)
    if spec.provider == "local":
        from charter.models._local import LocalModel

        return LocalModel(spec)
    if spec.provider == "anthropic":
        from charter.models._anthropic import AnthropicModel

        return AnthropicModel(spec)
    from charter.models._openai import OpenAIModel

    return OpenAIModel(spec)


def estimate_tokens(text: str | None) -> int:
    """A deterministic token estimate (about four characters a token) for providers without one."""
    return 0 if not text else max(1, len(text) // 4)
