-- Charter schema 2 (PostgreSQL): live workers and their heartbeats, for `charter workers list`.
CREATE TABLE workers (
    worker_id    TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    concurrency  INTEGER NOT NULL,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX runs_lease_owner ON runs(lease_owner) WHERE lease_owner IS NOT NULL;
