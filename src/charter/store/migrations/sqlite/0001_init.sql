-- Charter schema 1 (SQLite). Times are unix seconds (REAL).
CREATE TABLE agents (
    agent_hash TEXT PRIMARY KEY,          -- sha256 of the spec: stored once, referenced by runs
    spec       TEXT NOT NULL              -- JSON
);

CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY,
    agent_name       TEXT NOT NULL,
    agent_version    TEXT NOT NULL,
    agent_hash       TEXT NOT NULL REFERENCES agents(agent_hash),
    tenant           TEXT NOT NULL,
    principal        TEXT NOT NULL,
    status           TEXT NOT NULL,
    waiting_for      TEXT,                -- 'message' | 'timer' | NULL
    ready_at         REAL,                -- runnable from this time, NULL: not runnable
    lease_owner      TEXT,
    lease_expires_at REAL,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,   -- fencing: bumped on every claim
    last_seq         INTEGER NOT NULL,
    last_hash        TEXT NOT NULL,
    state            TEXT NOT NULL,       -- durable state (JSON), committed with each step
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX runs_ready ON runs(ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX runs_status ON runs(status, created_at);

CREATE TABLE events (
    run_id         TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    type           TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    at             REAL NOT NULL,
    payload        TEXT NOT NULL,         -- JSON of the event body, defaults left out
    hash           TEXT NOT NULL,         -- chained: covers the previous event's hash
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE inbox (
    inbox_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs(run_id),
    text        TEXT NOT NULL,
    sent_at     REAL NOT NULL,
    consumed_at REAL
);
CREATE INDEX inbox_pending ON inbox(run_id) WHERE consumed_at IS NULL;

CREATE TABLE memory (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,             -- JSON
    provenance TEXT NOT NULL,             -- JSON: where the value came from
    created_at REAL NOT NULL,
    expires_at REAL,
    PRIMARY KEY (tenant, key)
);
