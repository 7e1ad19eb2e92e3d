-- Charter schema 12 (sqlite): requests to cancel a run. One per run (a second request for the
-- same run finds this one). The run consumes it at its next step boundary, in the same
-- transaction as the run_finished(cancelled) event that records it: consumed_at is set then.
CREATE TABLE cancel_requests (
    run_id       TEXT PRIMARY KEY REFERENCES runs(run_id),
    request_id   TEXT NOT NULL UNIQUE,
    reason       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at REAL NOT NULL,
    consumed_at  REAL
);
CREATE INDEX cancel_requests_pending ON cancel_requests(run_id) WHERE consumed_at IS NULL
