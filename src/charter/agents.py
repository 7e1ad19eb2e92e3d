"""Agents: a named, versioned definition of instructions, model, tools and budgets.

Define one in Python with :class:`Agent`, or in YAML with :func:`load_agent`::

    agent:
      name: support_triage
      version: "3"
      instructions: prompts/support_triage.md   # a path, relative to this file, or the
                                                # text itself as a block (instructions: |)
      model: {provider: scripted, script: responses.json}
      tools: ["examples.support.tools:kb_search", "charter.tools:ask_principal"]
      budgets: {max_steps: 20, max_tool_calls: 10, max_tokens_total: 12000, timeout_s: 60}
      model_routing:                  # optional: a model per step kind (charter.models._routing)
        classify: {provider: local, name: qwen2.5-coder-0.5b-instruct-q4_k_m}
      step_kinds: [{when: first, kind: classify}]
      cache: {models: true, tools: true}

A run stores the agent's *spec* (a JSON document, hashed) so that any worker, in any process,
can rebuild the same agent: the instructions text, the model settings (a script inline), the
tools as import references, the budgets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from charter.errors import ConfigError, ToolImportError
from charter.models import ModelSpec
from charter.models._routing import CachePolicy, Route, Routing, StepRule
from charter.policy import PolicySet
from charter.redaction import LoggingSettings
from charter.tools import Tool, ToolRegistry, import_tool

ModelSpecT = TypeVar("ModelSpecT", bound=ModelSpec)


class Budgets(BaseModel):
    """Per-run limits. When one runs out the run ends as ``escalated``, naming the budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_steps: int = Field(50, gt=0)
    max_tool_calls: int = Field(100, gt=0)
    max_tokens_total: int | None = Field(None, gt=0)
    timeout_s: float | None = Field(
        None, gt=0, validation_alias=AliasChoices("timeout_s", "timeout_seconds")
    )
    """Work time per run, in seconds. ``timeout_seconds`` is its old name: deprecated, still
    read (agent files and the specs older runs stored); a spec always writes ``timeout_s``."""
    max_cost_usd: float | None = Field(None, gt=0, allow_inf_nan=False)
    """Spending per run, in US dollars: model tokens at the model's prices plus tool costs."""

    @model_validator(mode="before")
    @classmethod
    def _one_time_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and "timeout_s" in data and "timeout_seconds" in data:
            raise ValueError("give timeout_s only (timeout_seconds is its deprecated name)")
        return data


@dataclass(frozen=True, kw_only=True)
class Agent:
    """An agent definition. ``instructions`` is the system prompt text itself."""

    name: str
    version: str = "1"
    instructions: str
    model: ModelSpec
    tools: Sequence[Tool] = ()
    budgets: Budgets = field(default_factory=Budgets)
    max_context_messages: int = 50
    policy: PolicySet | None = None
    """The policy set that governs every call; None runs ungoverned (every call allowed)."""
    trust_tier: str = "standard"
    routing: Routing | None = None
    """A model per step kind and the rules that choose a step's kind; None: ``model`` answers
    every step."""
    cache: CachePolicy = field(default_factory=CachePolicy)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    """What the run's log keeps of prompts and tool payloads (``charter.redaction``)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("an agent needs a name")
        if self.max_context_messages < 2:
            raise ConfigError("max_context_messages must be at least 2")
        ToolRegistry(self.tools)  # rejects two tools of one name

    @cached_property
    def instructions_hash(self) -> str:
        """The prompt's version: recorded on every model call."""
        return hashlib.sha256(self.instructions.encode()).hexdigest()

    def registry(self) -> ToolRegistry:
        return ToolRegistry(self.tools)

    def spec(self) -> dict[str, Any]:
        """The plain JSON document a run stores; :meth:`from_spec` rebuilds the agent."""
        spec = self._base_spec()
        if self.routing is not None:  # absent when unused, so older agents keep their hash
            spec["routing"] = self.routing.model_dump(mode="json", exclude_defaults=True)
        if self.cache != CachePolicy():
            spec["cache"] = self.cache.model_dump(mode="json", exclude_defaults=True)
        if self.logging.active:
            spec["logging"] = self.logging.model_dump(mode="json", exclude_defaults=True)
        return spec

    def _base_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "instructions": self.instructions,
            "instructions_hash": self.instructions_hash,
            "model": self.model.model_dump(mode="json"),
            "tools": [t.ref for t in self.tools],
            "budgets": self.budgets.model_dump(mode="json"),
            "max_context_messages": self.max_context_messages,
            "trust_tier": self.trust_tier,
            "policy": None
            if self.policy is None
            else json.loads(self.policy.document.canonical_json()),
        }

    @cached_property
    def _spec_json(self) -> str:
        return json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))

    def spec_json(self) -> str:
        return self._spec_json

    @cached_property
    def agent_hash(self) -> str:
        """sha256 of :meth:`spec_json`: what runs, events and the ``agents`` table name it by."""
        return hashlib.sha256(self.spec_json().encode()).hexdigest()

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Agent:
        return cls(
            name=spec["name"],
            version=spec["version"],
            instructions=spec["instructions"],
            model=ModelSpec.model_validate(spec["model"]),
            tools=[import_tool(ref) for ref in spec["tools"]],
            budgets=Budgets.model_validate(spec["budgets"]),
            max_context_messages=spec["max_context_messages"],
            trust_tier=spec.get("trust_tier", "standard"),
            policy=None
            if spec.get("policy") is None
            else PolicySet.from_dict({"policy": spec["policy"]}, source=f"agent {spec['name']}"),
            routing=None
            if spec.get("routing") is None
            else Routing.model_validate(spec["routing"]),
            cache=CachePolicy.model_validate(spec.get("cache", {})),
            logging=LoggingSettings.model_validate(spec.get("logging", {})),
        )


class _AgentSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = "1"
    instructions: str
    model: ModelSpec
    tools: list[str] = []
    budgets: Budgets = Budgets()
    max_context_messages: int = 50
    policy: str | None = None
    trust_tier: str = "standard"
    model_routing: dict[str, Route] | None = None
    step_kinds: list[StepRule] = []
    cache: CachePolicy = CachePolicy()
    logging: LoggingSettings = LoggingSettings()


class _AgentFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: _AgentSection


def load_agent(path: str | Path) -> Agent:
    """Load and check an agent YAML file; every problem is a ConfigError naming the file."""
    path = Path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such agent file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: {_not_utf8(exc)}", hint=_UTF8_HINT) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    try:
        doc = _AgentFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from exc
    section = doc.agent
    base = path.parent
    instructions = (
        section.instructions  # several lines (a YAML block): the text itself
        if "\n" in section.instructions
        else _read_relative(base, section.instructions, where, "instructions", hint=_INLINE)
    )
    model = _inline_script(section.model, base, where, "model")
    routing = _routing(section, base, where)
    tools = []
    for ref in section.tools:
        try:
            tools.append(import_tool(ref))
        except ToolImportError as exc:
            raise ToolImportError(f"{where}: {exc.message}", hint=exc.hint) from exc
    policy = None
    if section.policy is not None:
        policy_path = (base / section.policy).resolve()
        if not policy_path.is_file():
            raise ConfigError(f"{where}: policy file {section.policy!r} does not exist")
        policy = PolicySet.load(policy_path, known_tools={t.name for t in tools})
    return Agent(
        name=section.name,
        version=section.version,
        instructions=instructions,
        model=model,
        tools=tools,
        budgets=section.budgets,
        max_context_messages=section.max_context_messages,
        policy=policy,
        trust_tier=section.trust_tier,
        routing=routing,
        cache=section.cache,
        logging=section.logging,
    )


def _inline_script(spec: ModelSpecT, base: Path, where: str, what: str) -> ModelSpecT:
    """The spec with a scripted model's script file read in (a run stores it inline)."""
    if not isinstance(spec.script, str):
        return spec
    script_text = _read_relative(base, spec.script, where, f"{what}.script")
    try:
        return spec.model_copy(update={"script": json.loads(script_text)})
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: {what}.script is not valid JSON: {exc}") from exc


def _routing(section: _AgentSection, base: Path, where: str) -> Routing | None:
    if section.model_routing is None:
        if section.step_kinds:
            raise ConfigError(f"{where}: step_kinds needs model_routing (a model per kind)")
        return None
    routes = {}
    for kind, route in section.model_routing.items():
        route = _inline_script(route, base, where, f"model_routing.{kind}")
        if route.fallback is not None:
            fallback = _inline_script(route.fallback, base, where, f"model_routing.{kind}.fallback")
            route = route.model_copy(update={"fallback": fallback})
        routes[kind] = route
    try:
        return Routing(routes=routes, rules=tuple(section.step_kinds))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc


_INLINE = "to write the text itself, use a block: 'instructions: |' and the lines below it"


def _read_relative(base: Path, name: str, where: str, what: str, *, hint: str | None = None) -> str:
    target = (base / name).resolve()
    try:
        return target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{where}: {what} file {name!r} cannot be read: {exc.strerror}", hint=hint
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: {what} file {name!r}: {_not_utf8(exc)}", hint=_UTF8_HINT
        ) from None


_UTF8_HINT = "convert it to UTF-8 first, e.g. with iconv -t UTF-8"


def _not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field '{loc}'")
        elif err["type"] == "missing":
            parts.append(f"missing field '{loc}'")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def find_agent_files(files: Sequence[Path], dirs: Sequence[Path] = ()) -> list[Path]:
    """The agent files named, then every ``*.yaml`` / ``*.yml`` under each directory that
    holds an ``agent:``; each file once (ConfigError for a missing directory or bad YAML)."""
    found = list(files)
    for directory in dirs:
        if not directory.is_dir():
            raise ConfigError(f"{directory}: no such directory")
        candidates = sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")])
        found.extend(c for c in candidates if _is_agent_file(c))
    unique: dict[Path, Path] = {}
    for f in found:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def _is_agent_file(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it as YAML: {exc}") from exc
    return isinstance(data, dict) and "agent" in data
