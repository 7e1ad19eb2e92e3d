"""The audit log cannot be forged, cut short or contradicted (issue 10, item 3).

Each test edits the database directly, as someone with write access to it would, and checks
that `charter audit verify` (the real CLI) exits 1 naming the first bad record, or, where a
tampering is beyond what the configured key can show, that it says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.helpers.cli import run_charter
from tests.helpers.refund_agent import write_refund_agent

from charter import Agent, ModelSpec, Runtime, tool
from charter._engine.state import fold_all
from charter.store import AuditEntry, AuditKey, open_store
from charter.store._audit import seal

KEY = "audit-key-for-the-tests-0123456789"
SEALED = {"CHARTER_AUDIT_KEY": KEY}


@tool(effect="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look an order up."""
    return {"order": order_id}


def _agent() -> Agent:
    script = [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "7"}}]},
        {"content": "order 7 is fine"},
    ]
    return Agent(
        name="a", instructions="x", model=ModelSpec(provider="scripted", script=script),
        tools=[lookup],
    )  # fmt: skip


def _make_runs(url: str, *, key: str | None = KEY, n: int = 2) -> list[str]:
    """``n`` finished runs and one queued, written by a runtime that holds ``key``."""

    async def main() -> list[str]:
        audit_key = AuditKey(key.encode()) if key else None
        async with Runtime.open(url, audit_key=audit_key) as rt:
            agent = _agent()
            done = [
                (await rt.run(agent, f"order 7? ({i})", tenant="acme")).run_id for i in range(n)
            ]
            return [*done, await rt.start(agent, "later", tenant="acme")]

    return asyncio.run(main())


def _sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the database behind the store's back."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            rows = conn.execute(statement, params).fetchall()
            conn.commit()
            return rows
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _delete_run(url: str, run_id: str) -> None:
    """Delete a run's events, messages and row, behind the store's back."""
    _sql(url, "DELETE FROM event_log WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?)",
         run_id)  # fmt: skip
    _sql(url, "DELETE FROM inbox WHERE run_id = ?", run_id)
    _sql(url, "DELETE FROM runs WHERE run_id = ?", run_id)


def _verify(
    tmp: Path, url: str, *extra: str, key: str | None = KEY
) -> subprocess.CompletedProcess[str]:
    env = {"CHARTER_AUDIT_KEY": key} if key else None
    return run_charter(tmp, "audit", "verify", "--all", "--db", url, *extra, env=env)


def _broken(done: subprocess.CompletedProcess[str], run_id: str, words: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(f"BROKEN {run_id}")]
    assert lines and words in lines[0], done.stdout


def _cut_short(url: str, run_id: str, keep: int) -> None:
    """Delete a run's events after ``keep`` and rewind its row to match, as a careful forger
    would: the chain and the row then agree with each other."""

    async def state() -> tuple[str, str]:
        store = open_store(url, mode="read")
        try:
            events = (await store.load_events(run_id))[:keep]
        finally:
            await store.close()
        return fold_all(events).model_dump_json(), events[-1].hash

    folded, head = asyncio.run(state())
    _sql(
        url,
        "DELETE FROM event_log WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?)"
        " AND seq > ?",
        run_id,
        keep,
    )
    _sql(
        url,
        "UPDATE runs SET last_seq = ?, last_hash = ?, state = ?, status = 'waiting'"
        " WHERE run_id = ?",
        keep, head, folded, run_id,
    )  # fmt: skip


def _rewrite_log(url: str, drop: Any, key: AuditKey | None) -> None:
    """Rewrite the audit log without the records ``drop`` picks, re-chained (and resealed
    with ``key``): what someone who can write the database can do."""
    rows = _sql(url, "SELECT seq, at, kind, run_id, actor, detail FROM audit_log ORDER BY seq")
    _sql(url, "DELETE FROM audit_log")
    prev, seq = "0" * 64, 0
    for _, at, kind, run_id, actor, detail in rows:
        entry = AuditEntry(kind, run_id, actor, json.loads(detail))
        if drop(entry):
            continue
        seq += 1
        record = seal(entry, seq=seq, at=at, prev=prev, key=key)
        prev = record.hash
        _sql(
            url, "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            *(getattr(record, name) for name in record.__slots__),
        )  # fmt: skip


# -- what verifies, and what it says it cannot see -----------------------------------------------


def test_an_untouched_database_verifies_and_says_what_it_cannot_see_without_a_key(
    tmp_path: Path, store_url: str
) -> None:
    _make_runs(store_url)
    sealed = _verify(tmp_path, store_url)
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    assert "ok: 3 run(s)" in sealed.stdout and "sealed with key" in sealed.stdout
    assert "no audit key" not in sealed.stderr

    plain = _verify(tmp_path, store_url, key=None)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "no audit key is configured" in plain.stderr
    assert "cut a run short, delete a run or rewind a run row" in plain.stderr
    assert "seals were not checked" in plain.stderr
    report = json.loads(_verify(tmp_path, store_url, "--json", key=None).stdout)
    assert report["ok"] is True and report["audit_records"] > 3 and report["notes"]


# -- tampering with runs -------------------------------------------------------------------------


@pytest.mark.replay_exempt("cuts a run's log short")
def test_cutting_a_run_short_and_rewinding_its_row_is_detected(
    tmp_path: Path, store_url: str
) -> None:
    run_id = _make_runs(store_url)[0]
    _cut_short(store_url, run_id, keep=3)
    for key in (KEY, None):  # the audit log was left as it was: seen with or without a key
        _broken(_verify(tmp_path, store_url, key=key), run_id, "cut short or rewritten")


def test_deleting_a_whole_run_is_detected(tmp_path: Path, store_url: str) -> None:
    run_id = _make_runs(store_url)[1]
    _delete_run(store_url, run_id)
    _broken(_verify(tmp_path, store_url), run_id, "the run was deleted")


def test_a_run_row_that_contradicts_its_log_is_detected(tmp_path: Path, store_url: str) -> None:
    first, second, _ = _make_runs(store_url)
    _sql(store_url, "UPDATE runs SET status = 'failed' WHERE run_id = ?", first)
    state = json.loads(_sql(store_url, "SELECT state FROM runs WHERE run_id = ?", second)[0][0])
    state["tokens"] = 1
    _sql(store_url, "UPDATE runs SET state = ? WHERE run_id = ?", json.dumps(state), second)
    done = _verify(tmp_path, store_url)
    _broken(done, first, "the run row says failed; its log says succeeded")
    _broken(done, second, "the run row's state disagrees with its log (tokens)")


def test_a_run_inserted_behind_charters_back_is_detected(tmp_path: Path) -> None:
    """A whole, self-consistent run made elsewhere and slipped into the tables."""
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    _make_runs(url)
    other = tmp_path / "other.db"
    forged = _make_runs(f"sqlite:///{other}", n=1)[0]
    with contextlib.closing(sqlite3.connect(tmp_path / "charter.db")) as conn:
        conn.execute(f"ATTACH DATABASE '{other}' AS o")
        # Renumbered past this database's runs (run numbers are per database).
        conn.execute("UPDATE o.runs SET run_no = run_no + 1000")
        conn.execute("UPDATE o.event_log SET run_no = run_no + 1000")
        forged_no = "(SELECT run_no FROM o.runs WHERE run_id = ?)"
        conn.execute("INSERT OR IGNORE INTO main.agents SELECT * FROM o.agents")
        conn.execute("INSERT INTO main.runs SELECT * FROM o.runs WHERE run_id = ?", (forged,))
        conn.execute(
            f"INSERT INTO main.event_log SELECT * FROM o.event_log WHERE run_no = {forged_no}",
            (forged,),
        )
        conn.commit()
    _broken(_verify(tmp_path, url), forged, "no run_created record")


# -- tampering with the audit log ----------------------------------------------------------------


@pytest.mark.replay_exempt("rewrites a run's log and its audit entries")
def test_rewriting_the_audit_log_to_match_is_caught_by_the_key_and_only_by_it(
    tmp_path: Path, store_url: str
) -> None:
    run_id = _make_runs(store_url)[0]
    _cut_short(store_url, run_id, keep=3)
    _rewrite_log(store_url, lambda e: e.run_id == run_id and e.kind == "run_head", key=None)

    sealed = _verify(tmp_path, store_url)
    _broken(sealed, "audit-log", "no audit record is sealed, though a key is configured")
    # Without the key the forgery is consistent: verify passes, and says that it could not see.
    plain = _verify(tmp_path, store_url, key=None)
    assert plain.returncode == 0, plain.stdout
    assert "no audit key is configured" in plain.stderr

    # Resealed with another key: still refused, and the message says which key.
    _rewrite_log(store_url, lambda e: False, key=AuditKey(b"someone-elses-key-0123456789"))
    other = _verify(tmp_path, store_url)
    assert other.returncode == 1
    assert "was sealed with key" in other.stdout and "not with the configured key" in other.stdout


def test_a_writer_without_the_key_leaves_records_that_do_not_verify(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    _make_runs(url)
    _make_runs(url, key=None, n=1)  # a process started without CHARTER_AUDIT_KEY
    done = _verify(tmp_path, url)
    _broken(done, "audit-log", "(run_created) is not sealed, though records before it are")


def test_an_altered_missing_or_emptied_audit_log_is_detected(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    _make_runs(url)
    _sql(url, "UPDATE audit_log SET actor = 'mallory' WHERE kind = 'run_created'")
    _broken(_verify(tmp_path, url, key=None), "audit-log", "hash does not match its content")

    url2 = f"sqlite:///{tmp_path / 'two.db'}"
    _make_runs(url2)
    _sql(url2, "DELETE FROM audit_log WHERE seq = 3")
    _broken(_verify(tmp_path, url2, key=None), "audit-log", "audit record 3 is missing")

    url3 = f"sqlite:///{tmp_path / 'three.db'}"
    _make_runs(url3)
    _sql(url3, "DELETE FROM audit_log")
    done = _verify(tmp_path, url3, key=None)
    _broken(done, "audit-log", "the audit log is empty: its genesis record was deleted")


def test_an_anchor_catches_a_run_deleted_with_its_audit_records(
    tmp_path: Path, store_url: str
) -> None:
    """The tail of the audit log can be cut with the runs it names; the seal cannot show
    that, an anchor kept outside the database does."""
    last = _make_runs(store_url)[-1]
    anchor = tmp_path / "anchor.json"
    made = run_charter(tmp_path, "audit", "anchor", "--out", str(anchor), "--db", store_url,
                       env=SEALED)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "anchored audit record" in made.stdout
    _delete_run(store_url, last)
    _sql(store_url, "DELETE FROM audit_log WHERE run_id = ?", last)  # its records are the tail

    assert _verify(tmp_path, store_url).returncode == 0  # beyond what the key can show
    done = _verify(tmp_path, store_url, "--anchor", str(anchor))
    _broken(done, "audit-log", "no longer holds record")
    _broken(done, last, "the anchored run was deleted")

    _sql(store_url, "UPDATE runs SET status = 'failed' WHERE status = 'succeeded'")
    refused = run_charter(tmp_path, "audit", "anchor", "--out", str(tmp_path / "c.json"),
                          "--db", store_url, env=SEALED)  # fmt: skip
    assert refused.returncode == 2 and "not anchoring it" in refused.stderr
    assert not (tmp_path / "c.json").exists()


# -- operator actions ----------------------------------------------------------------------------


@pytest.mark.replay_exempt("applies retention, which removes payloads a replay needs")
def test_operator_actions_are_recorded_with_their_actors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    write_refund_agent(tmp_path)

    def ok(*args: str) -> str:
        done = run_charter(tmp_path, *args, "--db", url, env=SEALED)
        assert done.returncode == 0, done.stderr
        return done.stdout

    ok("roles", "add", "bob", "lead", "--tenant", "acme", "--as", "Ops@Example.com")
    ok("roles", "add", "carol", "lead", "--tenant", "acme")
    ok("roles", "remove", "carol", "lead", "--tenant", "acme", "--as", "ops@example.com")
    ok("killswitch", "on", "--tenant", "acme", "--reason", "incident 12", "--as", "sre@x")
    ok("killswitch", "off", "--tenant", "acme", "--as", "sre@x")
    ok("start", "agent.yaml", "--input", "refund 7", "--tenant", "acme", "--principal", "ann")
    ok("worker", "--until-idle")
    [held] = json.loads(ok("approvals", "list", "--json"))
    ok("approvals", "grant", held["approval_id"], "--as", "bob")
    ok("worker", "--until-idle")
    ok("retention", "apply", "--ttl", "prompts=0s", "--as", "dpo@x")

    records = json.loads(ok("audit", "log", "--json"))
    actions = [(r["kind"], r["actor"]) for r in records if r["kind"] not in ("run_head",)]
    login = next(a for k, a in actions if k == "role_granted" and a != "ops@example.com")
    assert login.startswith("local:")  # no --as: the local login, recorded as such
    assert actions == [
        ("genesis", None),
        ("role_granted", "ops@example.com"),
        ("role_granted", login),
        ("role_removed", "ops@example.com"),
        ("killswitch_on", "sre@x"),
        ("killswitch_off", "sre@x"),
        ("agent_seen", None),
        ("run_created", "ann"),
        ("approval_decided", "bob"),
        ("retention_applied", "dpo@x"),
    ]
    switch = next(r for r in records if r["kind"] == "killswitch_on")
    assert switch["detail"] == {"tenant": "acme", "agent": "*", "reason": "incident 12",
                                "action": "wait"}  # fmt: skip
    seen = next(r for r in records if r["kind"] == "agent_seen")
    assert seen["detail"]["policy"] == "refunds" and len(seen["detail"]["policy_digest"]) == 64
    decided = next(r for r in records if r["kind"] == "approval_decided")
    assert decided["detail"]["decision"] == "granted"
    assert decided["detail"]["arguments_hash"] == held["arguments_hash"]
    assert all(r["mac"] for r in records[1:])  # every record after the genesis is sealed
    heads = [r["detail"]["status"] for r in records if r["kind"] == "run_head"]
    assert heads == ["waiting", "succeeded"]  # parked for the approval, then finished

    table = ok("audit", "log", "--kind", "killswitch_on")
    assert "incident 12" in table and "sre@x" in table
    verified = ok("audit", "verify", "--all")
    assert verified.startswith("ok: 1 run(s)")


# -- keys and upgrades ---------------------------------------------------------------------------


def test_audit_key_settings_are_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.db'}"
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY + "\n")
    _make_runs(url)
    from_file = run_charter(tmp_path, "audit", "verify", "--all", "--db", url,
                            env={"CHARTER_AUDIT_KEY_FILE": str(key_file)})  # fmt: skip
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr  # the same key
    for env, words in (
        ({"CHARTER_AUDIT_KEY": KEY, "CHARTER_AUDIT_KEY_FILE": str(key_file)}, "not both"),
        ({"CHARTER_AUDIT_KEY": "short"}, "needs at least 16"),
        ({"CHARTER_AUDIT_KEY_FILE": str(tmp_path / "nope")}, "cannot be read"),
    ):
        done = run_charter(tmp_path, "audit", "verify", "--all", "--db", url, env=env)
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr


def test_runs_made_before_the_audit_log_existed_are_named_not_failed(tmp_path: Path) -> None:
    path = tmp_path / "charter.db"
    url = f"sqlite:///{path}"
    old = _make_runs(url, key=None)
    # The database as Charter left it before schema 10 (and so before 11 to 15).
    for statement in (
        "DROP TABLE notification_deliveries",
        "DROP TABLE notifications",
        "DROP TABLE hook_signatures",
        "DROP TABLE schedules",
        "DROP TABLE api_tokens",
        "DROP TABLE cancel_requests",
        "CREATE TABLE old_events AS SELECT * FROM events",
        "DROP VIEW events",
        "DROP TABLE event_log",
        "DROP TABLE event_types",
        "ALTER TABLE old_events RENAME TO events",
        "DROP INDEX runs_run_no",
        "ALTER TABLE runs DROP COLUMN run_no",
        "DROP TABLE audit_log",
        "DELETE FROM charter_migrations WHERE version >= 10",
    ):
        _sql(url, statement)
    new = _make_runs(url)  # opening it to write migrates it: the genesis lists the old runs
    done = _verify(tmp_path, url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok: {len(old) + len(new)} run(s)" in done.stdout
    assert f"{len(old)} run(s) predate the audit log" in done.stderr
    assert "audit records 1-1 were written before the key was configured" not in done.stderr
