-- Charter schema 9 (postgres): client idempotency keys of runs. A client that retries a start
-- whose reply it lost names the same key and gets the same run. Unique per tenant. The
-- digest covers what was asked (agent, input, principal, roles, environment), so a key
-- reused for another request is refused instead of answered with the wrong run.
CREATE TABLE run_keys (
    tenant          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    run_id          TEXT NOT NULL UNIQUE,
    request_digest  TEXT NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, idempotency_key)
);
