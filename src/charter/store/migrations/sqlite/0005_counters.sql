-- Charter schema 5 (sqlite): durable counters for rate limits and daily spending.
-- One row per counter key and fixed window (window_start = floor(now / window) * window).
CREATE TABLE counters (
    key          TEXT NOT NULL,
    window_start REAL NOT NULL,
    total        REAL NOT NULL,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (key, window_start)
);
