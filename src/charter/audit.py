"""Auditing a database: can its history be trusted?

:func:`audit` checks, for every run (or one):

1. its event chain (``events.verify_chain``): every field shown, every event in order;
2. its run row against the fold of its log: status, last sequence number, head hash, state;
3. the audit log (``store/_audit.py``): its own chain from the genesis record, and with an
   audit key each record's seal; then the runs against it — every run created since the audit
   log began has its ``run_created`` record, every run it names still exists, and every head
   it sealed (where a run parked or finished) is still in that run's log;
4. with an anchor (:func:`anchor`, kept outside the database), that the audit log and each
   anchored run still hold the anchored heads.

What cannot be detected is said in :attr:`AuditReport.notes`, never left out: without a key,
whoever can write the database can rewrite a run and its audit records consistently.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charter._engine.state import RunState, fold_all
from charter.clock import wall_clock
from charter.errors import ConfigError
from charter.events import FINAL_STATUSES, GENESIS_HASH, ChainBreak, verify_chain
from charter.retention import REMOVED
from charter.store import AuditKey, AuditRecord, RunRecord, Store

__all__ = ["AuditReport", "anchor", "audit", "load_anchor"]

AUDIT_LOG = "audit-log"
"""The ``run_id`` of a :class:`ChainBreak` in the audit log itself."""
ANCHOR_FORMAT = "charter-audit-anchor/1"


@dataclass
class AuditReport:
    """What :func:`audit` checked and found; ``ok`` when nothing was altered that it can see."""

    runs: int = 0
    records: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    key_id: str | None = None
    notes: list[str] = field(default_factory=list)
    """What this check could not see, in words: no key, legacy runs, unsealed records."""

    @property
    def ok(self) -> bool:
        return not self.breaks

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "runs": self.runs,
            "audit_records": self.records,
            "key_id": self.key_id,
            "breaks": [{"run_id": b.run_id, "seq": b.seq, "reason": b.reason} for b in self.breaks],
            "notes": self.notes,
        }


@dataclass
class _Log:
    """The audit log as far as it verifies."""

    records: list[AuditRecord]
    legacy: set[str]
    created: dict[str, AuditRecord]
    heads: dict[str, list[AuditRecord]]


async def audit(
    store: Store,
    *,
    run_id: str | None = None,
    key: AuditKey | None = None,
    anchored: dict[str, Any] | None = None,
) -> AuditReport:
    """Check one run (``run_id``) or every run, with the audit log; see the module's doc."""
    report = AuditReport(key_id=key.key_id if key else None)
    ids = [run_id] if run_id else await store.run_ids()
    report.runs = len(ids)
    log = await _check_log(store, key, report)
    logs: dict[str, list[tuple[int, str]]] = {}
    for rid in ids:
        record = await store.get_run(rid)
        rows = await store.event_rows(rid)
        logs[rid] = [(row[0], row[5]) for row in rows]
        found = verify_chain(rows, rid) or await _row_agrees(store, record, rows)
        found = found or _against_log(log, rid, logs[rid], record.status)
        if found is not None:
            report.breaks.append(found)
    if run_id is None:
        report.breaks += [
            ChainBreak(rid, 0, f"the run was deleted: audit record {rec.seq} recorded its creation")
            for rid, rec in log.created.items()
            if rid not in logs
        ]
    if anchored is not None:
        await _check_anchor(store, anchored, log, report)
    _limits(report, key, log)
    return report


async def _row_agrees(store: Store, record: RunRecord, rows: Sequence[Any]) -> ChainBreak | None:
    """The run row (status, last sequence, head, state) against the fold of its log."""
    rid = record.run_id
    if not rows:
        return ChainBreak(rid, 1, "the run has no events")
    last_seq, last_hash = rows[-1][0], rows[-1][5]
    if record.last_seq != last_seq or record.last_hash != last_hash:
        return ChainBreak(
            rid, last_seq, f"the run row says its log ends at event {record.last_seq}"
            f" with another head; the log ends at event {last_seq}",
        )  # fmt: skip
    folded = fold_all(await store.load_events(rid))
    final = record.status in FINAL_STATUSES or folded.status in FINAL_STATUSES
    if final and record.status != folded.status:
        return ChainBreak(
            rid, last_seq, f"the run row says {record.status}; its log says {folded.status}"
        )
    stored = RunState.model_validate(record.state)
    if folded.output == REMOVED:  # retention removed it from the log, not from the row
        stored = stored.model_copy(update={"output": REMOVED})
    if stored != folded:
        fields = [k for k in RunState.model_fields if getattr(stored, k) != getattr(folded, k)]
        return ChainBreak(
            rid, last_seq, f"the run row's state disagrees with its log ({', '.join(fields)})"
        )
    return None


async def _check_log(store: Store, key: AuditKey | None, report: AuditReport) -> _Log:
    records = await store.audit_records()
    report.records = len(records)
    trusted: list[AuditRecord] = []
    prev, sealed = GENESIS_HASH, False
    for expected, rec in enumerate(records, start=1):
        problem = _record_problem(rec, expected, prev, key, sealed)
        if problem is not None:
            report.breaks.append(ChainBreak(AUDIT_LOG, expected, problem))
            break
        sealed = sealed or rec.mac is not None
        trusted.append(rec)
        prev = rec.hash
    if not records:
        report.breaks.append(
            ChainBreak(AUDIT_LOG, 1, "the audit log is empty: its genesis record was deleted")
        )
    elif key is not None and not sealed and len(trusted) == len(records):
        report.breaks.append(
            ChainBreak(
                AUDIT_LOG,
                1,
                "no audit record is sealed, though a key is configured: the log"
                " was written without the key, or its seals were stripped",
            )
        )
    log = _Log(trusted, set(), {}, {})
    for rec in trusted:
        if rec.kind == "genesis":
            log.legacy = set(rec.data.get("legacy_runs", []))
        elif rec.kind == "run_created" and rec.run_id:
            log.created[rec.run_id] = rec
        elif rec.kind == "run_head" and rec.run_id:
            log.heads.setdefault(rec.run_id, []).append(rec)
    return log


def _record_problem(
    rec: AuditRecord, expected: int, prev: str, key: AuditKey | None, sealed: bool
) -> str | None:
    if rec.seq != expected:
        return f"audit record {expected} is missing"
    if expected == 1 and rec.kind != "genesis":
        return "the audit log does not start with its genesis record"
    if rec.prev_hash != prev or rec.recompute(prev) != rec.hash:
        return f"audit record {expected} ({rec.kind}): hash does not match its content"
    if key is None:
        return None
    if rec.mac is None:
        if sealed:
            return (
                f"audit record {expected} ({rec.kind}) is not sealed, though records before it"
                " are: appended without the key"
            )
        return None
    if rec.key_id != key.key_id:
        return (
            f"audit record {expected} was sealed with key {rec.key_id}, not with the configured"
            f" key {key.key_id}"
        )
    if not hmac.compare_digest(key.mac(rec.hash), rec.mac):
        return f"audit record {expected} ({rec.kind}): its seal does not match: forged or altered"
    return None


def _against_log(
    log: _Log, rid: str, events: list[tuple[int, str]], status: str
) -> ChainBreak | None:
    """A run against what the audit log recorded of it."""
    created = log.created.get(rid)
    if created is None:
        if rid in log.legacy:
            return None
        return ChainBreak(
            rid, 1, "the run has no run_created record in the audit log: it was not created"
            " through Charter, or its record was removed",
        )  # fmt: skip
    hashes = dict(events)
    last = events[-1][0] if events else 0
    for rec in [created, *log.heads.get(rid, [])]:
        seq, digest = int(rec.data["seq"]), str(rec.data["hash"])
        if hashes.get(seq) != digest:
            return ChainBreak(
                rid, seq, f"the run was cut short or rewritten: audit record {rec.seq} sealed"
                f" its head at event {seq}; the log now ends at event {last}",
            )  # fmt: skip
        if rec.data.get("status") in FINAL_STATUSES and last > seq:
            return ChainBreak(
                rid, seq + 1, f"events follow the run's final head (audit record {rec.seq})"
            )
    if status in FINAL_STATUSES and not any(
        h.data.get("seq") == last for h in log.heads.get(rid, [])
    ):
        return ChainBreak(
            rid, last, f"the run is {status} at event {last}, but the audit log never sealed"
            " that head: the log or the row was rewritten",
        )  # fmt: skip
    return None


async def _check_anchor(
    store: Store, anchored: dict[str, Any], log: _Log, report: AuditReport
) -> None:
    head = anchored["audit_log"]
    seq, digest = int(head["seq"]), str(head["hash"])
    held = next((r for r in log.records if r.seq == seq), None)
    if held is None or held.hash != digest:
        report.breaks.append(
            ChainBreak(
                AUDIT_LOG,
                seq,
                f"the audit log no longer holds record {seq} as anchored:"
                " cut short or rewritten since the anchor was made",
            )
        )
    present = set(await store.run_ids())
    for rid, want in sorted(anchored.get("runs", {}).items()):
        if rid not in present:
            report.breaks.append(ChainBreak(rid, 0, "the anchored run was deleted"))
            continue
        rows = {row[0]: row[5] for row in await store.event_rows(rid)}
        if rows.get(int(want["seq"])) != want["hash"]:
            report.breaks.append(
                ChainBreak(
                    rid,
                    int(want["seq"]),
                    "the run no longer holds its anchored head:"
                    " cut short or rewritten since the anchor was made",
                )
            )


def _limits(report: AuditReport, key: AuditKey | None, log: _Log) -> None:
    sealed = sum(1 for r in log.records if r.mac is not None)
    if key is None:
        report.notes.append(
            "no audit key is configured (CHARTER_AUDIT_KEY or CHARTER_AUDIT_KEY_FILE): whoever"
            " can write this database could cut a run short, delete a run or rewind a run row"
            " and rewrite the audit log to match, and this check would not see it; an anchor"
            " kept outside the database (charter audit anchor) still would"
        )
        if sealed:
            report.notes.append(
                f"{sealed} audit record(s) are sealed; their seals were not checked"
            )
    else:
        first = next((r.seq for r in log.records if r.mac is not None), None)
        if first is not None and first > 1:
            report.notes.append(
                f"audit records 1-{first - 1} were written before the key was configured and"
                " are not sealed: the seals after them would not show a rewrite of them (anchor"
                " the log with charter audit anchor when a key is introduced)"
            )
    if log.legacy:
        report.notes.append(
            f"{len(log.legacy)} run(s) predate the audit log: their creation and heads are not"
            " recorded in it"
        )


async def anchor(store: Store, *, key: AuditKey | None = None) -> dict[str, Any]:
    """The sealed heads (the audit log's last record, each run's last recorded head), to keep
    outside the database. Refused when the database does not verify: an anchor of a
    tampered log would bless it."""
    report = await audit(store, key=key)
    if not report.ok:
        first = report.breaks[0]
        raise ConfigError(
            f"the database does not verify ({first.run_id}: {first.reason}); not anchoring it",
            hint="run: charter audit verify --all",
        )
    records = await store.audit_records()
    last = records[-1]
    runs: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec.kind in ("run_created", "run_head") and rec.run_id:
            runs[rec.run_id] = {"seq": rec.data["seq"], "hash": rec.data["hash"]}
    return {
        "format": ANCHOR_FORMAT,
        "made_at": wall_clock(),
        "key_id": key.key_id if key else None,
        "audit_log": {"seq": last.seq, "hash": last.hash, "mac": last.mac},
        "runs": runs,
    }


def load_anchor(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such anchor file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not an anchor file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != ANCHOR_FORMAT:
        raise ConfigError(
            f"{path}: not an anchor file (format {ANCHOR_FORMAT!r} expected)",
            hint="make one with: charter audit anchor --out FILE",
        )
    return data
