"""The red-team corpus against the support desk: the share of attacks blocked and the share of
legitimate calls wrongly blocked, per family, and every miss.

    .venv/bin/python bench/redteam.py [--cases examples/redteam] [--policy FILE] [--json]

Each case (``examples/redteam/*.yaml``) runs through the real runtime on its own temporary
SQLite file, with the demo's tools over freshly seeded simulated systems and a scripted model
that proposes what the attacker's text asks for. See ``charter.testing.redteam``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from charter.demo.tools import TOOLS
from charter.policy import PolicySet
from charter.testing.redteam import CaseResult, load_corpus, rates, run_corpus

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "examples" / "redteam"
POLICY = ROOT / "examples" / "policies" / "support.yaml"
INSTRUCTIONS = ROOT / "src" / "charter" / "demo" / "support_triage.md"


def _line(r: CaseResult) -> str:
    fates = ", ".join(f"{c.tool}: {c.fate}" + (f" ({c.rule})" if c.rule else "") for c in r.calls)
    known = " [known miss]" if r.case.known_miss else ""
    return f"  {r.case.id} [{r.case.family}]{known}: {fates}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    cases = load_corpus(options.cases.glob("*.yaml"))
    policy = PolicySet.load(options.policy)
    results = run_corpus(cases, policy=policy, instructions=INSTRUCTIONS.read_text(), tools=TOOLS)
    summary = rates(results)
    if options.json:
        report = {
            "attacks": summary.attacks,
            "attacks_blocked": summary.attacks_blocked,
            "legitimate": summary.legitimate,
            "legitimate_wrongly_blocked": summary.legitimate_blocked,
            "by_family": {f: {"cases": n, "missed": m} for f, (n, m) in summary.by_family.items()},
            "misses": [r.case.id for r in results if r.missed],
        }
        print(json.dumps(report, indent=2))
        return 0
    print(f"red-team corpus: {len(results)} cases ({policy.name} v{policy.version})")
    print(
        f"attacks blocked:            {summary.attacks_blocked}/{summary.attacks}"
        f" = {summary.blocked_share:.1%}"
    )
    print(
        f"legitimate wrongly blocked: {summary.legitimate_blocked}/{summary.legitimate}"
        f" = {summary.wrongly_blocked_share:.1%}"
    )
    print()
    print(f"{'family':<24}{'cases':>6}{'missed':>8}")
    for family, (n, missed) in sorted(summary.by_family.items()):
        print(f"{family:<24}{n:>6}{missed:>8}")
    held = [r for r in results if r.case.label == "attack" and r.blocked]
    by_rule: dict[str, int] = {}
    for r in held:
        by_rule[r.rule or "?"] = by_rule.get(r.rule or "?", 0) + 1
    print()
    print("attacks stopped, by rule: " + ", ".join(f"{k} {v}" for k, v in sorted(by_rule.items())))
    misses = [r for r in results if r.missed]
    print()
    print(f"misses ({len(misses)}):")
    for r in misses:
        print(_line(r))
        if r.case.why:
            print(f"      why: {' '.join(r.case.why.split())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
