-- Charter schema 3 (postgres): kill switches. '*' is "every tenant" or "every agent".
CREATE TABLE killswitch (
    tenant TEXT NOT NULL,
    agent  TEXT NOT NULL,
    since  DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (tenant, agent)
);
