-- Charter schema 5 (postgres): durable counters for rate limits and daily spending.
-- One row per counter key and fixed window (window_start = floor(now / window) * window).
CREATE TABLE counters (
    key          TEXT NOT NULL,
    window_start DOUBLE PRECISION NOT NULL,
    total        DOUBLE PRECISION NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key, window_start)
);
