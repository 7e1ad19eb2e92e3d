"""Tool contracts: typed Python functions declared with what they do to the world.

A tool is a plain function (sync or async) wrapped by :func:`tool`. Its input schema comes
from the parameters' type hints, its output schema from the return annotation, both through
pydantic; the input JSON schema is what the model sees. A parameter annotated
:class:`ToolContext` receives the call's context (run id, tenant, principal, idempotency key).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from charter.clock import trace_id_for
from charter.errors import ConfigError, LeaseLost, NotFoundError, ToolImportError

Effect = Literal["read", "write", "control"]
Risk = Literal["low", "medium", "high", "critical"]
Execution = Literal["thread", "process"]
"""Where a sync tool's attempt runs: a thread of the worker (the default) or a child process
the worker kills at the timeout. Async tools run on the worker's event loop and are
cancelled at the timeout, whatever this says."""
CacheScope = Literal["caller", "tenant"]
"""Who shares a cacheable read's cached results: the same caller (tenant, principal, roles,
environment: the default), or everyone in the tenant (and environment)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Backoff for transient failures: ``initial * multiplier**n``, capped, with jitter."""

    max_attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def backoff(self, attempt: int, rand: float) -> float:
        """Delay before attempt ``attempt + 1``; ``rand`` is in [0, 1)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return base * (1 - self.jitter + 2 * self.jitter * rand)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolContext:
    """What a tool knows about the call it serves.

    ``traceparent`` is the W3C trace context of the call (its ``execute_tool`` span when
    tracing is on): an HTTP tool sends it as the ``traceparent`` header so that the external
    side effect carries the run's trace id (:func:`charter.clock.trace_id_for`).

    ``fencing_token`` grows with every attempt that may follow an unknown outcome of this call
    (it is built from the run's lease epoch and the settlement round). A system that can
    refuse a stale writer stores the highest token it has seen for an idempotency key and
    refuses a lower one: a worker frozen in the middle of a call then cannot land its request
    after another worker settled the call.

    ``resources`` are the named plain values the deployment hands its tools
    (``Runtime(resources=...)``): a database path, a base URL. A tool reads
    ``ctx.resources.get(NAME, default)``; a worker started on its own (``charter worker``) has
    none, so a tool keeps a default for it.
    """

    run_id: str
    tenant: str
    principal: str
    step: int
    call_id: str
    attempt: int = 1
    idempotency_key: str | None = None
    lease_valid: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)
    traceparent: str | None = None
    fencing_token: int = 0
    resources: Mapping[str, str] = field(default_factory=dict)

    @property
    def trace_id(self) -> str:
        """The run's trace id: 32 hex digits, the first 128 bits of ``sha256(run_id)``."""
        return trace_id_for(self.run_id)

    def ensure_lease(self) -> None:
        """Raise :class:`~charter.errors.LeaseLost` unless this worker still owns the run.

        Call it in a write tool right before an effect the external system cannot deduplicate
        (a payment without an idempotency key): a worker frozen or cut off past its lease then
        stops instead of acting beside the worker that took the run over.
        """
        if not self.lease_valid():
            raise LeaseLost(f"run {self.run_id}: this worker's lease has expired")


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What the external system says about an effect: applied, not applied, or unknown (None).

    ``fenced=True`` is the hook's promise that from now on the external system refuses any
    attempt with this call's idempotency key whose ``fencing_token`` is below the one in the
    hook's ``ToolContext`` (check-and-fence, e.g. a tombstone for the key written in the same
    transaction as the check). Only then is "not applied" trusted and the call made again;
    a hook that cannot fence answers ``applied=False`` alone, and the run escalates to a human
    instead of repeating a write that may still land.
    """

    applied: bool | None
    output: Any = None
    fenced: bool = False


ReconcileFn = Callable[[ToolContext, dict[str, Any]], Any]
PreviewFn = Callable[[ToolContext, dict[str, Any]], Any]


class Tool:
    """A tool contract: the function plus everything the runtime must know to call it safely."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        version: str,
        description: str,
        effect: Effect,
        risk: Risk,
        owner: str,
        idempotent: bool,
        timeout_s: float,
        retry: RetryPolicy,
        destinations: Sequence[str] = (),
        cost_usd: float = 0.0,
        untrusted_output: bool = False,
        cacheable: bool = False,
        cache_ttl_s: float = 300.0,
        execution: Execution = "thread",
        max_concurrency: int = 8,
        cache_scope: CacheScope = "caller",
    ) -> None:
        if execution not in ("thread", "process"):
            raise ConfigError(
                f"tool {name!r}: execution must be 'thread' or 'process', not {execution!r}"
            )
        if execution == "process" and fn.__module__ == "__main__":
            raise ConfigError(
                f"tool {name!r}: a tool that runs in a child process must be importable",
                hint="define it in a module, not in the script being run",
            )
        if not (isinstance(max_concurrency, int) and max_concurrency > 0):
            raise ConfigError(f"tool {name!r}: max_concurrency must be a positive integer")
        if cache_scope not in ("caller", "tenant"):
            raise ConfigError(
                f"tool {name!r}: cache_scope must be 'caller' or 'tenant', not {cache_scope!r}"
            )
        if cacheable and effect != "read":
            raise ConfigError(
                f"tool {name!r}: only read tools can be cacheable (a write is never cached)"
            )
        if not cache_ttl_s > 0:
            raise ConfigError(f"tool {name!r}: cache_ttl_s must be a positive number of seconds")
        if effect not in ("read", "write", "control"):
            raise ConfigError(f"tool {name!r}: effect must be 'read' or 'write', not {effect!r}")
        if timeout_s <= 0:
            raise ConfigError(f"tool {name!r}: timeout_s must be positive")
        if not (isinstance(cost_usd, int | float) and 0 <= cost_usd < math.inf):
            raise ConfigError(f"tool {name!r}: cost_usd must be a number of dollars, at least 0")
        self.fn = fn
        self.name = name
        self.version = version
        self.description = description
        self.effect: Effect = effect
        self.risk: Risk = risk
        self.owner = owner
        self.idempotent = idempotent
        self.timeout_s = timeout_s
        self.retry = retry
        self.destinations = tuple(destinations)
        """Argument paths that name where data goes (an address, a URL, an account)."""
        self.untrusted_output = untrusted_output
        """Its output carries text others wrote (a web page, a customer's ticket, an email)."""
        self.cost_usd = float(cost_usd)
        """What one call (each attempt) costs, in US dollars, for budgets and spending caps."""
        self.cacheable = cacheable
        """Its results may be served from the result cache for ``cache_ttl_s`` seconds."""
        self.cache_ttl_s = float(cache_ttl_s)
        self.execution: Execution = execution
        """Where a sync attempt runs (see :data:`Execution`)."""
        self.max_concurrency = max_concurrency
        """Attempts of this tool one worker runs at once; hung attempts keep their slot."""
        self.cache_scope: CacheScope = cache_scope
        """Who shares its cached results: ``caller`` (default) or the whole ``tenant``."""
        self.is_async = inspect.iscoroutinefunction(fn)
        self.reconcile: ReconcileFn | None = None
        self.preview: PreviewFn | None = None
        self._context_param, self.input_model, self._output = _signature_models(fn, name)
        self.input_schema: dict[str, Any] = self.input_model.model_json_schema()
        self.input_schema.pop("title", None)

    @property
    def ref(self) -> str:
        """``module:attribute`` from which a worker in another process imports this tool."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    @property
    def output_schema(self) -> dict[str, Any]:
        return self._output.json_schema()

    def reconciler(self, fn: ReconcileFn) -> ReconcileFn:
        """Register ``fn(ctx, arguments) -> Reconciliation`` to ask whether an effect happened."""
        self.reconcile = fn
        return fn

    def previewer(self, fn: PreviewFn) -> PreviewFn:
        """Register ``fn(ctx, arguments)`` to tell an approver what a call would change.

        It returns ``{field: (old, new)}`` (or a list of ``{"field", "old", "new"}``); it is
        called, within the tool's timeout, when policy holds a call for approval.
        """
        self.preview = fn
        return fn

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check arguments against the input schema; raises pydantic's ValidationError."""
        return self.input_model.model_validate(arguments).model_dump(mode="json")

    def bind(self, ctx: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the function: validated values plus the context."""
        model = self.input_model.model_validate(arguments)
        kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        if self._context_param:
            kwargs[self._context_param] = ctx
        return kwargs

    def dump_output(self, value: Any) -> Any:
        """The function's return value as plain JSON data."""
        return self._output.dump_python(value, mode="json")

    def check_output(self, value: Any) -> Any:
        """The return value as plain JSON data once it matches the declared return type.

        ValueError, naming the mismatch, when it does not (or cannot be serialised): the
        call then fails as ``output_invalid``.
        """
        try:
            checked = self._output.validate_python(value)
        except ValidationError as exc:
            declared = getattr(get_type_hints(self.fn).get("return"), "__name__", None)
            raise ValueError(
                f"{self.name} returned a value that does not match its declared return type"
                f" {declared or self._output.json_schema().get('type', '?')}:"
                f" {validation_message(exc)}"
            ) from None
        try:
            return self._output.dump_python(checked, mode="json")
        except Exception as exc:
            raise ValueError(f"{self.name} returned an unserialisable value: {exc}") from None

    def describe(self) -> dict[str, Any]:
        """The capabilities-registry entry for this tool."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "effect": self.effect,
            "risk": self.risk,
            "owner": self.owner,
            "idempotent": self.idempotent,
            "reconcile": self.reconcile is not None,
            "timeout_s": self.timeout_s,
            "max_attempts": self.retry.max_attempts,
            "destinations": list(self.destinations),
            "untrusted_output": self.untrusted_output,
            "cost_usd": self.cost_usd,
            "cacheable": self.cacheable,
            "cache_ttl_s": self.cache_ttl_s,
            "execution": "async" if self.is_async else self.execution,
            "max_concurrency": self.max_concurrency,
            "cache_scope": self.cache_scope,
            "ref": self.ref,
            "input_schema": self.input_schema,
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name} v{self.version} {self.effect}>"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    effect: Effect = ...,
    risk: Risk = ...,
    owner: str = ...,
    idempotent: bool | None = ...,
    timeout_s: float = ...,
    retry: RetryPolicy | int | None = ...,
    name: str | None = ...,
    version: str = ...,
    description: str | None = ...,
    destinations: Sequence[str] = ...,
    cost_usd: float = ...,
    untrusted_output: bool = ...,
    cacheable: bool = ...,
    cache_ttl_s: float = ...,
    execution: Execution = ...,
    max_concurrency: int = ...,
    cache_scope: CacheScope = ...,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    effect: Effect = "read",
    risk: Risk = "low",
    owner: str = "unowned",
    idempotent: bool | None = None,
    timeout_s: float = 30.0,
    retry: RetryPolicy | int | None = None,
    name: str | None = None,
    version: str = "1",
    description: str | None = None,
    destinations: Sequence[str] = (),
    cost_usd: float = 0.0,
    untrusted_output: bool = False,
    cacheable: bool = False,
    cache_ttl_s: float = 300.0,
    execution: Execution = "thread",
    max_concurrency: int = 8,
    cache_scope: CacheScope = "caller",
) -> Any:
    """Declare a function as a tool contract.

    ``idempotent`` defaults to True for reads and False for writes: a write is only called
    again after an unknown outcome when it says it honours its idempotency key.
    ``retry`` is a :class:`RetryPolicy` or a number of attempts. ``destinations`` names the
    arguments (dotted paths) that say where data goes, for policy allowlists. ``cost_usd``
    is what one call costs (US dollars, each attempt), for budgets and spending caps.
    ``untrusted_output`` marks a tool whose output others wrote (web pages, customer tickets,
    emails, retrieved documents): values found only there count as untrusted in policy.
    ``cacheable`` (reads only) lets the runtime answer a call with the same arguments, for the
    same caller (tenant, principal, roles, environment), from the result cache for
    ``cache_ttl_s`` seconds. ``cache_scope="tenant"`` shares the results with everyone in the
    tenant (and environment); declare it only for a tool whose answer does not depend on who
    asks within a tenant.
    ``execution`` says where a sync tool's attempts run: ``"thread"`` (a thread of the worker;
    an attempt past its timeout cannot be stopped: a read is abandoned, a write is waited for)
    or ``"process"`` (a child process, killed at the timeout; the tool must be importable by
    its reference and its arguments and result plain data). ``max_concurrency`` bounds the
    attempts of this tool one worker runs at once.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        policy = retry if isinstance(retry, RetryPolicy) else RetryPolicy(max_attempts=retry or 3)
        return Tool(
            f,
            name=name or f.__name__,
            version=version,
            description=description or inspect.getdoc(f) or f.__name__,
            effect=effect,
            risk=risk,
            owner=owner,
            idempotent=(effect != "write") if idempotent is None else idempotent,
            timeout_s=timeout_s,
            retry=policy,
            destinations=destinations,
            cost_usd=cost_usd,
            untrusted_output=untrusted_output,
            cacheable=cacheable,
            cache_ttl_s=cache_ttl_s,
            execution=execution,
            max_concurrency=max_concurrency,
            cache_scope=cache_scope,
        )

    return wrap(fn) if fn is not None else wrap


def _signature_models(
    fn: Callable[..., Any], name: str
) -> tuple[str | None, type[BaseModel], TypeAdapter[Any]]:
    try:
        hints = get_type_hints(fn)
    except NameError as exc:
        raise ConfigError(f"tool {name!r}: cannot resolve a type hint: {exc}") from exc
    context_param: str | None = None
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"tool {name!r}: *args and **kwargs cannot be described to a model")
        hint = hints.get(param.name)
        if hint is ToolContext:
            context_param = param.name
            continue
        if hint is None:
            raise ConfigError(
                f"tool {name!r}: parameter {param.name!r} needs a type hint",
                hint="the model sees the JSON schema built from the hints",
            )
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hint, default)
    model = create_model(f"{name}_input", __config__=ConfigDict(extra="forbid"), **fields)
    output: TypeAdapter[Any] = TypeAdapter(hints.get("return", Any))
    return context_param, model, output


# ---------------------------------------------------------------------------------------------
# Control tools: handled by the engine itself, not executed as functions.


@tool(effect="control", name="ask_principal")
def ask_principal(question: str) -> str:
    """Ask the person who started the run a question and wait for their reply."""
    raise NotImplementedError("handled by the engine")  # pragma: no cover


@tool(effect="control", name="sleep")
def sleep(seconds: float) -> str:
    """Pause the run for a number of seconds (a durable timer), then continue."""
    raise NotImplementedError("handled by the engine")  # pragma: no cover


def import_tool(ref: str) -> Tool:
    """Import ``module:attribute`` and check that it is a tool contract."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ToolImportError(
            f"bad tool reference {ref!r}", hint="write it as 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolImportError(
            f"cannot import module {module_name!r} for tool {ref!r}: {exc}",
            hint="is the package installed, or the working directory on the path?",
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ToolImportError(f"module {module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, Tool):
        raise ToolImportError(
            f"{ref!r} is not a tool", hint="decorate the function with @charter.tool(...)"
        )
    return obj


class ToolRegistry:
    """The capabilities registry: every tool an agent may use, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, t: Tool) -> Tool:
        existing = self._tools.get(t.name)
        if existing is not None and existing is not t:
            raise ConfigError(f"two different tools are named {t.name!r}")
        self._tools[t.name] = t
        return t

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise NotFoundError(f"no tool named {name!r}") from None

    def find(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __iter__(self) -> Any:
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._tools)


def validation_message(exc: ValidationError) -> str:
    """pydantic's errors as one line a model can act on."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
