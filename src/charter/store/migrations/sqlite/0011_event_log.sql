-- Charter schema 11 (sqlite): a compact event log (store/_event_log.py). Each event row names
-- its run by a small number (runs.run_no) instead of the run id text, its type by a code
-- (event_types) instead of the name, and stores its hash as 32 raw bytes instead of 64 hex
-- characters. Hash values and what they cover do not change. The view `events` shows the
-- log as before (run_id, seq, type, schema_version, at, payload, hash as hex) for reading.
ALTER TABLE runs ADD COLUMN run_no INTEGER;
UPDATE runs SET run_no = rowid;
CREATE UNIQUE INDEX runs_run_no ON runs(run_no);

CREATE TABLE event_types (
    code INTEGER PRIMARY KEY,
    type TEXT NOT NULL UNIQUE
);
INSERT INTO event_types (code, type) VALUES
    (1, 'run_started'),
    (2, 'message_received'),
    (3, 'model_responded'),
    (4, 'model_call_failed'),
    (5, 'model_degraded'),
    (6, 'tool_call_proposed'),
    (7, 'policy_evaluated'),
    (8, 'tool_call_rejected'),
    (9, 'tool_call_started'),
    (10, 'tool_call_succeeded'),
    (11, 'tool_call_failed'),
    (12, 'tool_outcome_unknown'),
    (13, 'tool_call_reconciled'),
    (14, 'tool_call_overdue'),
    (15, 'tool_call_blocked'),
    (16, 'approval_requested'),
    (17, 'approval_decided'),
    (18, 'run_waiting'),
    (19, 'run_resumed'),
    (20, 'budget_exceeded'),
    (21, 'run_finished');

CREATE TABLE event_log (
    run_no         INTEGER NOT NULL,      -- runs.run_no
    seq            INTEGER NOT NULL,
    type_code      INTEGER NOT NULL,      -- event_types.code
    schema_version INTEGER NOT NULL,
    at             REAL NOT NULL,
    payload        TEXT NOT NULL,         -- JSON of the event body, defaults left out
    hash           BLOB NOT NULL,         -- sha256, 32 bytes: covers the previous event's hash
    PRIMARY KEY (run_no, seq)
) WITHOUT ROWID;
-- charter_unhex: registered by the store for this migration (SQLite 3.40 has no unhex).
INSERT INTO event_log (run_no, seq, type_code, schema_version, at, payload, hash)
    SELECT r.run_no, e.seq, t.code, e.schema_version, e.at, e.payload, charter_unhex(e.hash)
    FROM events e JOIN runs r ON r.run_id = e.run_id JOIN event_types t ON t.type = e.type;
DROP TABLE events;

CREATE VIEW events (run_id, seq, type, schema_version, at, payload, hash) AS
    SELECT r.run_id, e.seq, t.type, e.schema_version, e.at, e.payload, lower(hex(e.hash))
    FROM event_log e JOIN runs r ON r.run_no = e.run_no JOIN event_types t ON t.code = e.type_code;
