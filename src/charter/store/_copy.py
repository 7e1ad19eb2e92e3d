"""Copy a deployment from one store to another (``charter db copy``), losing no event.

Each run is exported exactly as stored (events with their hashes, state, inbox, lease) and
imported; the copy's rows must equal the original's and its hash chain must verify, or the
copy stops with an error. A run already in the destination with the same head hash is
skipped, so an interrupted copy can simply be run again. Stop the workers first: a run that
changes during the copy is copied as it was when it was read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from charter.errors import StoreError
from charter.events import verify_chain
from charter.store._base import Store


@dataclass
class CopyReport:
    runs: int = 0
    skipped: int = 0
    events: int = 0
    memory: int = 0


async def copy_store(
    source: Store, target: Store, *, on_run: Callable[[str], None] | None = None
) -> CopyReport:
    report = CopyReport()
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
    for item in await source.memory_items():
        await target.remember(item)
        report.memory += 1
    return report
