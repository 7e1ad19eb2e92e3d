-- Charter schema 15 (postgres): the notifications outbox (store/_notifications.py). A row of
-- notifications is written in the transaction that commits an event an outside system may
-- want to hear of (an approval requested, a run finished: kind). The delivery loop of
-- `charter serve` fans each out once (fanned_out_at) to the configured endpoints it matches,
-- one notification_deliveries row per endpoint, and POSTs them: a claim bumps attempts and
-- pushes next_attempt_at out by a lease, so a server that dies mid-POST leaves the delivery
-- due again. A delivery is settled delivered, retried later, or failed (dead letter).
CREATE TABLE notifications (
    run_id        TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL,
    fanned_out_at DOUBLE PRECISION,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX notifications_unfanned ON notifications(created_at) WHERE fanned_out_at IS NULL;

CREATE TABLE notification_deliveries (
    delivery_id     TEXT PRIMARY KEY,
    run_id          TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    endpoint        TEXT NOT NULL,
    url             TEXT NOT NULL,
    status          TEXT NOT NULL,   -- pending | delivered | failed
    attempts        INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION,              -- pending: due from then
    claimed_by      TEXT,            -- the server that made the last attempt
    last_status     INTEGER,         -- the HTTP status of the last answer, NULL: none
    last_error      TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    finished_at     DOUBLE PRECISION,              -- delivered or failed at
    UNIQUE (run_id, seq, endpoint)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries(next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX notification_deliveries_status ON notification_deliveries(status, created_at);
