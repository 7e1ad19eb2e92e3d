"""Agent definitions: YAML files, their errors, and the stored spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import tools as helper_tools

from charter import Agent, Budgets, ConfigError, ModelSpec, ScriptedModel, load_agent, tool
from charter.errors import ToolImportError
from charter.models import build_model
from charter.tools import ask_principal

SCRIPT = [{"tool_calls": [{"name": "lookup", "arguments": {"order_id": "A1"}}]}, {"content": "ok"}]

VALID = """\
agent:
  name: support
  version: "3"
  instructions: prompts/support.md
  model: {provider: scripted, name: s1, script: scripts/responses.json}
  tools: ["tests.helpers.tools:lookup", "tests.helpers.tools:refund", "charter.tools:ask_principal"]
  budgets: {max_steps: 7, max_tool_calls: 9, max_tokens_total: 1200, timeout_s: 60}
  max_context_messages: 12
"""


def _write_agent(tmp_path: Path, text: str) -> Path:
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "prompts" / "support.md").write_text("You help customers.\n")
    (tmp_path / "scripts").mkdir(exist_ok=True)
    (tmp_path / "scripts" / "responses.json").write_text(json.dumps(SCRIPT))
    path = tmp_path / "agents" / "support.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _valid(tmp_path: Path) -> str:
    # The agent file lives in agents/; paths in it are relative to that folder.
    return VALID.replace("prompts/", "../prompts/").replace("scripts/", "../scripts/")


def test_load_agent_reads_a_valid_file(tmp_path: Path) -> None:
    agent = load_agent(_write_agent(tmp_path, _valid(tmp_path)))

    assert agent.name == "support"
    assert agent.version == "3"
    assert agent.instructions == "You help customers.\n"
    assert agent.model.provider == "scripted"
    assert agent.model.name == "s1"
    assert agent.model.script == SCRIPT  # the JSON file, loaded inline
    assert list(agent.tools) == [helper_tools.lookup, helper_tools.refund, ask_principal]
    assert agent.budgets == Budgets(
        max_steps=7, max_tool_calls=9, max_tokens_total=1200, timeout_s=60
    )
    assert agent.max_context_messages == 12
    assert isinstance(build_model(agent.model), ScriptedModel)


def test_an_agent_file_with_the_deprecated_timeout_seconds_still_loads(tmp_path: Path) -> None:
    current = load_agent(_write_agent(tmp_path, _valid(tmp_path)))
    old_text = _valid(tmp_path).replace("timeout_s: 60", "timeout_seconds: 60")
    old = load_agent(_write_agent(tmp_path, old_text))

    assert old.budgets.timeout_s == 60
    budgets = old.spec()["budgets"]
    assert budgets["timeout_s"] == 60 and "timeout_seconds" not in budgets
    # The old spelling names the same agent: one canonical spec, so one agent hash.
    assert old.spec_json() == current.spec_json()
    assert old.agent_hash == current.agent_hash


def test_a_spec_an_older_charter_stored_with_timeout_seconds_rebuilds_the_agent() -> None:
    spec = _agent(budgets=Budgets(timeout_s=30)).spec()
    budgets = dict(spec["budgets"])
    budgets["timeout_seconds"] = budgets.pop("timeout_s")
    rebuilt = Agent.from_spec({**spec, "budgets": budgets})
    assert rebuilt.budgets.timeout_s == 30
    assert rebuilt.agent_hash == _agent(budgets=Budgets(timeout_s=30)).agent_hash


def test_an_agent_file_giving_both_spellings_of_the_time_budget_is_refused(
    tmp_path: Path,
) -> None:
    both = _valid(tmp_path).replace("timeout_s: 60", "timeout_s: 60, timeout_seconds: 60")
    with pytest.raises(ConfigError, match="give timeout_s only"):
        load_agent(_write_agent(tmp_path, both))


def test_instructions_path_is_relative_to_the_yaml_file_not_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_agent(tmp_path, _valid(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_agent(path).instructions == "You help customers.\n"


def test_an_unknown_field_is_named(tmp_path: Path) -> None:
    text = _valid(tmp_path).replace("  max_context_messages: 12\n", "  temperture: 0.2\n")
    with pytest.raises(ConfigError) as info:
        load_agent(_write_agent(tmp_path, text))
    assert "unknown field 'agent.temperture'" in info.value.message
    assert str(tmp_path / "agents" / "support.yaml") in info.value.message


def test_an_unknown_budget_is_named(tmp_path: Path) -> None:
    text = _valid(tmp_path).replace("max_steps: 7", "max_stepz: 7")
    with pytest.raises(ConfigError, match=r"unknown field 'agent\.budgets\.max_stepz'"):
        load_agent(_write_agent(tmp_path, text))


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    text = _valid(tmp_path).replace("  name: support\n", "")
    with pytest.raises(ConfigError) as info:
        load_agent(_write_agent(tmp_path, text))
    assert "missing field 'agent.name'" in info.value.message


def test_a_bad_tool_import_path_is_a_tool_import_error_naming_the_file(tmp_path: Path) -> None:
    text = _valid(tmp_path).replace("tests.helpers.tools:refund", "tests.helpers.tools:refnud")
    path = _write_agent(tmp_path, text)
    with pytest.raises(ToolImportError) as info:
        load_agent(path)
    assert info.value.message.startswith(f"{path}: ")
    assert "'refnud'" in info.value.message


def test_a_missing_instructions_file_is_a_config_error(tmp_path: Path) -> None:
    text = _valid(tmp_path).replace("support.md", "missing.md")
    with pytest.raises(ConfigError) as info:
        load_agent(_write_agent(tmp_path, text))
    assert "instructions file '../prompts/missing.md' cannot be read" in info.value.message


def test_a_missing_script_file_is_a_config_error(tmp_path: Path) -> None:
    text = _valid(tmp_path).replace("responses.json", "gone.json")
    with pytest.raises(ConfigError, match=r"model\.script file"):
        load_agent(_write_agent(tmp_path, text))


def test_a_script_file_that_is_not_json_is_a_config_error(tmp_path: Path) -> None:
    path = _write_agent(tmp_path, _valid(tmp_path))
    (tmp_path / "scripts" / "responses.json").write_text("[{not json")
    with pytest.raises(ConfigError, match=r"model\.script is not valid JSON"):
        load_agent(path)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = _write_agent(tmp_path, "agent:\n  name: [unclosed\n  version: 1\n")
    with pytest.raises(ConfigError) as info:
        load_agent(path)
    assert "not valid YAML" in info.value.message


def test_a_missing_agent_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such agent file"):
        load_agent(tmp_path / "nope.yaml")


def test_an_unknown_provider_is_a_config_error(tmp_path: Path) -> None:
    text = _valid(tmp_path).replace("provider: scripted", "provider: no-such-provider")
    with pytest.raises(ConfigError) as info:
        load_agent(_write_agent(tmp_path, text))
    assert "agent.model.provider" in info.value.message
    assert "'scripted', 'openai', 'anthropic' or 'local'" in info.value.message


def test_an_empty_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_agent(_write_agent(tmp_path, ""))


# -- spec -------------------------------------------------------------------------------------


def _agent(**changes: object) -> Agent:
    fields: dict[str, object] = {
        "name": "support",
        "version": "2",
        "instructions": "Be kind.",
        "model": ModelSpec(provider="scripted", script=SCRIPT),
        "tools": [helper_tools.lookup, helper_tools.refund],
        "budgets": Budgets(max_steps=5),
    }
    fields.update(changes)
    return Agent(**fields)  # type: ignore[arg-type]


def test_spec_round_trips_through_from_spec() -> None:
    agent = _agent()
    spec = json.loads(agent.spec_json())
    rebuilt = Agent.from_spec(spec)
    assert rebuilt.spec() == agent.spec()
    assert list(rebuilt.tools) == list(agent.tools)
    assert rebuilt.budgets == agent.budgets
    assert spec["tools"] == ["tests.helpers.tools:lookup", "tests.helpers.tools:refund"]


def test_agent_hash_is_stable_and_changes_with_the_definition() -> None:
    assert _agent().agent_hash == _agent().agent_hash
    assert Agent.from_spec(_agent().spec()).agent_hash == _agent().agent_hash
    assert len(_agent().agent_hash) == 64
    assert _agent(instructions="Be curt.").agent_hash != _agent().agent_hash
    assert _agent(budgets=Budgets(max_steps=6)).agent_hash != _agent().agent_hash
    assert _agent(tools=[helper_tools.lookup]).agent_hash != _agent().agent_hash


def test_an_agent_refuses_two_tools_of_one_name_and_a_tiny_context() -> None:
    impostor = tool(name="lookup")(helper_tools.not_a_tool)
    with pytest.raises(ConfigError, match="'lookup'"):
        _agent(tools=[helper_tools.lookup, impostor])
    with pytest.raises(ConfigError, match="max_context_messages"):
        _agent(max_context_messages=1)


@pytest.mark.parametrize("budgets", [{"max_steps": 0}, {"timeout_s": -1}])
def test_budgets_must_be_positive(budgets: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Budgets(**budgets)  # type: ignore[arg-type]
