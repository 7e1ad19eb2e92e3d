-- Charter schema 13 (postgres): API tokens for `charter serve` (store/_tokens.py). Only the
-- sha256 of a token's secret is stored (token_hash), never the secret. roles is a JSON list.
-- A token is refused once expires_at (if any) has passed or revoked_at is set.
CREATE TABLE api_tokens (
    token_id   TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    principal  TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    roles      TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
