"""OpenTelemetry spans of a real run (SQLite store, scripted model, real tools), read back
through the SDK's in-memory exporter; and the traceparent a tool is handed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import StatusCode

from charter import Agent, ModelSpec, Runtime, ToolContext, tool
from charter.policy import PolicySet
from charter.telemetry import Tracing, trace_id_for, traceparent
from charter.worker import WorkerOptions

SEEN: list[ToolContext] = []
_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> Iterator[None]:
    """One SDK provider for the process (OpenTelemetry allows setting it once)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    yield
    _EXPORTER.shutdown()  # later tests in this process export nowhere


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    SEEN.clear()
    yield _EXPORTER


@tool(effect="read")
def lookup(ctx: ToolContext, order_id: str) -> str:
    """Look an order up."""
    SEEN.append(ctx)
    return f"order {order_id}"


@tool(effect="write", cost_usd=0.01)
def refund(ctx: ToolContext, order_id: str, amount: float) -> str:
    """Refund an order."""
    SEEN.append(ctx)
    return "refunded"


POLICY = {
    "policy": {
        "name": "p",
        "rules": [
            {"id": "reads", "when": {"effect": "read"}, "then": "allow"},
            {"id": "small-refunds", "when": {"tool": "refund"}, "then": "allow"},
        ],
    }
}


def _run(url: str) -> str:
    script = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "7"}}]},
        {"tool_calls": [{"name": "refund", "arguments": {"order_id": "7", "amount": 5}}]},
        {"content": "done"},
    ]
    agent = Agent(
        name="refunder",
        version="2",
        instructions="Refund when asked.",
        model=ModelSpec(
            provider="scripted", script=script, input_usd_per_mtok=1.0, output_usd_per_mtok=2.0
        ),
        tools=[lookup, refund],
        policy=PolicySet.from_dict(POLICY),
    )

    async def main() -> str:
        async with Runtime.open(url) as rt:
            run = await rt.run(agent, "refund order 7", tenant="acme")
            assert run.status == "succeeded"
            return run.run_id

    return asyncio.run(main())


def _named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_run_is_one_trace_of_agent_step_chat_and_tool_spans(
    db_url: str, spans: InMemorySpanExporter
) -> None:
    run_id = _run(db_url)
    finished = spans.get_finished_spans()
    [agent] = _named(finished, "invoke_agent")
    steps = _named(finished, "charter.step")
    chats = _named(finished, "chat ")
    tools = _named(finished, "execute_tool ")
    assert (len(steps), len(chats), len(tools)) == (3, 3, 2)
    trace_id = int(trace_id_for(run_id), 16)
    assert {s.context.trace_id for s in finished if s.context} == {trace_id}
    assert agent.name == "invoke_agent refunder"
    assert agent.parent is not None and agent.parent.is_remote  # the run's virtual root
    assert agent.context is not None
    for step in steps:
        assert step.parent is not None and step.parent.span_id == agent.context.span_id
    step_ids = {s.context.span_id for s in steps if s.context}
    for child in chats + tools:
        assert child.parent is not None and child.parent.span_id in step_ids


def test_spans_carry_the_genai_and_charter_attributes(
    db_url: str, spans: InMemorySpanExporter
) -> None:
    run_id = _run(db_url)
    finished = spans.get_finished_spans()
    [agent] = _named(finished, "invoke_agent")
    a = _attrs(agent)
    assert a["gen_ai.operation.name"] == "invoke_agent"
    assert (a["gen_ai.agent.name"], a["gen_ai.agent.version"]) == ("refunder", "2")
    assert a["gen_ai.conversation.id"] == run_id
    assert (a["charter.tenant"], a["charter.run.status"]) == ("acme", "succeeded")
    assert a["charter.cost_usd"] > 0

    chat = _attrs(_named(finished, "chat ")[0])
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.request.model"] == "scripted"
    assert chat["gen_ai.usage.input_tokens"] > 0 and chat["gen_ai.usage.output_tokens"] > 0
    assert chat["charter.cost_usd"] > 0

    [read, write] = (_attrs(s) for s in _named(finished, "execute_tool "))
    assert read["gen_ai.operation.name"] == "execute_tool"
    assert (read["gen_ai.tool.name"], read["charter.tool.effect"]) == ("lookup", "read")
    assert read["gen_ai.tool.call.id"]
    assert "charter.idempotency_key" not in read  # reads have none
    assert (read["charter.policy.outcome"], read["charter.policy.rule_ids"]) == (
        "allow",
        ("reads",),
    )
    assert write["gen_ai.tool.name"] == "refund"
    assert write["charter.idempotency_key"].startswith(f"{run_id}:")
    assert write["charter.policy.rule_ids"] == ("small-refunds",)
    assert (write["charter.retries"], write["charter.cost_usd"]) == (0, 0.01)
    assert write["charter.tool.outcome"] == "succeeded"


def test_each_tool_gets_the_traceparent_of_its_own_span(
    db_url: str, spans: InMemorySpanExporter
) -> None:
    run_id = _run(db_url)
    tools = {s.name: s for s in _named(spans.get_finished_spans(), "execute_tool ")}
    by_tool = {"lookup": SEEN[0], "refund": SEEN[1]}
    for name, ctx in by_tool.items():
        span = tools[f"execute_tool {name}"]
        assert span.context is not None
        assert ctx.traceparent == (
            f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"
        )
        assert ctx.trace_id == trace_id_for(run_id)


def test_a_failed_model_call_marks_its_spans_and_leaves_no_span_current(
    db_url: str, spans: InMemorySpanExporter
) -> None:
    """The script runs out at step 2: that ``chat`` span ends in error with the error's code;
    every span is ended and, after the run, no span of it is current."""
    agent = Agent(
        name="short",
        instructions="Look up, then answer.",
        model=ModelSpec(
            provider="scripted",
            script=[{"tool_calls": [{"name": "lookup", "arguments": {"order_id": "1"}}]}],
        ),
        tools=[lookup],
    )

    async def main() -> str:
        async with Runtime.open(db_url) as rt:
            run = await rt.run(agent, "look order 1 up")
            assert run.status == "failed"
            return run.run_id

    run_id = asyncio.run(main())
    finished = spans.get_finished_spans()
    [agent_span] = _named(finished, "invoke_agent")
    assert _attrs(agent_span)["charter.run.status"] == "failed"
    chats = _named(finished, "chat ")
    assert [c.status.status_code for c in chats] == [StatusCode.UNSET, StatusCode.ERROR]
    assert (_attrs(chats[1])["error.type"], _attrs(chats[1])["charter.retries"]) == ("model", 0)
    assert [s.parent.span_id for s in chats if s.parent] == [
        s.context.span_id for s in _named(finished, "charter.step") if s.context
    ]
    assert {s.context.trace_id for s in finished if s.context} == {int(trace_id_for(run_id), 16)}
    assert not trace.get_current_span().get_span_context().is_valid


def test_without_a_span_the_traceparent_still_names_the_run() -> None:
    value = traceparent("run-1", "call-1")
    version, trace_hex, span_hex, flags = value.split("-")
    assert (version, trace_hex, flags) == ("00", trace_id_for("run-1"), "00")
    assert len(span_hex) == 16 and span_hex != "0" * 16
    assert traceparent("run-1", "call-1") == value  # stable: derived, not random


def test_refused_answers_put_their_tokens_on_the_failed_chat_span(
    db_url: str, spans: InMemorySpanExporter
) -> None:
    """Every attempt's tokens count, in traces too: an empty answer asked three times."""
    agent = Agent(
        name="mute",
        instructions="Answer the question.",
        model=ModelSpec(provider="scripted", script=[{"content": ""}], input_usd_per_mtok=1.0),
        tools=[lookup],
    )

    async def main() -> Any:
        async with Runtime.open(db_url) as rt:
            run = await rt.run(agent, "what is the status of order 1?")
            assert run.status == "escalated"
            return (await rt.get_run(run.run_id)).state

    state = asyncio.run(main())
    [chat] = _named(spans.get_finished_spans(), "chat ")
    attrs = _attrs(chat)
    assert (attrs["error.type"], attrs["charter.retries"]) == ("model_empty_answer", 2)
    tokens = attrs["gen_ai.usage.input_tokens"] + attrs["gen_ai.usage.output_tokens"]
    assert tokens == state["tokens"] > 0
    assert attrs["charter.cost_usd"] == pytest.approx(state["cost_usd"])


def _traced_by(db_url: str, provider: TracerProvider, runs: int) -> list[str]:
    """Start ``runs`` runs of the refunder and work them with tracing on ``provider``."""
    script = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "7"}}]},
        {"content": "done"},
    ]
    agent = Agent(
        name="sampled",
        instructions="Look up, then answer.",
        model=ModelSpec(provider="scripted", script=script),
        tools=[lookup],
    )

    async def main() -> list[str]:
        async with Runtime.open(db_url) as rt:
            ids = [await rt.start(agent, f"look order {i} up") for i in range(runs)]
            options = WorkerOptions(observer=Tracing(tracer_provider=provider))
            await rt.worker(options).run(until_idle=True)
            assert {(await rt.get_run(i)).status for i in ids} == {"succeeded"}
            return ids

    return asyncio.run(main())


def test_a_run_the_sampler_leaves_out_makes_no_span_and_its_tools_get_the_derived_traceparent(
    db_url: str,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    [run_id] = _traced_by(db_url, provider, 1)
    assert exporter.get_finished_spans() == ()
    [ctx] = SEEN
    assert ctx.traceparent == traceparent(run_id, ctx.call_id)  # flags 00, span id derived
    assert ctx.traceparent.endswith("-00")
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_ratio_sampler_traces_whole_runs_chosen_by_their_trace_id(db_url: str) -> None:
    """Each run is in or out as the ratio sampler decides on its derived trace id (the same
    decision in any process), and a run that is in has all its spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ids = _traced_by(db_url, provider, 8)
    bound = TraceIdRatioBased.get_bound_for_rate(0.5)
    expected = {
        i for i in ids if int(trace_id_for(i), 16) & TraceIdRatioBased.TRACE_ID_LIMIT < bound
    }
    spans = exporter.get_finished_spans()
    by_run: dict[int, list[str]] = {}
    for span in spans:
        assert span.context is not None
        by_run.setdefault(span.context.trace_id, []).append(span.name.split(" ")[0])
    assert set(by_run) == {int(trace_id_for(i), 16) for i in expected}
    for names in by_run.values():
        assert sorted(names) == sorted(
            ["invoke_agent", "charter.step", "chat", "execute_tool", "charter.step", "chat"]
        )
    traced = {c.traceparent.split("-")[1] for c in SEEN if c.traceparent.endswith("-01")}
    assert traced == {trace_id_for(i) for i in expected}


class _TenantSampler(Sampler):
    """Samples the runs of one tenant, by the attribute the run's root decision is given."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    def should_sample(self, *args: Any, attributes: Any = None, **kwargs: Any) -> SamplingResult:
        keep = (attributes or {}).get("charter.tenant") == self.tenant
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP)

    def get_description(self) -> str:
        return f"tenant {self.tenant}"


def test_the_sampler_decides_on_the_runs_agent_and_tenant(db_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(_TenantSampler("acme")))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    agent = Agent(
        name="sampled",
        instructions="Answer.",
        model=ModelSpec(provider="scripted", script=[{"content": "done"}]),
    )

    async def main() -> dict[str, str]:
        async with Runtime.open(db_url) as rt:
            ids = {t: await rt.start(agent, "hello", tenant=t) for t in ("acme", "globex")}
            await rt.worker(WorkerOptions(observer=Tracing(tracer_provider=provider))).run(
                until_idle=True
            )
            return ids

    ids = asyncio.run(main())
    traces = {s.context.trace_id for s in exporter.get_finished_spans() if s.context}
    assert traces == {int(trace_id_for(ids["acme"]), 16)}
