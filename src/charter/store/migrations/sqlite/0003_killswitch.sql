-- Charter schema 3 (sqlite): kill switches. '*' is "every tenant" or "every agent".
CREATE TABLE killswitch (
    tenant TEXT NOT NULL,
    agent  TEXT NOT NULL,
    since  REAL NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (tenant, agent)
);
