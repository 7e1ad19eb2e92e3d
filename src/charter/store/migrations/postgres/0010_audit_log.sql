-- Charter schema 10 (postgres): the audit log, one hash chain over the whole database
-- (store/_audit.py). Run creations, the heads of runs that parked or finished, agent specs
-- seen, and operator actions with their actors. Append-only. With an audit key each record
-- carries an HMAC of its hash (mac) and the key's id (key_id), never the key. The first
-- record (genesis) is written by Charter when this table is created.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        DOUBLE PRECISION NOT NULL,
    kind      TEXT NOT NULL,
    run_id    TEXT,
    actor     TEXT,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    key_id    TEXT,
    mac       TEXT
);
CREATE INDEX audit_log_run ON audit_log (run_id, seq);
