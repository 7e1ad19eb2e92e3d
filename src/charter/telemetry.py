"""OpenTelemetry spans for runs, steps, model calls and tool calls (GenAI semantic conventions).

Charter depends on ``opentelemetry-api`` only. With no tracer provider installed (the default)
every hook below checks one global and calls straight through: no span, no attribute is built.
Install one yourself, or let the ``charter`` command do it from the standard ``OTEL_*``
variables (:func:`configure_from_env`, needs the ``charter[otel]`` extra).

Tracing is an observer (:mod:`charter.observer`): the engine tells :data:`TRACING` what
happens in plain values and it makes spans from them. Spans, one trace per run:

* ``invoke_agent {agent}`` — one per claim of the run (a worker driving it until it parks,
  finishes or loses its lease). Its parent is the run's *virtual root*: a remote span context
  derived from the run id, so every claim of a run, in any process, lands in the same trace.
* ``charter.step`` — one model step: the model call and the tool calls it proposed.
* ``chat {model}`` — the model call (retries inside it; the span ends with the response).
* ``execute_tool {tool}`` — one tool call, with its policy decision, idempotency key, attempts.

The trace id is the first 128 bits of ``sha256(run_id)`` (:func:`trace_id_for`); the virtual
root's span id the next 64. Anyone holding a run id can compute its trace id and vice versa
look a trace up by run (``charter.run_id`` is on the ``invoke_agent`` span).

Sampling is by run: at each claim the provider's sampler is asked what it would decide for a
root span of the run's trace (derived trace id, the run's own attributes), so every claim in
every process agrees; a run it leaves out makes no span and costs one check per hook.

Attributes follow the GenAI conventions (``gen_ai.operation.name``, ``gen_ai.agent.name``,
``gen_ai.conversation.id`` = the run id, ``gen_ai.request.model``, ``gen_ai.usage.*``,
``gen_ai.tool.name``, ``gen_ai.tool.call.id``); what they lack is under ``charter.*``
(tenant, principal, step, policy outcome/rule ids/hash, approval id, retries, idempotency key,
cost). Prompts and tool payloads are never put on spans.
"""

from __future__ import annotations

import hashlib
import os
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from charter.clock import trace_id_for
from charter.events import PolicyEvaluated
from charter.observer import (
    ModelAnswered,
    ModelCalled,
    ModelFailed,
    RunClaimed,
    RunEnded,
    Scope,
    ToolCalled,
    ToolEnded,
)

__all__ = [
    "TRACING",
    "Tracing",
    "configure_from_env",
    "enabled",
    "trace_id_for",
    "traceparent",
]

_TRACER_NAME = "charter"


def enabled() -> bool:
    """True when a real tracer provider is installed (the only cost when it is not)."""
    return TRACING.tracer() is not None


def _tracer_of(provider: trace.TracerProvider) -> trace.Tracer | None:
    off = isinstance(provider, ProxyTracerProvider | trace.NoOpTracerProvider)
    return None if off else provider.get_tracer(_TRACER_NAME)


def _root_sampled(
    provider: trace.TracerProvider, trace_id: int, name: str, attributes: dict[str, Any]
) -> bool:
    """What the provider's sampler decides for a root span of the run's trace: its root
    sampler, on the run's derived trace id and attributes that are the same at every claim
    (a ratio sampler gives the same answer in every process). A provider without a
    ``sampler`` (not the SDK's) samples every run."""
    sampler = getattr(provider, "sampler", None)
    if sampler is None:
        return True
    result = sampler.should_sample(otel_context.Context(), trace_id, name, attributes=attributes)
    return bool(result.decision.is_sampled())


# Set in the context of a claim whose run the sampler left out: every hook is then off.
_UNSAMPLED = otel_context.create_key("charter.run_unsampled")


def _ids(run_id: str) -> tuple[int, int]:
    digest = hashlib.sha256(run_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def _root(trace_id: int, span_id: int, *, sampled: bool) -> otel_context.Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent))


def traceparent(run_id: str, call_id: str) -> str:
    """A W3C ``traceparent`` for a tool call: the current span's when it is a sampled span of
    the run's (tracing on), else the run's trace id with a span id derived from the call and
    the sampled flag off (tracing off, or the run not sampled: external systems still receive
    the run's trace id)."""
    current = trace.get_current_span().get_span_context()
    trace_id, _ = _ids(run_id)
    if current.is_valid and current.trace_id == trace_id and current.trace_flags.sampled:
        return f"00-{trace.format_trace_id(trace_id)}-{trace.format_span_id(current.span_id)}-01"
    span_id = int.from_bytes(hashlib.sha256(f"{run_id}|{call_id}".encode()).digest()[:8], "big")
    return f"00-{trace.format_trace_id(trace_id)}-{trace.format_span_id(span_id or 1)}-00"


def configure_from_env() -> bool:
    """Install an SDK tracer provider with a batching OTLP/HTTP exporter when the standard
    variables ask for one (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._TRACES_ENDPOINT``, or
    ``OTEL_TRACES_EXPORTER=otlp``); ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
    turn it off. Returns whether tracing is on. Does nothing when a provider is already set.
    """
    if enabled():
        return True
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    wanted = exporter_name == "otlp" or any(
        os.environ.get(v)
        for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    off = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if not wanted or off or exporter_name == "none":
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        from charter.errors import ConfigError

        raise ConfigError(
            "OTEL_* variables ask for trace export but the OpenTelemetry SDK is not installed:"
            " install charter[otel], or unset OTEL_EXPORTER_OTLP_ENDPOINT"
        ) from None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "charter")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


# -- the engine's observer: spans from the plain values the engine reports -----------------
#
# It runs several times a step, so it is lean (bench/tracing_overhead.py measures it): one
# provider check that also yields the tracer, spans started with ``start_span`` and made
# current with one ``attach`` (no context-manager layers), each span's attributes built in one
# dict at its start and one at its end.


def _start(
    tracer: trace.Tracer,
    name: str,
    attributes: dict[str, Any],
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: otel_context.Context | None = None,
) -> _SpanScope:
    """Start a span and make it the current one (what ``start_as_current_span`` does)."""
    span = tracer.start_span(name, context, kind, attributes)
    return _SpanScope(span, otel_context.attach(trace.set_span_in_context(span)))


class _SpanScope:
    """One span, current from its start until ``close``."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: Token[otel_context.Context]) -> None:
        self.span = span
        self.token = token

    def ended(self, result: RunEnded | ModelAnswered | ModelFailed | ToolEnded) -> None:
        span = self.span
        if isinstance(result, ToolEnded):
            span.set_attributes(_tool_end_attrs(result))
            if result.error_message is not None:
                span.set_status(Status(StatusCode.ERROR, result.error_message))
        elif isinstance(result, ModelAnswered):
            span.set_attributes(
                {
                    "gen_ai.response.model": result.model,
                    "gen_ai.usage.input_tokens": result.input_tokens,
                    "gen_ai.usage.output_tokens": result.output_tokens,
                    "gen_ai.response.finish_reasons": (result.finish_reason,),
                    "charter.tool_calls": result.tool_calls,
                    "charter.cost_usd": result.cost_usd,
                    "charter.retries": result.retries,
                }
            )
        elif isinstance(result, ModelFailed):
            span.set_attributes(
                {
                    "charter.retries": result.retries,
                    "gen_ai.usage.input_tokens": result.input_tokens,
                    "gen_ai.usage.output_tokens": result.output_tokens,
                    "charter.cost_usd": result.cost_usd,
                }
            )
        else:
            done: dict[str, Any] = {
                "charter.run.status": result.status,
                "charter.run.steps": result.steps,
                "charter.run.tool_calls": result.tool_calls,
                "charter.usage.tokens": result.tokens,
                "charter.cost_usd": result.cost_usd,
            }
            if result.reason:
                done["charter.run.reason"] = result.reason
            span.set_attributes(done)

    def failed(self, exc: Exception) -> None:
        span = self.span
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.set_attribute("error.type", getattr(exc, "code", type(exc).__name__))

    def close(self) -> None:
        otel_context.detach(self.token)
        self.span.end()


class _Attached:
    """A context made current until ``close`` (a claim of a run the sampler left out)."""

    __slots__ = ("token",)

    def __init__(self, token: Token[otel_context.Context]) -> None:
        self.token = token

    def ended(self, result: RunEnded | ModelAnswered | ModelFailed | ToolEnded) -> None:
        pass

    def failed(self, exc: Exception) -> None:
        pass

    def close(self) -> None:
        otel_context.detach(self.token)


class _NoScope:
    """What the tracer's hooks return when tracing went off between check and call."""

    def ended(self, result: RunEnded | ModelAnswered | ModelFailed | ToolEnded) -> None:
        pass

    def failed(self, exc: Exception) -> None:
        pass

    def close(self) -> None:
        pass


_NO_SCOPE = _NoScope()


class Tracing:
    """The engine's default :class:`~charter.observer.Observer`: OpenTelemetry spans, one
    trace per run, when a tracer provider is installed; otherwise one check per hook.

    ``tracer_provider``: the provider to make spans with (default: the global one, looked up
    at each hook). Its sampler decides per run, as it would for a root span of the run's
    trace; a run it leaves out costs one check per hook, like tracing off."""

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        # The provider last seen and its tracer (None: no real provider). One identity check
        # per hook; an SDK provider would build a new tracer on every ``get_tracer``.
        self._seen: tuple[trace.TracerProvider | None, trace.Tracer | None] = (None, None)

    def tracer(self) -> trace.Tracer | None:
        """The tracer spans are made with; None when no real provider is installed."""
        provider = self._provider or trace.get_tracer_provider()
        seen, tracer = self._seen
        if provider is not seen:
            tracer = _tracer_of(provider)
            self._seen = (provider, tracer)
        return tracer

    def enabled(self) -> bool:
        """A real provider is installed and this is not a claim the sampler left out."""
        return self.tracer() is not None and otel_context.get_value(_UNSAMPLED) is None

    def run_claimed(self, run: RunClaimed) -> Scope:
        """``invoke_agent {agent}``: one claim of the run, under the run's virtual root; or,
        when the sampler leaves the run out, no span and every hook off until the claim ends."""
        tracer = self.tracer()
        provider = self._seen[0]
        if tracer is None or provider is None:
            return _NO_SCOPE
        name = f"invoke_agent {run.agent_name}"
        attrs: dict[str, Any] = {  # the run's own first: the sampler sees them
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": run.agent_name,
            "gen_ai.agent.version": run.agent_version,
            "gen_ai.conversation.id": run.run_id,
            "charter.run_id": run.run_id,
            "charter.tenant": run.tenant,
            "charter.principal": run.principal,
        }
        trace_id, span_id = _ids(run.run_id)
        if not _root_sampled(provider, trace_id, name, attrs):
            root = _root(trace_id, span_id, sampled=False)
            return _Attached(otel_context.attach(otel_context.set_value(_UNSAMPLED, True, root)))
        attrs |= {  # this claim's
            "charter.worker": run.worker_id,
            "charter.claim.epoch": run.epoch,
            "charter.claim.previous_status": run.previous_status or "",
        }
        return _start(tracer, name, attrs, context=_root(trace_id, span_id, sampled=True))

    def step_started(self, run_id: str, step: int) -> Scope:
        """``charter.step``: the model call and the tool calls it proposed."""
        tracer = self.tracer()
        if tracer is None:
            return _NO_SCOPE
        attrs = {"gen_ai.conversation.id": run_id, "charter.step": step}
        return _start(tracer, "charter.step", attrs)

    def model_called(self, call: ModelCalled) -> Scope:
        """``chat {model}`` (retries inside it; the span ends with the response)."""
        tracer = self.tracer()
        if tracer is None:
            return _NO_SCOPE
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": call.provider,
            "gen_ai.request.model": call.model,
            "gen_ai.conversation.id": call.run_id,
            "charter.step": call.step,
        }
        return _start(tracer, f"chat {call.model}", attrs, kind=SpanKind.CLIENT)

    def policy_decided(self, decision: PolicyEvaluated) -> None:
        """An event on the current (step) span."""
        trace.get_current_span().add_event(
            "charter.policy_evaluated",
            {
                "gen_ai.tool.call.id": decision.call_id,
                "gen_ai.tool.name": decision.tool,
                "charter.policy.outcome": decision.outcome,
                "charter.policy.rule_ids": decision.rule_ids,
            },
        )

    def tool_called(self, call: ToolCalled) -> Scope:
        """``execute_tool {tool}``: with its policy decision, idempotency key, attempts."""
        tracer = self.tracer()
        if tracer is None:
            return _NO_SCOPE
        return _start(tracer, f"execute_tool {call.tool}", _tool_attrs(call))


TRACING = Tracing()
"""The tracing observer every ``RunDriver`` uses unless it is given another."""


def _tool_attrs(call: ToolCalled) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.tool,
        "gen_ai.tool.call.id": call.call_id,
        "gen_ai.tool.type": "function",
        "gen_ai.conversation.id": call.run_id,
        "charter.step": call.step,
        "charter.tool.effect": call.effect,
    }
    if call.version is not None:
        attrs["charter.tool.version"] = call.version
    if call.idempotency_key is not None:
        attrs["charter.idempotency_key"] = call.idempotency_key
    if call.approval_id is not None:
        attrs["charter.approval.id"] = call.approval_id
    decision = call.decision
    if decision is not None:
        attrs["charter.policy.outcome"] = decision.outcome
        attrs["charter.policy.rule_ids"] = decision.rule_ids
        attrs["charter.policy.hash"] = decision.policy_hash
        attrs["charter.policy.rewritten"] = decision.rewritten
    return attrs


def _tool_end_attrs(ended: ToolEnded) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "charter.tool.attempts": ended.attempts,
        "charter.retries": max(0, ended.attempts - 1),
        "charter.tool.outcome": ended.outcome,
        "charter.cost_usd": ended.cost_usd,
    }
    if ended.error_code is not None:
        attrs["error.type"] = ended.error_code
    return attrs
