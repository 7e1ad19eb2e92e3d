"""Copy a deployment from one store to another (``charter db copy``), losing nothing.

Every table that holds state is copied; the tables come from the source's schema itself, so a
table a later migration adds is copied too. In this order:

1. ``killswitch`` and ``role_grants`` first: a copy made during an incident never turns
   writes back on, and who may decide approvals is known before any run lands;
2. the runs, one by one, exactly as stored (events with their hashes, state, inbox, lease):
   the copy's rows must equal the original's and its hash chain must verify, or the copy
   stops with an error; a run already in the destination with the same head hash is skipped;
3. every other table (approvals, counters, cache, memory, agents, and whatever a later
   migration adds), row by row; a row whose key is already in the destination is kept as it
   is there;
4. the audit log, whole and as stored (seals included): it replaces the destination's fresh
   genesis record, or extends the copy made before. A destination with an audit log of its
   own is refused before anything is written (two histories cannot be merged into one chain).

Not copied (:data:`NOT_COPIED`): the destination's own schema history and event type codes,
and the heartbeats of the source's live workers. An interrupted copy can simply be run
again. Stop the workers first: a run that changes during the copy is copied as it was when it
was read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from charter.errors import StoreError
from charter.events import verify_chain
from charter.store._audit import adoption
from charter.store._base import Store

NOT_COPIED = {
    "charter_migrations": "the destination has its own schema history",
    "workers": "heartbeats of the source's live worker processes, not state",
    "event_types": "the destination's store writes its own (the same codes, from Charter)",
}
FIRST = ("killswitch", "role_grants")
"""Copied before any run: the switches that keep writes off, and who may decide."""
BY_RUN = ("runs", "event_log", "inbox")
"""Copied run by run (``export_run``/``import_run``), every chain verified. Run numbers
(``runs.run_no``, which ``event_log`` rows name) are the destination's own."""
AUDIT_LOG = "audit_log"
"""Copied whole after the runs: it replaces the destination's fresh genesis record."""


@dataclass
class CopyReport:
    runs: int = 0
    skipped: int = 0
    events: int = 0
    memory: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    """Rows copied per table (beside runs, events and inbox), new rows only."""


async def copy_store(
    source: Store, target: Store, *, on_run: Callable[[str], None] | None = None
) -> CopyReport:
    report = CopyReport()
    tables = [t for t in await source.table_names() if t not in NOT_COPIED]
    missing = sorted(set(tables) - set(await target.table_names()))
    if missing:
        raise StoreError(
            f"{target.url} has no table {', '.join(missing)}: its schema is older than the"
            " source's",
            hint="upgrade Charter on the destination, then run: charter db migrate --db URL",
        )
    if AUDIT_LOG in tables:  # refused now, not after the runs: nothing half-written
        adoption(await target.audit_records(), await source.audit_records())
    for table in FIRST:
        if table in tables:
            await _copy_table(source, target, table, report)
    await _copy_runs(source, target, report, on_run)
    for table in tables:
        if table not in (*FIRST, *BY_RUN, AUDIT_LOG):
            await _copy_table(source, target, table, report)
    if AUDIT_LOG in tables:
        report.tables[AUDIT_LOG] = await target.adopt_audit_log(await source.audit_records())
    report.memory = report.tables.get("memory", 0)
    return report


async def _copy_table(source: Store, target: Store, table: str, report: CopyReport) -> None:
    columns, rows = await source.table_rows(table)
    report.tables[table] = await target.insert_rows(table, columns, rows) if rows else 0


async def _copy_runs(
    source: Store, target: Store, report: CopyReport, on_run: Callable[[str], None] | None
) -> None:
    existing = set(await target.run_ids())
    for run_id in await source.run_ids():
        export = await source.export_run(run_id)
        if run_id in existing:
            theirs = await target.get_run(run_id)
            if theirs.last_hash != export.record.last_hash:
                raise StoreError(
                    f"run {run_id} is already in {target.url} with a different history",
                    hint="copy into an empty database",
                )
            report.skipped += 1
        else:
            await target.import_run(export)
            copied = await target.event_rows(run_id)
            broken = verify_chain(copied, run_id)
            if [tuple(r) for r in copied] != [tuple(r) for r in export.events] or broken:
                raise StoreError(f"the copy of run {run_id} does not match its original")
            report.runs += 1
            report.events += len(copied)
        if on_run is not None:
            on_run(run_id)
