"""Fleet statistics computed from the event log: ``charter stats``, ``Store.stats()``.

A :class:`StatsReport` covers the runs *created* in a window (``since``), optionally of one
agent and one tenant. Definitions, so that two readers agree on a figure:

* ``completion_rate`` and ``escalation_rate`` are shares of the *finished* runs (runs still in
  flight are counted apart, in ``in_flight``); escalations are grouped by reason kind
  (``budget max_steps exhausted``, ``model call failed``...), not by their full text.
* Steps are model calls (``model_responded`` and ``model_call_failed``); retries are the extra
  attempts of tool calls and of model calls (``attempts - 1``, answered or not);
  ``retries_per_step`` divides the two.
* Latency: model calls from ``model_responded.latency_ms``, tool calls from ``duration_ms`` on
  their outcome (all attempts). Percentiles are nearest-rank: p95 is the smallest value that at
  least 95% of the values do not exceed. Time to decision of an approval is its decision time
  minus the time it was requested, for granted and denied approvals.
* Tool calls are proposals; ``tool_calls_per_successful_run`` counts those of succeeded runs.
  A tool's ``error_rate`` is failed / (succeeded + failed): calls that never ran (rejected by a
  contract, a policy, a kill switch or an approver) are counted apart in ``rejected``.
* Tokens and cost per run are over every run in the window; per successful run, the totals of
  the succeeded runs over their number. Cost is model calls' plus tool calls' ``cost_usd``.
  A model call's tokens and cost include its refused answers (empty, cut off, unparseable):
  on ``model_call_failed`` they are all it spent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from charter.clock import wall_clock
from charter.errors import ConfigError

__all__ = [
    "ApprovalStats",
    "LatencyStats",
    "StatsReport",
    "ToolStats",
    "parse_since",
]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LatencyStats(_Value):
    """Milliseconds (seconds for approval decisions); None where there is no value."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    mean: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencyStats:
        if not values:
            return cls()
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            p50=round(percentile(ordered, 50), 3),
            p95=round(percentile(ordered, 95), 3),
            mean=round(math.fsum(ordered) / len(ordered), 3),
        )


class ToolStats(_Value):
    """One tool at one version (None: the log did not record it)."""

    tool: str
    version: str | None
    calls: int
    succeeded: int
    failed: int
    rejected: int
    error_rate: float | None
    retries: int
    latency_ms: LatencyStats
    cost_usd: float


class ApprovalStats(_Value):
    requested: int = 0
    granted: int = 0
    denied: int = 0
    expired: int = 0
    pending: int = 0
    """Requested and not decided (yet): still waiting, or the run ended another way than
    by a cancel."""
    withdrawn: int = 0
    """Requested and withdrawn undecided when the run was cancelled."""
    time_to_decision_s: LatencyStats = LatencyStats()


class StatsReport(_Value):
    """What ``charter stats`` prints. Rates are fractions (0.25 is 25%), None when undefined."""

    since: float | None
    agent: str | None
    tenant: str | None
    runs: int
    by_status: dict[str, int]
    finished: int
    in_flight: int
    completion_rate: float | None
    escalation_rate: float | None
    escalation_reasons: dict[str, int]
    """Reason kind → escalated runs, most frequent first."""
    steps: int
    model_failures: int
    retries: int
    retries_per_step: float | None
    model_latency_ms: LatencyStats
    tool_latency_ms: LatencyStats
    tool_calls: int
    tool_calls_per_successful_run: float | None
    input_tokens: int
    output_tokens: int
    tokens_per_run: float | None
    tokens_per_successful_run: float | None
    cost_usd: float
    cost_per_run_usd: float | None
    cost_per_successful_run_usd: float | None
    tools: tuple[ToolStats, ...]
    approvals: ApprovalStats


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted, non-empty ``ordered``."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[rank - 1])


def ratio(part: float, whole: float, *, digits: int = 4) -> float | None:
    return None if not whole else round(part / whole, digits)


_REASONS = (
    (re.compile(r"^budget (\S+) exhausted"), r"budget \1 exhausted"),
    (re.compile(r"^model call failed"), "model call failed"),
    (re.compile(r"^call \S+ requires approval"), "requires approval"),
    (re.compile(r"^outcome of write call .* is unknown"), "write outcome unknown"),
)


def reason_kind(reason: str | None) -> str:
    """An escalation reason without what varies from run to run (ids, amounts)."""
    if not reason:
        return "(no reason)"
    for pattern, kind in _REASONS:
        found = pattern.match(reason)
        if found:
            return found.expand(kind)
    head = reason.split(":", 1)[0].strip()
    return head if len(head) <= 60 else head[:59] + "…"


_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str, *, option: str) -> float:
    """``30m``, ``24h``, ``7d``, ``2w`` → seconds (``option`` names the flag in the error)."""
    found = _SINCE.match(text.strip().lower())
    if found is None:
        raise ConfigError(
            f"{option} {text!r} is not a duration: use a number and a unit (30m, 24h, 7d, 2w)"
        )
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def parse_since(text: str, *, now: float | None = None) -> float | None:
    """``30m``, ``24h``, ``7d``, ``2w`` → the unix time that long ago; ``all`` → None."""
    value = text.strip().lower()
    if value == "all":
        return None
    found = _SINCE.match(value)
    if found is None:
        raise ConfigError(
            f"--since {text!r} is not a duration: use a number and a unit (30m, 24h, 7d, 2w) or all"
        )
    seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    return (wall_clock() if now is None else now) - seconds
