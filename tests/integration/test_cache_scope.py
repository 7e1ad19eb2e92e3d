"""Caches never cross a principal: the result cache keys on the whole caller unless a tool
declares ``cache_scope="tenant"``, and the model response cache is per tenant. Through the
real runtime on a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from charter import Agent, ModelSpec, Runtime, ToolContext, tool
from charter.events import Event, ModelResponded, ToolCallSucceeded
from charter.models import CachePolicy
from charter.store import open_store

T = TypeVar("T")
SALARIES = {"ann": 9000, "bob": 5000}
ASKED: list[str] = []
ASK = {"tool_calls": [{"name": "my_salary", "arguments": {}}]}


@tool(cacheable=True, cache_ttl_s=600)
def my_salary(ctx: ToolContext) -> dict[str, Any]:
    """The caller's own salary."""
    ASKED.append(ctx.principal)
    return {"who": ctx.principal, "salary": SALARIES.get(ctx.principal, 0)}


@tool(cacheable=True, cache_ttl_s=600, cache_scope="tenant")
def holidays(ctx: ToolContext) -> list[str]:
    """The tenant's public holidays: the same for everyone in it."""
    ASKED.append(ctx.principal)
    return ["2026-12-25"]


def _agent(tool_name: str, *, cache: CachePolicy) -> Agent:
    call = {"tool_calls": [{"name": tool_name, "arguments": {}}]}
    return Agent(
        name="hr",
        instructions="Answer.",
        model=ModelSpec(provider="scripted", name="s", script=[call, {"content": "done"}]),
        tools=[my_salary, holidays],
        cache=cache,
    )


def _in_runtime(
    url: str, scenario: Callable[[Runtime], Awaitable[T]], *, environment: str = "dev"
) -> T:
    async def main() -> T:
        async with Runtime(store=open_store(url), environment=environment) as rt:
            return await scenario(rt)

    return asyncio.run(main())


def _of(events: list[Event], kind: type[T]) -> list[T]:
    return [e.body for e in events if isinstance(e.body, kind)]


async def _results(rt: Runtime, agent: Agent, **who: Any) -> list[ToolCallSucceeded]:
    record = await rt.run(agent, "what is my salary?", tenant="acme", **who)
    return _of(await rt.events(record.run_id), ToolCallSucceeded)


def test_a_cached_read_is_never_served_to_another_principal(store_url: str) -> None:
    ASKED.clear()
    agent = _agent("my_salary", cache=CachePolicy(models=False, tools=True))

    async def scenario(rt: Runtime) -> list[list[ToolCallSucceeded]]:
        return [
            await _results(rt, agent, principal="ann"),
            await _results(rt, agent, principal="bob"),
            await _results(rt, agent, principal="bob", roles=["hr"]),
            await _results(rt, agent, principal="ann"),
        ]

    ann, bob, bob_hr, ann_again = _in_runtime(store_url, scenario)
    assert [r.output for r in bob] == [{"who": "bob", "salary": 5000}]
    assert [r.cached for r in ann + bob + bob_hr + ann_again] == [False, False, False, True]
    assert ann_again[0].output == {"who": "ann", "salary": 9000}
    assert ASKED == ["ann", "bob", "bob"]


def test_another_environment_does_not_share_cached_results(db_url: str) -> None:
    ASKED.clear()
    agent = _agent("my_salary", cache=CachePolicy(models=False, tools=True))

    async def scenario(rt: Runtime) -> list[ToolCallSucceeded]:
        return await _results(rt, agent, principal="ann")

    first = _in_runtime(db_url, scenario, environment="staging")
    second = _in_runtime(db_url, scenario, environment="prod")
    assert [r.cached for r in first + second] == [False, False]


def test_a_tool_may_declare_tenant_scope_and_says_so(db_url: str) -> None:
    ASKED.clear()
    agent = _agent("holidays", cache=CachePolicy(models=False, tools=True))

    async def scenario(rt: Runtime) -> list[list[ToolCallSucceeded]]:
        return [
            await _results(rt, agent, principal="ann"),
            await _results(rt, agent, principal="bob"),
        ]

    ann, bob = _in_runtime(db_url, scenario)
    assert [r.cached for r in ann + bob] == [False, True]
    assert ASKED == ["ann"]
    assert holidays.describe()["cache_scope"] == "tenant"
    assert my_salary.describe()["cache_scope"] == "caller"


def test_the_model_response_cache_is_per_tenant(store_url: str) -> None:
    agent = _agent("holidays", cache=CachePolicy(models=True, tools=False))

    async def scenario(rt: Runtime) -> list[list[ModelResponded]]:
        found = []
        for tenant in ("acme", "globex", "acme"):
            record = await rt.run(agent, "holidays?", tenant=tenant, principal="ann")
            found.append(_of(await rt.events(record.run_id), ModelResponded))
        return found

    acme, globex, acme_again = _in_runtime(store_url, scenario)
    assert [r.cached for r in acme] == [False, False]
    assert [r.cached for r in globex] == [False, False]
    assert [r.cached for r in acme_again] == [True, True]
