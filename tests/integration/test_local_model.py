"""The local provider with the real model file (``scripts/get-local-model``, run by ``make test``).

The real-model checks are about structure, never wording: the model's every proposal names an
offered tool with arguments its schema accepts (the grammar forces that) or the runtime fed a
structured rejection back; the model events record the provider and the model; the chain
verifies. The error tests use small files of their own and load nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from tests.helpers import tools as helper_tools

from charter import Agent, Budgets, ModelSpec, Runtime
from charter.errors import ConfigError, ModelError
from charter.events import (
    Event,
    ModelCallFailed,
    ModelResponded,
    RunFinished,
    ToolCallProposed,
    ToolCallRejected,
)
from charter.models import ModelRequest, build_model
from charter.models._local import LocalModel
from charter.models._local_engine import PINNED_SHA256

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"
TOOLS = (helper_tools.lookup, helper_tools.refund)


def _agent(**model: object) -> Agent:
    spec = {"provider": "local", "name": MODEL, "max_output_tokens": 64, **model}
    return Agent(
        name="local_orders",
        instructions="You help customers with their orders. Look an order up before acting.",
        model=ModelSpec.model_validate(spec),
        tools=list(TOOLS),
        budgets=Budgets(max_steps=3, max_tool_calls=3),
    )


def _run(url: str, agent: Agent, text: str) -> tuple[str, list[Event], list[object]]:
    async def main() -> tuple[str, list[Event], list[object]]:
        async with Runtime.open(url) as rt:
            record = await rt.run(agent, text)
            return record.status, await rt.events(record.run_id), list(await rt.verify())

    return asyncio.run(main())


def test_a_real_model_run_calls_offered_tools_with_valid_arguments(db_url: str) -> None:
    status, events, breaks = _run(db_url, _agent(), "Where is my order A17? It has not arrived.")

    assert breaks == []
    assert status in {"succeeded", "escalated"}  # escalated: the 3-step budget ran out
    assert isinstance(events[-1].body, RunFinished)
    responses = [e.body for e in events if isinstance(e.body, ModelResponded)]
    assert responses, "the model answered at least once"
    for r in responses:
        assert (r.provider, r.model) == ("local", MODEL)
        assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
        assert bool(r.tool_calls) != (r.content is not None)  # a call or an answer
    rejected = {e.body.call_id: e.body for e in events if isinstance(e.body, ToolCallRejected)}
    by_name = {t.name: t for t in TOOLS}
    proposals = [e.body for e in events if isinstance(e.body, ToolCallProposed)]
    for p in proposals:
        if p.call_id in rejected:
            assert rejected[p.call_id].error.code  # a structured error, fed back to the model
            continue
        assert p.tool in by_name
        assert p.arguments is not None
        by_name[p.tool].validate(p.arguments)  # raises when the schema refuses them
    assert not any(isinstance(e.body, ModelCallFailed) for e in events)


def test_a_truncated_answer_is_refused_counted_and_escalates(db_url: str) -> None:
    """Cut off at ``max_output_tokens``: ``model_truncated`` with the tokens it cost, asked
    again (the attempts and budgets bound it), then escalated, never a final answer."""
    status, events, problems = _run(
        db_url, _agent(max_output_tokens=2, max_attempts=2), "Where is order A1?"
    )
    assert problems == []
    assert status == "escalated"
    (failed,) = [e.body for e in events if isinstance(e.body, ModelCallFailed)]
    assert (failed.error.code, failed.finish_reason) == ("model_truncated", "length")
    assert [(r.attempt, r.usage.output_tokens) for r in failed.rejected] == [(1, 2), (2, 2)]
    assert failed.usage.input_tokens > 0
    assert "cut off after 2 tokens" in failed.error.message


def test_a_missing_default_model_file_is_a_config_error_naming_the_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARTER_MODEL_DIR", str(tmp_path))

    with pytest.raises(ConfigError, match="does not exist") as caught:
        build_model(ModelSpec(provider="local", name=MODEL))

    assert "scripts/get-local-model" in str(caught.value)
    assert str(tmp_path / f"{MODEL}.gguf") in caught.value.message


def _fake_gguf(path: Path) -> Path:
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)
    return path


def test_a_model_file_that_fails_its_hash_is_refused(tmp_path: Path) -> None:
    path = _fake_gguf(tmp_path / "model.gguf")
    model = LocalModel(ModelSpec(provider="local", name="m", path=str(path), sha256="0" * 64))
    request = ModelRequest(run_id="r", step=0, messages=(), tools=())

    with pytest.raises(ModelError, match="fails its hash") as caught:
        asyncio.run(model.respond(request))

    assert caught.value.retryable is False
    assert hashlib.sha256(path.read_bytes()).hexdigest() in caught.value.message
    assert "scripts/get-local-model" in str(caught.value)


def test_the_pinned_model_in_the_cache_is_checked_against_its_pinned_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARTER_MODEL_DIR", str(tmp_path))
    _fake_gguf(tmp_path / f"{MODEL}.gguf")

    model = LocalModel(ModelSpec(provider="local", name=MODEL))

    assert model.sha256 == PINNED_SHA256[MODEL]
    with pytest.raises(ModelError, match="fails its hash"):
        model.load()


def test_a_run_whose_model_file_fails_its_hash_fails_cleanly(tmp_path: Path, db_url: str) -> None:
    path = _fake_gguf(tmp_path / "model.gguf")
    agent = _agent(path=str(path), sha256="0" * 64)

    status, events, breaks = _run(db_url, agent, "Where is my order A17?")

    assert breaks == []
    assert status == "failed"
    failed = [e.body for e in events if isinstance(e.body, ModelCallFailed)]
    assert [(f.provider, f.error.code, f.error.retryable) for f in failed] == [
        ("local", "model", False)
    ]
    assert "fails its hash" in failed[0].error.message
