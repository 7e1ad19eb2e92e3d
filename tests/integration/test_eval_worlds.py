"""The world interface: a suite names the simulated outside world its cases run in (an entry
point or a dotted path); the world's grammar checks the cases' fixtures and expected end state
when the suite loads, and its own checks decide the verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.cli import run_charter

from charter.agents import load_agent
from charter.errors import ConfigError
from charter.evals import DEFAULT_WORLD, WorldKind, load_suite, resolve_world, run_suite
from charter.testing.systems import SupportDesk

ROOT = Path(__file__).resolve().parents[2]
DEMO_AGENT = ROOT / "src" / "charter" / "demo" / "agent.yaml"

SUITE = f"""\
suite:
  name: noted
  kind: regression
  world: "tests.helpers.worlds:Noted"
  agent: {DEMO_AGENT}
  cases:
    - id: howto
      input: "Ticket T-2001: my machine shows DESCALE. How do I descale it?"
      principal: "customer:C-101"
      state: {{note: written by the fixture}}
      expect:
        status: succeeded
        final_state: {{refunds: [], note: NOTE}}
"""


def write(where: Path, text: str = SUITE, note: str = "written by the fixture") -> Path:
    path = where / "suite.yaml"
    path.write_text(text.replace("NOTE", f'"{note}"'))
    return path


def test_the_default_world_is_the_support_desk_by_its_entry_point() -> None:
    kind: WorldKind = SupportDesk  # the support desk implements the interface (mypy checks)
    assert resolve_world(DEFAULT_WORLD) is kind
    assert load_suite(ROOT / "examples" / "evals" / "regression.yaml").suite.world == "support_desk"


def test_a_suite_runs_its_cases_in_the_world_it_names(tmp_path: Path) -> None:
    loaded = load_suite(write(tmp_path))
    report = run_suite(loaded, agent=load_agent(DEMO_AGENT), workdir=tmp_path / "runs")
    assert [c.passed for c in report.cases] == [True], report.cases[0].runs
    assert (tmp_path / "runs" / "howto-1" / "note.txt").read_text() == "written by the fixture"


def test_the_worlds_own_check_fails_a_case(tmp_path: Path) -> None:
    loaded = load_suite(write(tmp_path, note="something else"))
    report = run_suite(loaded, agent=load_agent(DEMO_AGENT), workdir=tmp_path / "runs")
    failures = report.cases[0].runs[0]["failures"]
    assert failures == ["the note says 'written by the fixture', expected 'something else'"]


def test_the_worlds_grammar_checks_fixtures_when_the_suite_loads(tmp_path: Path) -> None:
    suite = write(tmp_path, SUITE.replace("note: written by the fixture", "nope: 1"))
    with pytest.raises(ConfigError) as caught:
        load_suite(suite)
    assert sorted(caught.value.message.splitlines()) == [
        f"{suite}:10: case 'howto': missing field 'suite.cases.0.state.note'",
        f"{suite}:10: case 'howto': unknown field 'suite.cases.0.state.nope'",
    ]


def test_the_support_desk_refuses_a_field_it_does_not_know(tmp_path: Path) -> None:
    suite = write(tmp_path, SUITE.replace('  world: "tests.helpers.worlds:Noted"\n', ""))
    with pytest.raises(ConfigError) as caught:
        load_suite(suite)
    assert caught.value.message.splitlines() == [
        f"{suite}:9: case 'howto': unknown field 'suite.cases.0.state.note'",
        f"{suite}:12: case 'howto': unknown field 'suite.cases.0.expect.final_state.note'",
    ]


@pytest.mark.parametrize(
    ("world", "message"),
    [
        ("nowhere", "no eval world named 'nowhere' (entry points charter.eval_worlds:"),
        ("tests.helpers.nope:X", "world 'tests.helpers.nope:X': cannot import tests.helpers.nope"),
        ("tests.helpers.worlds:Nope", "world 'tests.helpers.worlds:Nope': tests.helpers.worlds"),
        (
            "tests.helpers.worlds:NOT_A_WORLD",
            "world 'tests.helpers.worlds:NOT_A_WORLD' is not an eval world: it lacks state_model",
        ),
    ],
)
def test_an_unknown_world_is_one_clear_error(tmp_path: Path, world: str, message: str) -> None:
    suite = write(tmp_path, SUITE.replace("tests.helpers.worlds:Noted", world))
    done = run_charter(tmp_path, "eval", str(suite))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {suite}: {message}")
    assert "Traceback" not in done.stderr
