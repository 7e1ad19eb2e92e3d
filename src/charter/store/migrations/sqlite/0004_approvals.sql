-- Charter schema 4 (sqlite): approval requests and the roles that may decide them.
-- A request is filed in the same transaction as its run's approval_requested event, and its
-- status moves once, by compare-and-set, from 'pending' to 'granted', 'denied' or 'expired'.
CREATE TABLE approvals (
    approval_id    TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL REFERENCES runs(run_id),
    call_id        TEXT NOT NULL,
    tenant         TEXT NOT NULL,
    agent_name     TEXT NOT NULL,
    tool           TEXT NOT NULL,
    arguments      TEXT NOT NULL,         -- JSON
    arguments_hash TEXT NOT NULL,         -- sha256 of the canonical JSON: a grant is bound to it
    risk           TEXT NOT NULL,
    reason         TEXT NOT NULL,
    rule_ids       TEXT NOT NULL,         -- JSON list
    requested_by   TEXT NOT NULL,         -- the run's principal: never its own approver
    tier           TEXT NOT NULL,
    role           TEXT NOT NULL,         -- the role a decider must hold
    changes        TEXT,                  -- JSON list of {field, old, new}, or NULL
    requested_at   REAL NOT NULL,
    expires_at     REAL NOT NULL,
    on_expiry      TEXT NOT NULL,         -- 'deny' | 'escalate'
    status         TEXT NOT NULL,         -- 'pending' | 'granted' | 'denied' | 'expired'
    decided_by     TEXT,
    decided_at     REAL,
    note           TEXT
);
CREATE INDEX approvals_status ON approvals(status, tenant, requested_at);
CREATE INDEX approvals_run ON approvals(run_id);

CREATE TABLE role_grants (
    principal  TEXT NOT NULL,
    role       TEXT NOT NULL,
    tenant     TEXT NOT NULL,             -- '*': every tenant
    granted_at REAL NOT NULL,
    PRIMARY KEY (principal, role, tenant)
);

-- What a blocked write does to its run: 'wait' (park until the switch is off), 'escalate'
-- (hand the run to a human) or 'reject' (tell the model, go on).
ALTER TABLE killswitch ADD COLUMN action TEXT NOT NULL DEFAULT 'wait';
