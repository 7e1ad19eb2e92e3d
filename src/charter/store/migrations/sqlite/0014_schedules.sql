-- Charter schema 14 (sqlite): cron schedules (store/_schedules.py, charter/schedules.py) and
-- the signatures of accepted webhook deliveries (server/_hooks.py). Times are unix seconds.
-- A schedule's runs are started with the idempotency key schedule:<schedule_id>:<tick>, so a
-- tick started twice (two tickers, a crash before next_tick_at moved) is one run, and next_tick_at
-- is then moved by compare-and-set. agent_hash names the spec in agents (stored on add).
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    schedule_id  TEXT NOT NULL UNIQUE,
    cron         TEXT NOT NULL,                  -- five fields, UTC
    agent_hash   TEXT NOT NULL REFERENCES agents(agent_hash),
    agent_name   TEXT NOT NULL,
    input        TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    principal    TEXT NOT NULL,
    roles        TEXT NOT NULL,                  -- JSON list
    missed       TEXT NOT NULL,                  -- 'skip' | 'catch-up'
    next_tick_at REAL NOT NULL,                  -- the first tick not yet started
    paused_at    REAL,                           -- NULL: active
    last_tick_at REAL,
    last_run_id  TEXT,
    last_error   TEXT,                           -- why the last attempt started no run
    created_at   REAL NOT NULL,
    created_by   TEXT NOT NULL
);
CREATE INDEX schedules_due ON schedules(next_tick_at) WHERE paused_at IS NULL;

-- A delivery's signature, once accepted: the same signature under another delivery id is a
-- replay. Rows older than the hook's tolerance window are pruned (a replay of them is stale).
CREATE TABLE hook_signatures (
    hook        TEXT NOT NULL,
    signature   TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    seen_at     REAL NOT NULL,
    PRIMARY KEY (hook, signature)
);
CREATE INDEX hook_signatures_seen ON hook_signatures(seen_at);
