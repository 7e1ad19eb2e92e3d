"""``charter policy``: ask the policy engine the operator's questions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from charter.agents import find_agent_files, load_agent
from charter.cli._options import debug_option, json_option
from charter.cli._render import echo_json, table
from charter.errors import ConfigError
from charter.governance import PolicyCase, check_policy_cases, decide_case, load_policy_cases
from charter.policy import WhoCanPath, parse_selector, who_can


@click.group("policy")
def policy_group() -> None:
    """Check and test the policy that governs an agent."""


@policy_group.command("check")
@click.argument("agent_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tool", "tool_name", required=True, help="The tool the call is for.")
@click.option("--args", "args_json", default="{}", show_default=True, help="Arguments as JSON.")
@click.option("--tenant", default="default", show_default=True)
@click.option("--principal", default="anonymous", show_default=True)
@click.option("--role", "roles", multiple=True, help="A role of the principal (repeatable).")
@click.option("--environment", default="dev", show_default=True)
@click.option("--principal-tenant", default=None, help="The tenant the principal belongs to.")
@click.option("--kill-switch", is_flag=True, help="As if a kill switch were on.")
@click.option(
    "--untrusted-args/--trusted-args",
    default=None,
    help="As if the arguments came from untrusted text (a web page, a ticket) or not.",
)
@click.option(
    "--untrusted-context/--trusted-context",
    default=None,
    help="As if the run had (or had not) read untrusted text.",
)
@json_option
@debug_option
def policy_check(
    agent_file: Path, tool_name: str, args_json: str, tenant: str, principal: str,
    roles: tuple[str, ...], environment: str, principal_tenant: str | None, kill_switch: bool,
    untrusted_args: bool | None, untrusted_context: bool | None, as_json: bool, debug: bool,
) -> None:  # fmt: skip
    """The decision on one call, and which rules made it.

    A single call has no run history: provenance defaults to "the model wrote every value";
    the --untrusted-* flags ask what if it came from untrusted text.
    """
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--args is not valid JSON: {exc}") from exc
    case = PolicyCase(tool=tool_name, args=args, tenant=tenant, principal=principal,
                      roles=list(roles), environment=environment, expect="?",
                      principal_tenant=principal_tenant, kill_switch=kill_switch,
                      untrusted_in_args=untrusted_args,
                      untrusted_in_context=untrusted_context)  # fmt: skip
    decision = decide_case(load_agent(agent_file), case)
    if as_json:
        echo_json(decision.to_dict())
        return
    click.echo(f"{decision.outcome}: {decision.reason}")
    click.echo(f"rules: {', '.join(decision.rule_ids) or '(none matched: default deny)'}")
    if decision.rewritten:
        click.echo(f"arguments after rewrite: {json.dumps(dict(decision.arguments))}")
    if decision.approval is not None:
        a = decision.approval
        click.echo(f"approval: tier {a.tier}, role {a.role}, expires in {a.expires_in_s}s")
    click.echo(f"policy hash: {decision.policy_hash}")


@policy_group.command("test")
@click.argument("agent_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("cases_file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@debug_option
def policy_test(agent_file: Path, cases_file: Path, as_json: bool, debug: bool) -> None:
    """Run a table of expected decisions; exit 1 on any mismatch (for CI).

    CASES_FILE is a YAML list of {tool, args, tenant, principal, roles, environment,
    expect: allow|deny|require_approval, rule: the deciding rule id (optional)}, and
    optionally principal_tenant, kill_switch, and the what-if provenance untrusted_in_args,
    untrusted_in_context, destination_sources ({argument path: [source kinds]}).
    """
    agent = load_agent(agent_file)
    results = [r.to_dict() for r in check_policy_cases(agent, load_policy_cases(cases_file))]
    failed = [r for r in results if not r["ok"]]
    if as_json:
        echo_json({"cases": len(results), "failed": len(failed), "results": results})
    else:
        for r in results:
            mark = "ok  " if r["ok"] else "FAIL"
            click.echo(f"{mark} {r['case']}: expected {r['expected']}"
                       f"{' by ' + r['rule'] if r['rule'] else ''}, got {r['got']}"
                       f" by {r['by'] or 'default'}")  # fmt: skip
        click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


@policy_group.command("who-can")
@click.argument("selector", metavar="TOOL_OR_EFFECT")
@click.option("--tenant", default=None, help="Keep only the paths open to this tenant.")
@click.option("--environment", default=None, help="Keep only the paths open in this environment.")
@click.option(
    "--agent", "agent_files", multiple=True,
    type=click.Path(dir_okay=False, path_type=Path), help="An agent file (repeatable).",
)  # fmt: skip
@click.option(
    "--agents-dir", "agent_dirs", multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Every *.yaml / *.yml agent file under this directory (repeatable).",
)  # fmt: skip
@json_option
@debug_option
def policy_who_can(
    selector: str, tenant: str | None, environment: str | None, agent_files: tuple[Path, ...],
    agent_dirs: tuple[Path, ...], as_json: bool, debug: bool,
) -> None:  # fmt: skip
    """Which agents could execute a tool, for which tenants and roles, and under which
    conditions: every path through each agent's policy to an allow or an approval.

    TOOL_OR_EFFECT is a tool name (refund, or tool:NAME), an effect (read, write, control),
    a risk (risk:critical; risk:high+ for high or above), or several joined by commas, all of
    which must hold (write,risk:critical). One line per path: the rule that allows it (or
    requires approval, with the tier and the approving role), the conditions that must hold,
    the earlier rules that decide first when their conditions hold, and the rewrites that may
    change the call first. An agent without a policy runs all its tools ("no policy:
    unrestricted"). Exit 0 whatever the answer, "nobody" included.
    """
    sel = parse_selector(selector)
    if not agent_files and not agent_dirs:
        raise ConfigError("no agents to ask about", hint="give --agent FILE or --agents-dir DIR")
    files = find_agent_files(agent_files, agent_dirs)
    agents = [load_agent(f) for f in files]
    answer = who_can(sel, agents, tenant=tenant, environment=environment)
    if as_json:
        echo_json({**answer.to_dict(), "agent_files": [str(f) for f in files]})
        return
    scope = "".join(
        f", {k} {v}" for k, v in (("tenant", tenant), ("environment", environment)) if v
    )
    if answer.nobody:
        can = "can execute" if answer.blocked else "has a tool matching"
        click.echo(f"nobody: none of {len(agents)} agent(s) {can} {selector}{scope}")
    else:
        table(["agent", "tool", "outcome", "rule", "when", "decided first by", "rewrites"],
              [_path_row(p) for p in answer.paths])  # fmt: skip
    for b in answer.blocked:
        click.echo(f"no path: {b.agent} v{b.agent_version} {b.tool}: {b.reason}")


def _path_row(path: WhoCanPath) -> tuple[str, ...]:
    outcome = path.outcome if path.approval is None else path.approval.text()
    return (
        f"{path.agent} v{path.agent_version} ({path.trust_tier})",
        f"{path.tool} ({path.effect}, {path.risk})",
        outcome,
        path.rule_id or path.note or "",
        "; ".join(path.conditions) or "always",
        "; ".join(r.text(brief=True) for r in path.pre_empted_by) or "-",
        "; ".join(r.text() for r in path.rewrites) or "-",
    )
