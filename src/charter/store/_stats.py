"""``Store.stats()``: the SQL, in a SQLite and a PostgreSQL dialect, and the report's assembly.

Speed comes from reading the event log once (``event_log``, by type code: no join per event)
and parsing each payload once. Payloads are JSON
text with no index on what stats need, so each pass over the log is a full scan, and SQLite
sorts for every GROUP BY. So one statement scans the events of the selected runs and computes
everything with filtered aggregates and no GROUP BY. Measured on SQLite (bench/stats.py): a
payload parse costs ~0.7 µs, each further ``->>`` on it ~0.15 µs, each element appended to a
``json_group_array`` ~0.35 µs, while one ``json_extract`` with several paths costs about one
parse and returns the fields as one JSON array. So each event's fields come out of one
``json_extract``; its brackets are trimmed and the results concatenated (``group_concat``)
into one flat JSON list per kind of event, which Python decodes in C and slices into columns.
That halved the statement's time against one extraction and one array per field. A second
statement counts runs by status. PostgreSQL gets the same columns as nested JSON arrays.

Tool versions are recorded on proposals, not outcomes. While every tool has one version in
the window (the usual case) an outcome's version is its tool's; for a tool seen at several
versions (a rollout), a third statement joins its outcomes to their proposals.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from charter.stats import ApprovalStats, LatencyStats, StatsReport, ToolStats, ratio, reason_kind
from charter.store import _event_log

Dialect = Literal["sqlite", "postgres"]
_SEP = "\x1f"
_SUCCEEDED, _FAILED, _REJECTED = "tool_call_succeeded", "tool_call_failed", "tool_call_rejected"


def _t(name: str) -> int:
    """An event type as the log stores it (``x.type`` is the code: no join per event)."""
    return _event_log.code(name)


def _codes(*names: str) -> str:
    return f"({', '.join(str(_t(n)) for n in names)})"


_OUTCOMES = _codes(_SUCCEEDED, _FAILED, _REJECTED)
_TYPES = _codes(
    "model_responded", "model_call_failed", "tool_call_proposed", _SUCCEEDED, _FAILED,
    _REJECTED, "run_finished", "approval_requested", "approval_decided",
)  # fmt: skip
_MODEL = ("latency_ms", "usage.input_tokens", "usage.output_tokens", "cost_usd")
_TOOL = ("tool", "duration_ms", "attempts", "cost_usd")
_SPENT = ("usage.input_tokens", "usage.output_tokens", "cost_usd")


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """The statements for one dialect and one set of filters (``args`` bind their values)."""

    dialect: Dialect
    since: float | None = None
    agent: str | None = None
    tenant: str | None = None

    @property
    def args(self) -> dict[str, Any]:
        return {"since": self.since, "agent": self.agent, "tenant": self.tenant}

    def _param(self, name: str) -> str:
        return f":{name}" if self.dialect == "sqlite" else f"%({name})s"

    def _where_runs(self) -> str:
        where = ["TRUE"]
        if self.since is not None:
            where.append(f"r.created_at >= {self._param('since')}")
        if self.agent is not None:
            where.append(f"r.agent_name = {self._param('agent')}")
        if self.tenant is not None:
            where.append(f"r.tenant = {self._param('tenant')}")
        return " AND ".join(where)

    def runs_sql(self) -> str:
        return f"SELECT r.status, count(*) FROM runs r WHERE {self._where_runs()} GROUP BY r.status"

    # -- payload fields -------------------------------------------------------------------------

    def _text(self, path: str, alias: str = "x.p") -> str:
        """A payload field (``usage.input_tokens``: nested) as text; NULL when left out."""
        if self.dialect == "sqlite":
            return f"({alias} ->> '$.{path}')"
        return f"({alias} #>> '{{{','.join(path.split('.'))}}}')"

    def _num(self, path: str) -> str:
        text = self._text(path)
        return text if self.dialect == "sqlite" else f"{text}::float8"

    def _rows(self, paths: Sequence[str], when: str) -> str:
        """The fields at ``paths`` of the matching events: on SQLite, one flat JSON list
        without its brackets (``len(paths)`` values per event); on PostgreSQL, nested arrays."""
        if self.dialect == "sqlite":
            fields = ", ".join(f"'$.{p}'" for p in paths)
            return f"group_concat(trim(json_extract(x.p, {fields}), '[]')) FILTER (WHERE {when})"
        fields = ", ".join("x.p #> '{" + ",".join(p.split(".")) + "}'" for p in paths)
        return f"json_agg(json_build_array({fields})) FILTER (WHERE {when})"

    def _array(self, value: str, when: str) -> str:
        fn = "json_group_array" if self.dialect == "sqlite" else "json_agg"
        return f"{fn}({value}) FILTER (WHERE {when})"

    def _tuple(self, *values: str) -> str:
        fn = "json_array" if self.dialect == "sqlite" else "json_build_array"
        return f"{fn}({', '.join(values)})"

    def _source(self, types: str, extra: str = "") -> str:
        payload = "e.payload" if self.dialect == "sqlite" else "e.payload::jsonb"
        # SQLite: CROSS JOIN keeps runs as the outer loop (events by primary-key prefix).
        return (
            f"(SELECT r.status = 'succeeded' AS ok, r.status AS status, r.run_id, r.run_no,"
            f" e.type_code AS type, e.at, {payload} AS p FROM runs r CROSS JOIN event_log e"
            f" WHERE e.run_no = r.run_no AND e.type_code IN {types}"
            f" AND {self._where_runs()}{extra}) x"
        )

    # -- statements -----------------------------------------------------------------------------

    def events_sql(self) -> str:
        """One row; :func:`assemble` reads its columns by these positions."""
        model, failed = f"x.type = {_t('model_responded')}", f"x.type = {_t('model_call_failed')}"
        proposed = f"x.type = {_t('tool_call_proposed')}"
        ok = "x.ok = 1" if self.dialect == "sqlite" else "x.ok"
        if self.dialect == "sqlite":
            versions = (
                "group_concat(DISTINCT trim(json_extract(x.p, '$.tool', '$.tool_version'), '[]'))"
            )
        else:
            versions = "jsonb_agg(DISTINCT jsonb_build_array(x.p -> 'tool', x.p -> 'tool_version'))"
        columns = [
            # 0, 1: model calls in succeeded runs, in the others (_MODEL fields)
            self._rows(_MODEL, f"{model} AND {ok}"),
            self._rows(_MODEL, f"{model} AND NOT {ok}"),
            # 2, 3: failed model calls; the retries of every model call (recorded when > 1)
            f"count(*) FILTER (WHERE {failed})",
            f"coalesce(sum({self._num('attempts')} - 1) FILTER (WHERE {failed} OR {model}), 0)",
            # 4, 5: proposals, in every run and in succeeded runs; 6: (tool, version) pairs
            f"count(*) FILTER (WHERE {proposed})",
            f"count(*) FILTER (WHERE {proposed} AND {ok})",
            f"{versions} FILTER (WHERE {proposed})",
            # 7-10: succeeded calls in succeeded runs, in the others; failed calls likewise
            *(
                self._rows(_TOOL, f"x.type = {_t(kind)} AND {cond}")
                for kind in (_SUCCEEDED, _FAILED)
                for cond in (ok, f"NOT {ok}")
            ),
            # 11: tools of rejected calls; 12: reasons of escalated runs
            self._array(self._text("tool"), f"x.type = {_t(_REJECTED)}"),
            self._array(
                self._text("reason"), f"x.type = {_t('run_finished')} AND x.status = 'escalated'"
            ),
            # 13: approvals: [run_id, type code, at, approval_id, decision, decided_at, status]
            self._array(
                self._tuple(
                    "x.run_id",
                    "x.type",
                    "x.at",
                    self._text("approval_id"),
                    self._text("decision"),
                    self._num("decided_at"),
                    "x.status",
                ),
                f"x.type IN {_codes('approval_requested', 'approval_decided')}",
            ),
            # 14, 15: the answered but unusable attempts of failed model calls (_SPENT fields),
            # in succeeded runs and in the others
            self._rows(_SPENT, f"{failed} AND {ok}"),
            self._rows(_SPENT, f"{failed} AND NOT {ok}"),
        ]
        return f"SELECT {', '.join(columns)} FROM {self._source(_TYPES)}"

    def versioned_outcomes_sql(self, tools: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """Outcomes of ``tools`` with the version their proposal recorded, in one row:
        [[type code, tool, version, duration, attempts, cost], ...]."""
        names = {f"tool{i}": name for i, name in enumerate(tools)}
        listed = ", ".join(self._param(k) for k in names)
        pe = "pe.payload" if self.dialect == "sqlite" else "pe.payload::jsonb"
        version = (
            f"(SELECT {self._text('tool_version', pe)} FROM event_log pe"
            f" WHERE pe.run_no = x.run_no AND pe.type_code = {_t('tool_call_proposed')}"
            f" AND {self._text('call_id', pe)} = {self._text('call_id')} LIMIT 1)"
        )
        e = "e.payload" if self.dialect == "sqlite" else "e.payload::jsonb"
        extra = f" AND {self._text('tool', e)} IN ({listed})"
        record = self._tuple(
            "x.type",
            self._text("tool"),
            version,
            self._num("duration_ms"),
            self._num("attempts"),
            self._num("cost_usd"),
        )
        sql = f"SELECT {self._array(record, 'TRUE')} FROM {self._source(_OUTCOMES, extra)}"
        return sql, {**self.args, **names}


def _json(value: Any) -> list[Any]:
    """An aggregated array as fetched: JSON text (SQLite), a list (PostgreSQL), or NULL."""
    if value is None:
        return []
    if isinstance(value, str):
        loaded = json.loads(value)
        return loaded if isinstance(loaded, list) else []
    return list(value)


def _columns(value: Any, width: int) -> list[list[Any]]:
    """The columns of a ``_rows`` aggregate: flat SQLite text, nested PostgreSQL arrays."""
    if value is None:
        return [[] for _ in range(width)]
    if isinstance(value, str):
        flat = json.loads(f"[{value}]")
        return [flat[i::width] for i in range(width)]
    return [list(column) for column in zip(*value, strict=True)] or [[] for _ in range(width)]


def _numbers(column: list[Any], default: float = 0) -> list[Any]:
    return [default if v is None else v for v in column]


def tool_versions(row: Sequence[Any]) -> dict[str, list[str | None]]:
    """Tool → the versions its proposals recorded, from the events statement's row."""
    found: dict[str, list[str | None]] = defaultdict(list)
    tools, versions = _columns(row[6], 2)
    for tool, version in zip(tools, versions, strict=True):
        found[str(tool)].append(None if version is None else str(version))
    return found


def assemble(
    query: StatsQuery,
    runs: Sequence[tuple[Any, ...]],
    row: Sequence[Any],
    versioned: Sequence[Any] = (),
) -> StatsReport:
    """The report from the runs-by-status rows, the events row, and versioned outcomes."""
    by_status = {str(status): int(n) for status, n in runs}
    total = sum(by_status.values())
    succeeded = by_status.get("succeeded", 0)
    finished = sum(by_status.get(s, 0) for s in ("succeeded", "failed", "escalated", "cancelled"))
    ok, other = _columns(row[0], len(_MODEL)), _columns(row[1], len(_MODEL))
    latencies = _numbers(ok[0]) + _numbers(other[0])
    # Failed model calls add the tokens and cost of their answered attempts.
    ok_failed, other_failed = _columns(row[14], len(_SPENT)), _columns(row[15], len(_SPENT))
    ok_in, ok_out = (
        _numbers(ok[1]) + _numbers(ok_failed[0]),
        _numbers(ok[2]) + _numbers(ok_failed[1]),
    )
    tokens_in_ok, tokens_out_ok = sum(ok_in), sum(ok_out)
    tokens_in = tokens_in_ok + sum(_numbers(other[1]) + _numbers(other_failed[0]))
    tokens_out = tokens_out_ok + sum(_numbers(other[2]) + _numbers(other_failed[1]))
    model_cost_ok = _numbers(ok[3]) + _numbers(ok_failed[2])
    model_cost = model_cost_ok + _numbers(other[3]) + _numbers(other_failed[2])
    tools = _Tools(tool_versions(row))
    cost_ok = math.fsum(model_cost_ok) + tools.add_outcomes(row)
    tools.add_versioned(versioned)
    figures = tools.figures()
    cost = math.fsum(model_cost + [t.cost_usd for t, _ in figures])
    model_failures, model_retries = int(row[2]), int(row[3])
    retries = model_retries + sum(t.retries for t, _ in figures)
    steps = len(latencies) + model_failures
    kinds: Counter[str] = Counter()
    for reason, n in Counter(_json(row[12])).items():
        kinds[reason_kind(reason)] += n
    return StatsReport(
        since=query.since,
        agent=query.agent,
        tenant=query.tenant,
        runs=total,
        by_status=dict(sorted(by_status.items())),
        finished=finished,
        in_flight=total - finished,
        completion_rate=ratio(succeeded, finished),
        escalation_rate=ratio(by_status.get("escalated", 0), finished),
        escalation_reasons=dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        steps=steps,
        model_failures=model_failures,
        retries=retries,
        retries_per_step=ratio(retries, steps),
        model_latency_ms=LatencyStats.of(latencies),
        tool_latency_ms=LatencyStats.of([d for _, values in figures for d in values]),
        tool_calls=int(row[4]),
        tool_calls_per_successful_run=ratio(int(row[5]), succeeded, digits=3),
        input_tokens=int(tokens_in),
        output_tokens=int(tokens_out),
        tokens_per_run=ratio(tokens_in + tokens_out, total, digits=1),
        tokens_per_successful_run=ratio(tokens_in_ok + tokens_out_ok, succeeded, digits=1),
        cost_usd=round(cost, 6),
        cost_per_run_usd=ratio(cost, total, digits=6),
        cost_per_successful_run_usd=ratio(cost_ok, succeeded, digits=6),
        tools=tuple(t for t, _ in figures),
        approvals=_approvals(_json(row[13])),
    )


@dataclass(slots=True)
class _Tool:
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    retries: int = 0
    cost: float = 0.0
    durations: list[float] = field(default_factory=list)


class _Tools:
    """Outcomes by tool and version. A tool's version is the one its proposals recorded;
    the outcomes of a tool with several come from ``versioned_outcomes_sql`` instead."""

    def __init__(self, versions: dict[str, list[str | None]]) -> None:
        self.versions = versions
        self.by_key: dict[tuple[str, str | None], _Tool] = defaultdict(_Tool)

    def _acc(self, tool: str) -> _Tool | None:
        found = self.versions.get(tool) or [None]
        return None if len(found) > 1 else self.by_key[(tool, found[0])]

    def add_outcomes(self, row: Sequence[Any]) -> float:
        """Add the succeeded, failed and rejected calls; return the cost of those in
        succeeded runs."""
        cost_ok = 0.0
        for i, kind, in_ok_runs in (
            (7, _SUCCEEDED, True),
            (8, _SUCCEEDED, False),
            (9, _FAILED, True),
            (10, _FAILED, False),
        ):
            tools, durations, attempts, costs = _columns(row[i], len(_TOOL))
            grouped: dict[str, list[int]] = defaultdict(list)
            for n, tool in enumerate(tools):
                grouped[tool].append(n)
            for tool, ns in grouped.items():
                cost = math.fsum([costs[n] or 0.0 for n in ns])
                cost_ok += cost if in_ok_runs else 0.0
                acc = self._acc(tool)
                if acc is None:
                    continue
                acc.durations += [durations[n] or 0.0 for n in ns]
                acc.retries += sum([attempts[n] or 1 for n in ns]) - len(ns)
                acc.cost += cost
                if kind == _SUCCEEDED:
                    acc.succeeded += len(ns)
                else:
                    acc.failed += len(ns)
        for tool, count in Counter(_json(row[11])).items():
            if (acc := self._acc(tool)) is not None:
                acc.rejected += count
        return cost_ok

    def add_versioned(self, records: Sequence[Any]) -> None:
        for code, tool, version, ms, attempts, cost in records:
            kind = _event_log.type_name(int(code))
            acc = self.by_key[(tool, version)]
            acc.cost += float(cost or 0)
            if kind == _REJECTED:
                acc.rejected += 1
                continue
            acc.durations.append(float(ms or 0))
            acc.retries += int(attempts or 1) - 1
            if kind == _SUCCEEDED:
                acc.succeeded += 1
            else:
                acc.failed += 1

    def figures(self) -> list[tuple[ToolStats, list[float]]]:
        """Per tool and version: the figures, and the durations (for the overall percentiles)."""
        out = []
        for (tool, version), acc in sorted(
            self.by_key.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
        ):
            stats = ToolStats(
                tool=tool,
                version=version,
                calls=acc.succeeded + acc.failed + acc.rejected,
                succeeded=acc.succeeded,
                failed=acc.failed,
                rejected=acc.rejected,
                error_rate=ratio(acc.failed, acc.succeeded + acc.failed),
                retries=acc.retries,
                latency_ms=LatencyStats.of(acc.durations),
                cost_usd=round(acc.cost, 6),
            )
            out.append((stats, acc.durations))
        return out


def _approvals(records: list[Any]) -> ApprovalStats:
    """Counts by decision, and time to decision (decided_at, else the event's time, minus the
    time requested) of granted and denied approvals. A request never decided in a cancelled
    run was withdrawn by the cancel (``run_finished.cancel.withdrawn``)."""
    requested: dict[tuple[str, str], float] = {}
    decided: dict[tuple[str, str], tuple[str, float]] = {}
    cancelled: set[tuple[str, str]] = set()
    for run_id, type_, at, approval_id, decision, decided_at, status in records:
        key = (str(run_id), str(approval_id))
        if _event_log.type_name(int(type_)) == "approval_requested":
            requested[key] = float(at)
            if status == "cancelled":
                cancelled.add(key)
        else:
            decided[key] = (str(decision), float(decided_at if decided_at is not None else at))
    counts = Counter(decision for decision, _ in decided.values())
    waits = [
        max(0.0, when - requested[key])
        for key, (decision, when) in decided.items()
        if decision in ("granted", "denied") and key in requested
    ]
    return ApprovalStats(
        requested=len(requested),
        granted=counts["granted"],
        denied=counts["denied"],
        expired=counts["expired"],
        pending=len(set(requested) - set(decided) - cancelled),
        withdrawn=len(cancelled - set(decided)),
        time_to_decision_s=LatencyStats.of([w for w in waits if math.isfinite(w)]),
    )


def sqlite_stats(conn: Any, query: StatsQuery) -> StatsReport:
    """Run the statements on a ``sqlite3`` connection, in one read transaction (one snapshot)."""
    conn.execute("BEGIN")
    try:
        runs = conn.execute(query.runs_sql(), query.args).fetchall()
        row = conn.execute(query.events_sql(), query.args).fetchone()
        versioned: list[Any] = []
        several = [tool for tool, versions in tool_versions(row).items() if len(versions) > 1]
        if several:
            sql, args = query.versioned_outcomes_sql(several)
            versioned = _json(conn.execute(sql, args).fetchone()[0])
    finally:
        conn.execute("COMMIT")
    return assemble(query, runs, row, versioned)


async def postgres_stats(cur: Any, query: StatsQuery) -> StatsReport:
    """Run the statements on a psycopg cursor inside a transaction, with one snapshot."""
    await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    await cur.execute(query.runs_sql(), query.args)
    runs = await cur.fetchall()
    await cur.execute(query.events_sql(), query.args)
    row = await cur.fetchone()
    versioned: list[Any] = []
    several = [tool for tool, versions in tool_versions(row).items() if len(versions) > 1]
    if several:
        sql, args = query.versioned_outcomes_sql(several)
        await cur.execute(sql, args)
        versioned = _json((await cur.fetchone())[0])
    return assemble(query, runs, row, versioned)
