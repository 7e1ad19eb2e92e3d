-- Charter schema 6 (postgres): the response cache (model calls) and the result cache (read
-- tools declared cacheable), shared by every worker on this database. The key is the sha256
-- of the canonical request. Expired rows are ignored on read and dropped a few at a time.
CREATE TABLE cache (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX cache_expires_at ON cache (expires_at);
