#!/usr/bin/env python
"""Latency of one policy decision, for the support desk's refund policy set.

Usage::

    python bench/policy_latency.py [--n 100000] [--pool 2000] [--seed 7] [--no-cedar] [--json]

In one process:

1. loads ``examples/policies/support.yaml`` (17 rules and one rate limit) and builds a pool of
   ``--pool`` inputs,
   a realistic mix: reads, refunds of many sizes (some in staging, some from untrusted text),
   ticket and customer updates, mail to customers and elsewhere, URL fetches, a kill switch,
   principals of other tenants and without the role;
2. decides ``--n`` calls as the run loop does (``evaluate``, then, unless denied, the rate
   limits the call counts against: ``limits_for``; both pure), cycling through the pool, each
   timed on its own with
   ``time.perf_counter_ns`` (the timer's own cost, measured and printed, is included: it is
   well under a tenth of a decision), and reports median, p90, p99 and max per decision.
   Taking from a limit's counter is a store round trip (I/O, in the run loop), not part of the
   engine's timing; ``evaluate`` alone is reported too;
3. for reference, the cost of building one :class:`PolicyInput` (the run loop pays it too);
4. if ``cedarpy`` is installed, the same policy written in Cedar, decided for the same
   inputs, timed the same way (building the Cedar request from the input is counted; Cedar
   has no rewrite, so the staging test-mode rule is left out, and ``require_approval`` is a
   permit annotated ``@approval`` that wins over a plain permit).

It is a benchmark, not a test: it asserts nothing, it prints what it measured and whether
each target was met. Run it on a quiet machine: other processes inflate the tail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import emit, print_table
from charter.policy import PolicyInput, PolicySet

MEDIAN_TARGET_US = 10.0
P99_TARGET_US = 25.0
POLICY_PATH = Path(__file__).resolve().parent.parent / "examples" / "policies" / "support.yaml"
TOOLS = {
    "kb_search": ("read", "low"),
    "lookup_order": ("read", "low"),
    "lookup_customer": ("read", "medium"),
    "fetch_url": ("read", "medium"),
    "update_ticket": ("write", "low"),
    "update_customer": ("write", "high"),
    "refund": ("write", "high"),
    "send_email": ("write", "medium"),
    "delete_customer": ("write", "critical"),
}
PRINCIPALS = {  # name -> (roles, tenant)
    "alice": (frozenset({"support"}), "acme"),
    "cora": (frozenset({"support", "customer_data"}), "acme"),
    "lee": (frozenset({"support_lead"}), "acme"),
    "sam": (frozenset({"sales"}), "acme"),
    "mallory": (frozenset({"support"}), "globex"),
}


# -- the input mix ------------------------------------------------------------------------------


def _refund(rng: random.Random) -> dict[str, Any]:
    amount = rng.choice([rng.uniform(1, 50), rng.uniform(1, 50), rng.uniform(50, 300)])
    amount = rng.uniform(300, 5000) if rng.random() < 0.1 else amount
    return {"order_id": f"A{rng.randrange(10_000)}", "amount": round(amount, 2), "reason": "late"}


def _mail(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    to = rng.choice(["ann@example.com", "bo@shop.example.com", "cy@example.org", "x@evil.test"])
    source = rng.choice(["principal", "tool_output", "tool_output", "retrieved"])
    args = {"to": to, "subject": "Your refund", "body": "Hello"}
    return args, {"to": to}, {"to": frozenset({source})}


def _call(rng: random.Random) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """tool, arguments, destinations, destination sources."""
    roll = rng.random()
    if roll < 0.40:
        tool = rng.choice(["kb_search", "lookup_order", "lookup_customer"])
        return tool, {"query": "refund policy", "order_id": "A1", "customer_id": "C1"}, {}, {}
    if roll < 0.65:
        return "refund", _refund(rng), {}, {}
    if roll < 0.75:
        return "update_ticket", {"ticket_id": "T1", "status": "solved", "note": "refunded"}, {}, {}
    if roll < 0.85:
        return "send_email", *_mail(rng)
    if roll < 0.91:
        field = rng.choice(["phone", "phone", "billing_address"])
        return "update_customer", {"customer_id": "C1", "changes": {field: "x"}}, {}, {}
    if roll < 0.97:
        url = rng.choice(["https://docs.example.com/refunds", "https://attacker.test/p"])
        return "fetch_url", {"url": url}, {"url": url}, {"url": frozenset({"model"})}
    return "delete_customer", {"customer_id": "C1"}, {}, {}


def make_inputs(n: int, seed: int) -> list[PolicyInput]:
    rng = random.Random(seed)
    inputs = []
    for _ in range(n):
        tool, args, dests, sources = _call(rng)
        principal = rng.choices(list(PRINCIPALS), weights=[60, 15, 10, 10, 5])[0]
        roles, principal_tenant = PRINCIPALS[principal]
        effect, risk = TOOLS[tool]
        inputs.append(
            PolicyInput(
                tool=tool,
                effect=effect,  # type: ignore[arg-type]
                risk=risk,  # type: ignore[arg-type]
                agent_name="support_triage",
                agent_version="3",
                trust_tier="sandbox" if rng.random() < 0.02 else "standard",
                tenant="acme",
                principal=principal,
                principal_tenant=principal_tenant,
                roles=roles,
                environment="staging" if rng.random() < 0.1 else "prod",
                kill_switch=rng.random() < 0.02,
                arguments=args,
                destinations=dests,
                destination_sources=sources,
                untrusted_in_args=rng.random() < 0.1,
                untrusted_in_context=rng.random() < 0.3,
            )
        )
    return inputs


# -- timing ---------------------------------------------------------------------------------------


def timer_overhead_ns(n: int = 20_000) -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        samples.append(clock() - t0)
    return statistics.median(samples)


def time_each(fn: Callable[[Any], Any], pool: list[Any], n: int) -> dict[str, Any]:
    """Time ``n`` calls one by one (after a warm-up of one pass over the pool)."""
    for item in pool:
        fn(item)
    clock = time.perf_counter_ns
    samples = [0] * n
    size = len(pool)
    wall0 = clock()
    for i in range(n):
        item = pool[i % size]
        t0 = clock()
        fn(item)
        samples[i] = clock() - t0
    wall = clock() - wall0
    samples.sort()
    return {
        "decisions": n,
        "median_us": samples[n // 2] / 1000,
        "p90_us": samples[int(n * 0.90)] / 1000,
        "p99_us": samples[int(n * 0.99)] / 1000,
        "max_us": samples[-1] / 1000,
        "mean_us": sum(samples) / n / 1000,
        "loop_mean_us": wall / n / 1000,
    }


def input_build_us(pool: list[PolicyInput], n: int = 20_000) -> float:
    fields = [{f: getattr(inp, f) for f in PolicyInput.__dataclass_fields__} for inp in pool]
    t0 = time.perf_counter_ns()
    for i in range(n):
        PolicyInput(**fields[i % len(fields)])
    return (time.perf_counter_ns() - t0) / n / 1000


# -- the same policy in Cedar ----------------------------------------------------------------------

# The YAML's rules in Cedar, in the same order. Cedar has no rule order: a forbid beats any
# permit, so the later permits repeat the negation of the earlier ones they must yield to.
CEDAR_POLICY = """
@id("kill-switch")
forbid (principal, action, resource)
when { context.kill_switch && context.effect == "write" };

@id("foreign-tenant-writes")
forbid (principal, action, resource)
when { context.effect == "write" && !context.tenant_matches_principal };

@id("sandboxed-agents-read-only")
forbid (principal, action, resource)
when { context.trust_tier == "sandbox" && context.effect == "write" };

@id("mail-only-customers")
forbid (principal, action == Action::"send_email", resource)
when { context.outside.contains("customer_domains") };

@id("fetch-only-docs")
forbid (principal, action == Action::"fetch_url", resource)
when { context.outside.contains("docs_sites") };

@id("no-billing-address-change")
forbid (principal, action == Action::"update_customer", resource)
when { context.args has changes && context.args.changes has billing_address };

@id("refund-large")
forbid (principal, action == Action::"refund", resource)
when { context has amount_cents && context.amount_cents > 30000 };

@id("refund-untrusted") @approval
permit (principal in Role::"support", action == Action::"refund", resource)
when { context.untrusted_in_args };

@id("refund-small")
permit (principal in Role::"support", action == Action::"refund", resource)
when { !context.untrusted_in_args && context has amount_cents
       && context.amount_cents > 0 && context.amount_cents <= 5000 };

@id("refund-medium") @approval
permit (principal in Role::"support", action == Action::"refund", resource)
when { !context.untrusted_in_args && context has amount_cents
       && context.amount_cents > 5000 && context.amount_cents <= 30000 };

@id("mail-known-recipient")
permit (principal in Role::"support", action == Action::"send_email", resource)
when { context.sources_known && ["principal", "tool_output"].containsAll(context.sources) };

@id("mail-other-recipient") @approval
permit (principal in Role::"support", action == Action::"send_email", resource)
when { !(context.sources_known && ["principal", "tool_output"].containsAll(context.sources)) };

@id("critical-needs-admin") @approval
permit (principal in Role::"support", action, resource)
when { context.risk == "critical" };

@id("reads")
permit (principal, action, resource)
when { context.effect == "read" };

@id("ticket-writes")
permit (principal, action == Action::"update_ticket", resource)
when { principal in Role::"support" || principal in Role::"support_lead" };

@id("customer-writes")
permit (principal in Role::"support", action == Action::"update_customer", resource)
when { principal in Role::"customer_data" && context.tenant_matches_principal };
"""
ALLOWLISTS = {
    "customer_domains": ({"example.com", "example.org"}, (".example.com",)),
    "docs_sites": ({"docs.example.com", "help.example.com"}, ()),
}


def _host(value: str) -> str:
    value = value.lower()
    if "://" in value:
        return value.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2].split(":")[0]
    return value.rpartition("@")[2]


def cedar_request(inp: PolicyInput) -> dict[str, Any]:
    """The Cedar request for one input: the work a Cedar-based engine must do per call."""
    hosts = [_host(str(v)) for v in inp.destinations.values()]
    outside = [
        name
        for name, (exact, suffixes) in ALLOWLISTS.items()
        if any(h not in exact and not h.endswith(suffixes) for h in hosts)
    ]
    sources = [inp.destination_sources.get(path) for path in inp.destinations]
    context: dict[str, Any] = {
        "effect": inp.effect,
        "risk": inp.risk,
        "environment": inp.environment,
        "trust_tier": inp.trust_tier,
        "kill_switch": inp.kill_switch,
        "tenant_matches_principal": inp.principal_tenant == inp.tenant,
        "untrusted_in_args": inp.untrusted_in_args,
        "untrusted_in_context": inp.untrusted_in_context,
        "outside": outside,
        "sources": sorted({k for s in sources if s for k in s}),
        "sources_known": all(sources),
        "args": {k: v for k, v in inp.arguments.items() if not isinstance(v, float)},
    }
    amount = inp.arguments.get("amount")
    if isinstance(amount, int | float):
        context["amount_cents"] = round(amount * 100)  # Cedar has no floats
    return {
        "principal": {"type": "User", "id": inp.principal},
        "action": {"type": "Action", "id": inp.tool},
        "resource": {"type": "Tenant", "id": inp.tenant},
        "context": context,
    }


def cedar_decider() -> tuple[Callable[[PolicyInput], str], str] | None:
    try:
        import cedarpy  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    policies = cedarpy.PolicySet.from_str(CEDAR_POLICY)
    chunks = CEDAR_POLICY.split("@id(")[1:]  # Cedar names the n-th policy "policy<n>"
    approval = {f"policy{i}" for i, chunk in enumerate(chunks) if "@approval" in chunk}
    entities = [{"uid": {"type": "Role", "id": r}, "attrs": {}, "parents": []} for r in
                ("support", "support_lead", "customer_data", "sales")]  # fmt: skip
    for name, (roles, _) in PRINCIPALS.items():
        parents = [{"type": "Role", "id": r} for r in sorted(roles)]
        entities.append({"uid": {"type": "User", "id": name}, "attrs": {}, "parents": parents})
    store = cedarpy.Entities.from_json_str(json.dumps(entities))

    def decide(inp: PolicyInput) -> str:
        result = cedarpy.is_authorized(cedar_request(inp), policies, store)
        if not result.allowed:
            return "deny"
        return "require_approval" if approval & set(result.diagnostics.reasons) else "allow"

    version = getattr(cedarpy, "__version__", None) or _dist_version("cedarpy")
    return decide, version


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# -- report -------------------------------------------------------------------------------------


def decide_call(policy: PolicySet, inp: PolicyInput) -> Any:
    """What the run loop asks the engine per call: the decision, then its rate limits."""
    decision = policy.evaluate(inp)
    if decision.outcome != "deny":
        policy.limits_for(inp, decision.arguments)
    return decision


def run(args: argparse.Namespace) -> dict[str, Any]:
    policy = PolicySet.load(POLICY_PATH, known_tools=set(TOOLS))
    pool = make_inputs(args.pool, args.seed)
    outcomes: dict[str, int] = {}
    for inp in pool:
        outcome = policy.evaluate(inp).outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    results: dict[str, Any] = {
        "env": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
        },
        "policy": {"name": policy.name, "rules": len(policy.rules), "hash": policy.hash},
        "params": {"n": args.n, "pool": args.pool, "seed": args.seed},
        "pool_outcomes": outcomes,
        "timer_overhead_ns": timer_overhead_ns(),
        "charter": time_each(lambda inp: decide_call(policy, inp), pool, args.n),
        "evaluate_only": time_each(policy.evaluate, pool, args.n),
        "limits": len(policy.document.limits or ()),
        "input_build_us": input_build_us(pool),
    }
    cedar = None if args.no_cedar else cedar_decider()
    if cedar is None:
        results["cedar"] = None
        results["cedar_note"] = "skipped (--no-cedar)" if args.no_cedar else "cedarpy not installed"
        return results
    decide, version = cedar
    agree = sum(decide(inp) == policy.evaluate(inp).outcome for inp in pool)
    results["cedar"] = time_each(decide, pool, args.n)
    results["cedar"].update(version=version, agreement=f"{agree}/{len(pool)}")
    results["cedar_ratio_median"] = results["cedar"]["median_us"] / results["charter"]["median_us"]
    return results


def summary(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    ours = results["charter"]

    def met(ok: bool) -> str:
        return "yes" if ok else "no"

    rows = [
        ("median per decision", f"{ours['median_us']:.2f} us", f"< {MEDIAN_TARGET_US:g} us",
         met(ours["median_us"] < MEDIAN_TARGET_US)),
        ("p99 per decision", f"{ours['p99_us']:.2f} us", f"< {P99_TARGET_US:g} us",
         met(ours["p99_us"] < P99_TARGET_US)),
        ("p90 / max", f"{ours['p90_us']:.2f} / {ours['max_us']:.0f} us", "(reference)", "-"),
        ("median, evaluate only (no limits)", f"{results['evaluate_only']['median_us']:.2f} us",
         "(reference)", "-"),
        ("building one PolicyInput", f"{results['input_build_us']:.2f} us", "(reference)", "-"),
    ]  # fmt: skip
    cedar = results.get("cedar")
    if cedar:
        rows += [
            (f"Cedar (cedarpy {cedar['version']}) median", f"{cedar['median_us']:.2f} us",
             "(reference)", "-"),
            ("Cedar p99", f"{cedar['p99_us']:.2f} us", "(reference)", "-"),
            ("Cedar median / Charter median", f"{results['cedar_ratio_median']:.1f}x",
             "(reference)", "-"),
        ]  # fmt: skip
    return rows


def print_report(results: dict[str, Any], table: list[tuple[str, str, str, str]]) -> None:
    env, ours, pol = results["env"], results["charter"], results["policy"]
    load = ", ".join(f"{x:.2f}" for x in env["load"])
    print(f"Python {env['python']}, {env['cpus']} CPUs, load average {load}")
    print(
        f"policy {pol['name']}: {pol['rules']} rules and {results['limits']} rate limit(s),"
        f" hash {pol['hash'][:16]}"
    )
    print(
        "a decision = evaluate + limits_for (which limits the call counts against);"
        " taking from the counter is store I/O and not timed here"
    )
    print(
        f"{ours['decisions']:,} decisions over a pool of {results['params']['pool']} inputs;"
        f" pool outcomes {results['pool_outcomes']}"
    )
    print(
        f"timed one call at a time with perf_counter_ns (timer overhead"
        f" {results['timer_overhead_ns']:.0f} ns, included); mean {ours['mean_us']:.2f} us,"
        f" whole loop {ours['loop_mean_us']:.2f} us per decision"
    )
    cedar = results.get("cedar")
    if cedar:
        print(
            f"Cedar: same inputs, request building included; decisions agree on"
            f" {cedar['agreement']} inputs (no rewrite rule in Cedar)"
        )
    else:
        print(f"Cedar: {results['cedar_note']}")
    print()
    print_table(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="decisions to time")
    parser.add_argument("--pool", type=int, default=2000, help="distinct inputs to cycle through")
    parser.add_argument("--seed", type=int, default=7, help="seed of the input mix")
    parser.add_argument("--no-cedar", action="store_true", help="skip the Cedar comparison")
    parser.add_argument("--json", action="store_true", help="print a JSON dump instead")
    args = parser.parse_args(argv)
    results = run(args)
    emit(results, summary(results), as_json=args.json, print_report=print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
