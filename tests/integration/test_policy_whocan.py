"""`charter policy who-can`, run as a user would, over the example agent and policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers.cli import run_charter

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ["kb_search", "lookup_order", "fetch_url", "update_ticket", "update_customer",
         "refund", "send_email", "delete_customer"]  # fmt: skip


def _agent(path: Path, *, name: str, trust_tier: str = "standard") -> Path:
    refs = ", ".join(f'"tests.helpers.support_tools:{t}"' for t in TOOLS)
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "prompt.md").write_text("Help the customer.")
    path.write_text(
        f"agent:\n  name: {name}\n  version: '3'\n  instructions: prompt.md\n"
        f"  trust_tier: {trust_tier}\n  model: {{provider: scripted, script: []}}\n"
        f"  policy: ../policies/support.yaml\n"
        f'  tools: [{refs}, "charter.tools:ask_principal"]\n'
    )
    return path


def _setup(tmp_path: Path) -> Path:
    """The examples (agent without a policy, support policy) plus two governed agents."""
    # the agents and policies only: the eval suites name files outside examples/
    ignore = shutil.ignore_patterns("evals", "redteam")
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=ignore)
    _agent(tmp_path / "examples" / "agents" / "governed.yaml", name="support_governed")
    _agent(tmp_path / "examples" / "agents" / "boxed.yaml", name="boxed", trust_tier="sandbox")
    return tmp_path / "examples"


def test_who_can_refund_lists_each_path_and_the_unrestricted_example_agent(
    tmp_path: Path,
) -> None:
    examples = _setup(tmp_path)
    done = run_charter(tmp_path, "policy", "who-can", "refund", "--agents-dir", str(examples))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["AGENT", "TOOL", "OUTCOME", "RULE"]
    governed = [line for line in lines[1:] if line.startswith("support_governed")]
    assert [line.split("  ")[0] for line in governed] == ["support_governed v3 (standard)"] * 3
    assert ["refund-untrusted" in governed[0], "refund-small" in governed[1],
            "refund-medium" in governed[2]] == [True] * 3  # fmt: skip
    assert "role support; amount > 0 and <= 50" in governed[1]
    assert "approval by support_lead (tier manager, expires in 24h)" in governed[2]
    assert "kill-switch (deny if kill switch on)" in governed[1]
    assert "refund-large" not in governed[1]  # amount > 300 cannot pre-empt amount <= 50
    assert "refund-test-mode (rewrites test_mode=true, then re-checks" in governed[1]
    (example,) = [line for line in lines if line.startswith("support_triage v3")]
    assert "no policy: unrestricted" in example
    assert lines[-1] == (
        "no path: boxed v3 refund: always denied by rule 'sandboxed-agents-read-only'"
    )


def test_who_can_delete_critical_data_as_json(tmp_path: Path) -> None:
    examples = _setup(tmp_path)
    done = run_charter(tmp_path, "policy", "who-can", "write,risk:critical", "--json",
                       "--agent", str(examples / "agents" / "governed.yaml"),
                       "--agent", str(examples / "agents" / "boxed.yaml"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["nobody"] is False
    (path,) = answer["paths"]
    assert (path["agent"], path["tool"], path["rule"], path["outcome"]) == (
        "support_governed", "delete_customer", "critical-needs-admin", "require_approval"
    )  # fmt: skip
    assert path["approval"]["role"] == "support_admin"
    assert path["when"] == {"roles_any": ["support"]}
    assert [r["rule"] for r in path["pre_empted_by"]] == ["kill-switch", "foreign-tenant-writes"]
    reason = "always denied by rule 'sandboxed-agents-read-only'"
    assert answer["blocked"] == [
        {"agent": "boxed", "agent_version": "3", "tool": "delete_customer", "reason": reason}
    ]


def test_tenant_and_environment_filters_apply(tmp_path: Path) -> None:
    examples = _setup(tmp_path)
    agent = str(examples / "agents" / "governed.yaml")
    done = run_charter(tmp_path, "policy", "who-can", "refund", "--agent", agent,
                       "--tenant", "acme", "--environment", "prod", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["tenant"], answer["environment"]) == ("acme", "prod")
    assert [p["rule"] for p in answer["paths"]] == ["refund-untrusted", "refund-small",
                                                    "refund-medium"]  # fmt: skip
    assert all(p["rewrites"] == [] for p in answer["paths"])  # test mode is for staging, dev


def test_nobody_is_an_answer_with_exit_0(tmp_path: Path) -> None:
    examples = _setup(tmp_path)
    done = run_charter(tmp_path, "policy", "who-can", "refund", "--agent",
                       str(examples / "agents" / "boxed.yaml"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "nobody: none of 1 agent(s) can execute refund"
    none = run_charter(tmp_path, "policy", "who-can", "wire_money", "--agents-dir", str(examples))
    assert none.returncode == 0, none.stderr
    assert none.stdout == "nobody: none of 3 agent(s) has a tool matching wire_money\n"


def test_bad_input_is_a_one_line_error_with_exit_2(tmp_path: Path) -> None:
    examples = _setup(tmp_path)
    missing = run_charter(tmp_path, "policy", "who-can", "refund", "--agent", "nope.yaml")
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[0] == "error: nope.yaml: no such agent file"
    (examples / "policies" / "support.yaml").write_text("policy: {name: x, rules: []}\n")
    bad = run_charter(tmp_path, "policy", "who-can", "refund", "--agents-dir", str(examples))
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and "support.yaml" in bad.stderr
    selector = run_charter(tmp_path, "policy", "who-can", "risk:huge", "--agents-dir", "x")
    assert selector.returncode == 2
    assert selector.stderr.splitlines()[0] == "error: bad selector term 'risk:huge'"
    nothing = run_charter(tmp_path, "policy", "who-can", "refund")
    assert nothing.returncode == 2
    assert nothing.stderr.splitlines()[0] == "error: no agents to ask about"
