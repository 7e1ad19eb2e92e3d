"""Rate limits and daily spending caps in the run loop: the counting half.

Which limits a call counts against is pure (:meth:`charter.policy.PolicySet.limits_for`);
counting is I/O. A call that policy lets go on (``allow`` or ``require_approval``) takes one
slot from each matching limit: from the store's durable counters for timed windows (shared by
every worker on the database, and surviving restarts), from the run's own state for ``run``
windows. If any limit is exhausted the decision becomes ``deny`` naming the limit, and the
slots already taken for the call are given back.

Spending: each committed event's ``cost_usd`` is added to the agent's and the tenant's counter
for the day (a UTC day by the store's clock) right after the commit, so a worker that dies
between the commit and the addition leaves one step uncounted. The policy's ``spending`` caps
are checked before each model call (the run escalates) and in the decision on a call that
costs money (the call is denied).

What is counted is a *decision to go on*, not an execution: a call that was allowed and then
stopped (kill switch, approval denied, a crash before the decision was committed, after which
the step is decided again) has used its slot. Counting errs towards refusing, never towards
letting more through.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable

from charter._engine.governance import Governor
from charter._engine.ports import Counters
from charter._engine.state import RunState
from charter.agents import Agent
from charter.events import (
    BudgetExceeded,
    CounterReading,
    Event,
    ModelCallFailed,
    ModelResponded,
    ToolCallFailed,
    ToolCallSucceeded,
)
from charter.policy import Decision, LimitMatch
from charter.tools import Tool

DAY_S = 86_400.0
CAP_REFRESH_S = 1.0
"""How stale a daily cap's figure may be before it is read from the store again; in between,
this run's own spending is added to it. (A cap is a threshold, not a reservation: runs in
flight together may pass it by what they spend within this time.)"""
_SLACK = 1e-9


def spend_key(kind: str, name: str) -> str:
    """The day counter of an agent's or a tenant's spending."""
    return json.dumps(["spend", kind, name], separators=(",", ":"), ensure_ascii=False)


class Limiter:
    """Rate limits and spending caps for one run's calls."""

    def __init__(
        self,
        *,
        store: Counters,
        agent: Agent,
        tenant: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._clock = clock
        self.refresh_s = CAP_REFRESH_S
        """How stale a cap's figure may be (a replay sets 0: its answers are per position)."""
        self._seen: dict[str, tuple[float, float]] = {}  # key -> (spent, read at)
        self.policy = agent.policy
        spending = None if self.policy is None else self.policy.document.spending
        self.caps: list[tuple[str, str, float]] = []
        """(budget name, counter key, dollars a day)"""
        if spending is not None and spending.per_agent_per_day_usd is not None:
            cap = spending.per_agent_per_day_usd
            self.caps.append(("per_agent_per_day_usd", spend_key("agent", agent.name), cap))
        if spending is not None and spending.per_tenant_per_day_usd is not None:
            cap = spending.per_tenant_per_day_usd
            self.caps.append(("per_tenant_per_day_usd", spend_key("tenant", tenant), cap))
        self._keys = (spend_key("agent", agent.name), spend_key("tenant", tenant))
        self._who = {"per_agent_per_day_usd": f"agent {agent.name}"}
        self._who["per_tenant_per_day_usd"] = f"tenant {tenant}"

    # -- spending ---------------------------------------------------------------------------

    async def spend(self, events: Iterable[Event]) -> None:
        """Add the committed events' costs to today's agent and tenant counters."""
        amount = sum(
            e.body.cost_usd
            for e in events
            if isinstance(
                e.body, ModelResponded | ModelCallFailed | ToolCallSucceeded | ToolCallFailed
            )
        )
        if amount > 0:
            for key in self._keys:
                await self.store.add(key, window_s=DAY_S, amount=amount)
                if key in self._seen:
                    spent, at = self._seen[key]
                    self._seen[key] = (spent + amount, at)

    async def over_cap(
        self, *, fresh: bool = False, read: list[CounterReading] | None = None
    ) -> BudgetExceeded | None:
        """The first daily spending cap already reached, if any (``fresh``: read it now).

        ``read`` gets each figure the answer was decided on, in order."""
        for name, key, cap in self.caps:
            used = await self._spent(key, fresh=fresh)
            if read is not None:
                read.append(CounterReading(counter=name, total=used, cap=cap))
            if used >= cap - _SLACK:
                return BudgetExceeded(budget=name, limit=cap, used=round(used, 9))
        return None

    async def _spent(self, key: str, *, fresh: bool) -> float:
        """Today's spending on a counter, read at most every ``CAP_REFRESH_S`` unless fresh."""
        now = self._clock()
        seen = self._seen.get(key)
        if fresh or seen is None or now - seen[1] >= self.refresh_s:
            seen = (await self.store.counter(key, window_s=DAY_S), now)
            self._seen[key] = seen
        return seen[0]

    def describe(self, exceeded: BudgetExceeded) -> str:
        who = self._who.get(exceeded.budget, "")
        return (
            f"budget {exceeded.budget} exhausted for {who}: spent ${exceeded.used:g}"
            f" of ${exceeded.limit:g} today"
        )

    # -- the decision -----------------------------------------------------------------------

    async def apply(
        self, governor: Governor, tool: Tool, decision: Decision, state: RunState
    ) -> Counted:
        """The decision after limits and caps, the limits the call was counted against, and
        the counters read on the way."""
        if self.policy is None or decision.outcome == "deny":
            return Counted(decision)
        read: list[CounterReading] = []
        if tool.cost_usd > 0 and self.caps:
            # money is about to move: read it now
            exceeded = await self.over_cap(fresh=True, read=read)
            if exceeded is not None:
                denied = _deny(decision, f"spending.{exceeded.budget}", self.describe(exceeded))
                return Counted(denied, counters=tuple(read))
        matches = self.policy.limits_for(governor._input(tool, decision.arguments))
        taken: list[LimitMatch] = []
        for match in matches:
            refused = await self._take(match, state, read)
            if refused is not None:
                for done in taken:  # give back what this call took: it will not go on
                    await self.store.add(done.key, window_s=float(done.window_s or 0), amount=-1)
                return Counted(_deny(decision, match.limit_id, refused), counters=tuple(read))
            if match.window_s is not None:
                taken.append(match)
        return Counted(decision, tuple(m.label for m in matches), tuple(read))

    async def _take(
        self, match: LimitMatch, state: RunState, read: list[CounterReading]
    ) -> str | None:
        """Take one slot; the reason for refusing, or None when taken."""
        if match.error is not None:
            return f"policy evaluation error: limit {match.limit_id!r}: {match.error}"
        if match.window_s is None:
            if state.limits_used.get(match.label, 0) < match.max:
                return None  # the fold counts it from the policy_evaluated event
        else:
            taken = await self.store.take(match.key, window_s=match.window_s, limit=match.max)
            read.append(CounterReading(counter=match.label, total=taken, cap=match.max))
            if taken is not None:
                return None
        return match.describe()


@dataclasses.dataclass(frozen=True, slots=True)
class Counted:
    """A decision after limits and caps, with what it was counted against and read."""

    decision: Decision
    limits: tuple[str, ...] = ()
    """The labels of the limits the call was counted against (``policy_evaluated.limits``)."""
    counters: tuple[CounterReading, ...] = ()
    """The shared counters read for it, in order (``policy_evaluated.counters``)."""


def _deny(decision: Decision, rule_id: str, reason: str) -> Decision:
    return decision._replace(
        outcome="deny", reason=reason, rule_ids=(*decision.rule_ids, rule_id), approval=None
    )
