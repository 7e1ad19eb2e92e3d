"""`Runtime.operations`: the operator's calls on a database, from Python, on real SQLite files
(the CLI renders the same calls; tests/integration/test_cli*.py pin its output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter import Agent, ModelSpec, Runtime, run_sync
from charter.errors import ConfigError, StoreError
from charter.retention import RetentionPolicy

AGENT = Agent(
    name="echo",
    version="1",
    instructions="Say done.",
    model=ModelSpec(provider="scripted", name="s", script=[{"content": "done"}]),
)


def test_status_counts_runs_and_says_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"

    async def main() -> None:
        async with Runtime.open(url) as rt:
            await rt.run(AGENT, "one")
            await rt.start(AGENT, "two")
            status = await rt.operations.status()
            assert status.runs == {"succeeded": 1, "queued": 1}
            assert status.schema_version == status.latest_schema_version
            assert status.url == url and status.workers == 0
            assert status.to_dict()["runs"] == {"succeeded": 1, "queued": 1}

    run_sync(main())


def test_a_read_only_runtime_never_creates_the_database(tmp_path: Path) -> None:
    async def main() -> None:
        async with Runtime.open(f"sqlite:///{tmp_path / 'none.db'}", read_only=True) as rt:
            await rt.operations.status()

    with pytest.raises(StoreError):
        run_sync(main())
    assert list(tmp_path.iterdir()) == []


def test_copy_to_reports_progress_and_copies_every_run(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    heard: list[tuple[int, int]] = []

    async def main() -> None:
        async with Runtime.open(source) as rt:
            for text in ("one", "two", "three"):
                await rt.run(AGENT, text)
        async with Runtime.open(source, read_only=True) as rt:
            report = await rt.operations.copy_to(target, progress=lambda *p: heard.append(p))
            assert (report.runs, report.skipped) == (3, 0)
        async with Runtime.open(target, read_only=True) as copy:
            assert (await copy.operations.status()).runs == {"succeeded": 3}
            assert await copy.verify() == []

    run_sync(main())
    assert heard == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_switches_and_roles_return_what_holds_afterwards(tmp_path: Path) -> None:
    async def main() -> None:
        async with Runtime.open(f"sqlite:///{tmp_path / 'a.db'}") as rt:
            ops = rt.operations
            on = await ops.set_kill_switch(tenant="acme", on=True, reason="incident", actor="ann")
            assert [(s.tenant, s.agent, s.reason) for s in on] == [("acme", "*", "incident")]
            assert await ops.set_kill_switch(tenant="acme", on=False, actor="ann") == []
            grants = await ops.set_role(principal="bob", role="lead", tenant="acme", on=True)
            assert [(g.role, g.tenant) for g in grants] == [("lead", "acme")]
            assert [g.principal for g in await ops.roles()] == [grants[0].principal]
            kinds = [r.kind for r in await rt.audit_log(limit=3)]
            assert kinds == ["killswitch_on", "killswitch_off", "role_granted"]

    run_sync(main())


def test_ttl_overrides_sit_on_top_of_the_policy() -> None:
    base = RetentionPolicy.from_dict({"retention": {"default": {"prompts": "7d"}}})
    policy = base.override(["prompts=1d", "acme:tool_payloads=12h"])
    assert policy.default == {"prompts": 86400.0}
    assert policy.tenants == {"acme": {"tool_payloads": 43200.0}}
    assert base.default == {"prompts": 7 * 86400.0}  # the base policy is left as it was
    assert RetentionPolicy().empty and not policy.empty
    with pytest.raises(ConfigError, match=r"--ttl 'prompts': write KIND=TTL"):
        base.override(["prompts"])
