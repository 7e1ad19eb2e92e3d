PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE charter_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL);
INSERT INTO charter_migrations VALUES(1,1796471804.1624891757);
INSERT INTO charter_migrations VALUES(2,1796471804.1626234054);
INSERT INTO charter_migrations VALUES(3,1796471804.1626958846);
INSERT INTO charter_migrations VALUES(4,1796471804.1631360053);
INSERT INTO charter_migrations VALUES(5,1796471804.1632258892);
INSERT INTO charter_migrations VALUES(6,1796471804.1676428317);
INSERT INTO charter_migrations VALUES(9,1796471804.1686797141);
INSERT INTO charter_migrations VALUES(10,1796471804.169131279);
CREATE TABLE agents (
    agent_hash TEXT PRIMARY KEY,          -- sha256 of the spec: stored once, referenced by runs
    spec       TEXT NOT NULL              -- JSON
);
INSERT INTO agents VALUES('8a3c8ff6823fdc01d8b26fd014e3772ae26dce0915ebfa74ae3eab3c57d75bf7','{"budgets":{"max_cost_usd":null,"max_steps":50,"max_tokens_total":null,"max_tool_calls":100,"timeout_seconds":null},"instructions":"You help.\n","instructions_hash":"d7cf5e49c5a2fe8772b600f2d89c70d1453541d078266e7d86d195892e75ec7b","max_context_messages":50,"model":{"api_key_env":"OPENAI_API_KEY","base_url":null,"context_tokens":8192,"input_usd_per_mtok":0.0,"max_attempts":3,"max_output_tokens":null,"name":"scripted","outage_wait_s":30.0,"outage_waits":3,"output_usd_per_mtok":0.0,"path":null,"provider":"scripted","script":[{"tool_calls":[{"arguments":{"question":"Which order?"},"name":"ask_principal"}]},{"content":"Thanks, all done."}],"sha256":null,"temperature":0.0,"threads":null,"timeout_s":60.0,"tool_calling":"native"},"name":"helper","policy":null,"tools":["charter.tools:ask_principal"],"trust_tier":"standard","version":"2"}');
CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY,
    agent_name       TEXT NOT NULL,
    agent_version    TEXT NOT NULL,
    agent_hash       TEXT NOT NULL REFERENCES agents(agent_hash),
    tenant           TEXT NOT NULL,
    principal        TEXT NOT NULL,
    status           TEXT NOT NULL,
    waiting_for      TEXT,                -- 'message' | 'timer' | NULL
    ready_at         REAL,                -- runnable from this time, NULL: not runnable
    lease_owner      TEXT,
    lease_expires_at REAL,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,   -- fencing: bumped on every claim
    last_seq         INTEGER NOT NULL,
    last_hash        TEXT NOT NULL,
    state            TEXT NOT NULL,       -- durable state (JSON), committed with each step
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
INSERT INTO runs VALUES('run_01a24610510c13f27424','helper','2','8a3c8ff6823fdc01d8b26fd014e3772ae26dce0915ebfa74ae3eab3c57d75bf7','default','anonymous','succeeded',NULL,NULL,NULL,NULL,2,10,'88318a3ed497b5b874f02a2cdeafcccde9c5839a5a26e067576a50f46b174919','{"status":"succeeded","step":2,"tool_calls":1,"tokens":34,"cost_usd":0.0,"model_outages":0,"limits_used":{},"active_s":0.0011398792266845703,"last_at":1796471810.7569475,"pending":[],"waiting_for":null,"wake_at":null,"output":"Thanks, all done.","reason":null}',1796471804.172268629,1796471810.7570676803);
INSERT INTO runs VALUES('run_01a24610599d59ac87f2','helper','2','8a3c8ff6823fdc01d8b26fd014e3772ae26dce0915ebfa74ae3eab3c57d75bf7','default','anonymous','waiting','message',NULL,NULL,NULL,1,6,'3044f7d46370ab73b01d7f6a9013b1445161f9de63e6fab7ca08738fbd5ec176','{"status":"waiting","step":1,"tool_calls":1,"tokens":11,"cost_usd":0.0,"model_outages":0,"limits_used":{},"active_s":0.0003895759582519531,"last_at":1796471806.3845966,"pending":[],"waiting_for":"message","wake_at":null,"output":null,"reason":null}',1796471806.3653259277,1796471806.3847289085);
CREATE TABLE events (
    run_id         TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    type           TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    at             REAL NOT NULL,
    payload        TEXT NOT NULL,         -- JSON of the event body, defaults left out
    hash           TEXT NOT NULL,         -- chained: covers the previous event's hash
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
INSERT INTO events VALUES('run_01a24610510c13f27424',1,'run_started',2,1796471804.172268629,'{"agent_name":"helper","agent_version":"2","agent_hash":"8a3c8ff6823fdc01d8b26fd014e3772ae26dce0915ebfa74ae3eab3c57d75bf7","tenant":"default","principal":"anonymous","input":"first"}','1ad59cb4df590eb17654c6688376685d4e367502b5d4caafb05e7d9e9bd390f5');
INSERT INTO events VALUES('run_01a24610510c13f27424',2,'message_received',2,1796471804.172268629,'{"text":"first","source":"input"}','bbf33c3eb21a25aaceac1b905a4d6d6b289bea5f38793b19c49267d106a54af7');
INSERT INTO events VALUES('run_01a24610510c13f27424',3,'model_responded',2,1796471804.1905331611,'{"step":1,"provider":"scripted","model":"scripted","prompt_hash":"d7cf5e49c5a2fe8772b600f2d89c70d1453541d078266e7d86d195892e75ec7b","tool_calls":[{"call_id":"call_0_0","name":"ask_principal","arguments":"{\"question\": \"Which order?\"}"}],"usage":{"input_tokens":3,"output_tokens":7},"latency_ms":0.09}','8f905f83788e53691bac0738e8b2a11ed4b23c0e06d3c08e5b5296098b9dc7e6');
INSERT INTO events VALUES('run_01a24610510c13f27424',4,'tool_call_proposed',2,1796471804.1907088756,'{"step":1,"call_id":"call_0_0","tool":"ask_principal","effect":"control","arguments":{"question":"Which order?"},"tool_version":"1"}','48c158130691280730e0d602e2c5ef8c2bb73c7473d72703a713023675a23458');
INSERT INTO events VALUES('run_01a24610510c13f27424',5,'tool_call_succeeded',2,1796471804.190826416,'{"call_id":"call_0_0","tool":"ask_principal","output":{"status":"asked; the reply will follow as a user message"}}','6d3d32e3174e3287573be4a128c84cb536ec74f59dcdbf07dabd71dd7ba5d7fa');
INSERT INTO events VALUES('run_01a24610510c13f27424',6,'run_waiting',2,1796471804.1908996105,'{"waiting_for":"message","call_id":"call_0_0"}','d60cdd9d1dcd37281bbb5b16c130e379feb7bfdb117e0df67527b9550acb3bf7');
INSERT INTO events VALUES('run_01a24610510c13f27424',7,'run_resumed',2,1796471810.7561740875,'{"reason":"message","worker":"vm:18670:284c67"}','891fcaa7b09f2067f41f7829c12034c68b411aa345ae6a29fc432ce75ca210e9');
INSERT INTO events VALUES('run_01a24610510c13f27424',8,'message_received',2,1796471810.7564446925,'{"text":"order 42","inbox_id":1}','6bddb41a8ded5e78704c05990334ab8d868415395e0436c7b57db3bb2b4a3df1');
INSERT INTO events VALUES('run_01a24610510c13f27424',9,'model_responded',2,1796471810.7567205428,'{"step":2,"provider":"scripted","model":"scripted","prompt_hash":"d7cf5e49c5a2fe8772b600f2d89c70d1453541d078266e7d86d195892e75ec7b","content":"Thanks, all done.","usage":{"input_tokens":20,"output_tokens":4},"latency_ms":0.054}','0ac634a5bfde2aa2ecb79bc296cea86cbd96fb2cdaecc043d186ccc61fc8a071');
INSERT INTO events VALUES('run_01a24610510c13f27424',10,'run_finished',2,1796471810.7569475173,'{"status":"succeeded","output":"Thanks, all done."}','88318a3ed497b5b874f02a2cdeafcccde9c5839a5a26e067576a50f46b174919');
INSERT INTO events VALUES('run_01a24610599d59ac87f2',1,'run_started',2,1796471806.3653259277,'{"agent_name":"helper","agent_version":"2","agent_hash":"8a3c8ff6823fdc01d8b26fd014e3772ae26dce0915ebfa74ae3eab3c57d75bf7","tenant":"default","principal":"anonymous","input":"second"}','1086828971d4658d18d6cd0730a6dddd3d6e0d28efce1ecfad6cad71d95f93dc');
INSERT INTO events VALUES('run_01a24610599d59ac87f2',2,'message_received',2,1796471806.3653259277,'{"text":"second","source":"input"}','79f0e1151aa4803e70ce717d89bb6e02e20f35145de9812824d5a4e01407a460');
INSERT INTO events VALUES('run_01a24610599d59ac87f2',3,'model_responded',2,1796471806.3842070102,'{"step":1,"provider":"scripted","model":"scripted","prompt_hash":"d7cf5e49c5a2fe8772b600f2d89c70d1453541d078266e7d86d195892e75ec7b","tool_calls":[{"call_id":"call_0_0","name":"ask_principal","arguments":"{\"question\": \"Which order?\"}"}],"usage":{"input_tokens":4,"output_tokens":7},"latency_ms":0.091}','10c644792395cec7c939430f7fe05dbadcd74cf045b64e4e52972f6445f6cd25');
INSERT INTO events VALUES('run_01a24610599d59ac87f2',4,'tool_call_proposed',2,1796471806.3843951225,'{"step":1,"call_id":"call_0_0","tool":"ask_principal","effect":"control","arguments":{"question":"Which order?"},"tool_version":"1"}','d8c98cefd5374d2729a8193975ff56cf1a95665f5818025d793f1923c347ec6b');
INSERT INTO events VALUES('run_01a24610599d59ac87f2',5,'tool_call_succeeded',2,1796471806.3845140933,'{"call_id":"call_0_0","tool":"ask_principal","output":{"status":"asked; the reply will follow as a user message"}}','ed13b50bc0648c0bb23da23b0f35031dc83437ecf2fe4324428d35fd48f9f94e');
INSERT INTO events VALUES('run_01a24610599d59ac87f2',6,'run_waiting',2,1796471806.3845965861,'{"waiting_for":"message","call_id":"call_0_0"}','3044f7d46370ab73b01d7f6a9013b1445161f9de63e6fab7ca08738fbd5ec176');
CREATE TABLE inbox (
    inbox_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs(run_id),
    text        TEXT NOT NULL,
    sent_at     REAL NOT NULL,
    consumed_at REAL
);
INSERT INTO inbox VALUES(1,'run_01a24610510c13f27424','order 42',1796471808.503267765,1796471810.7570676803);
CREATE TABLE memory (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,             -- JSON
    provenance TEXT NOT NULL,             -- JSON: where the value came from
    created_at REAL NOT NULL,
    expires_at REAL,
    PRIMARY KEY (tenant, key)
);
CREATE TABLE workers (
    worker_id    TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
CREATE TABLE killswitch (
    tenant TEXT NOT NULL,
    agent  TEXT NOT NULL,
    since  REAL NOT NULL,
    reason TEXT NOT NULL, action TEXT NOT NULL DEFAULT 'wait',
    PRIMARY KEY (tenant, agent)
);
CREATE TABLE approvals (
    approval_id    TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL REFERENCES runs(run_id),
    call_id        TEXT NOT NULL,
    tenant         TEXT NOT NULL,
    agent_name     TEXT NOT NULL,
    tool           TEXT NOT NULL,
    arguments      TEXT NOT NULL,         -- JSON
    arguments_hash TEXT NOT NULL,         -- sha256 of the canonical JSON: a grant is bound to it
    risk           TEXT NOT NULL,
    reason         TEXT NOT NULL,
    rule_ids       TEXT NOT NULL,         -- JSON list
    requested_by   TEXT NOT NULL,         -- the run's principal: never its own approver
    tier           TEXT NOT NULL,
    role           TEXT NOT NULL,         -- the role a decider must hold
    changes        TEXT,                  -- JSON list of {field, old, new}, or NULL
    requested_at   REAL NOT NULL,
    expires_at     REAL NOT NULL,
    on_expiry      TEXT NOT NULL,         -- 'deny' | 'escalate'
    status         TEXT NOT NULL,         -- 'pending' | 'granted' | 'denied' | 'expired'
    decided_by     TEXT,
    decided_at     REAL,
    note           TEXT
);
CREATE TABLE role_grants (
    principal  TEXT NOT NULL,
    role       TEXT NOT NULL,
    tenant     TEXT NOT NULL,             -- '*': every tenant
    granted_at REAL NOT NULL,
    PRIMARY KEY (principal, role, tenant)
);
CREATE TABLE counters (
    key          TEXT NOT NULL,
    window_start REAL NOT NULL,
    total        REAL NOT NULL,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE TABLE cache (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE run_keys (
    tenant          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    run_id          TEXT NOT NULL UNIQUE,
    request_digest  TEXT NOT NULL,
    created_at      REAL NOT NULL,
    PRIMARY KEY (tenant, idempotency_key)
);
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        REAL NOT NULL,
    kind      TEXT NOT NULL,
    run_id    TEXT,
    actor     TEXT,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    key_id    TEXT,
    mac       TEXT
);
INSERT INTO audit_log VALUES(1,1796471804.1692340373,'genesis',NULL,NULL,'{"legacy_runs":[]}','0000000000000000000000000000000000000000000000000000000000000000','1de0c629ea02c9dc3941fc62731813a9376576fc7adaf81cd5c1e8309d0fac4f',NULL,NULL);
INSERT INTO audit_log VALUES(2,1796471804.1736657619,'agent_seen',NULL,NULL,'{"agent":"helper","agent_hash":"8a3c8ff6823fdc01d8b26fd014e3772ae26dce0915ebfa74ae3eab3c57d75bf7","policy":null,"policy_digest":null,"version":"2"}','1de0c629ea02c9dc3941fc62731813a9376576fc7adaf81cd5c1e8309d0fac4f','ba06b62a2f9b960af1980e4eb3fc1fb36ade5800baf5bab67aa38ade0d636e84',NULL,NULL);
INSERT INTO audit_log VALUES(3,1796471804.1736657619,'run_created','run_01a24610510c13f27424','anonymous','{"agent_hash":"8a3c8ff6823fdc01d8b26fd014e3772ae26dce0915ebfa74ae3eab3c57d75bf7","hash":"bbf33c3eb21a25aaceac1b905a4d6d6b289bea5f38793b19c49267d106a54af7","seq":2,"tenant":"default"}','ba06b62a2f9b960af1980e4eb3fc1fb36ade5800baf5bab67aa38ade0d636e84','de27f760ba6a4c19c916145dac02132063caf132c2a746074cbd01e4df0aa8f3',NULL,NULL);
INSERT INTO audit_log VALUES(4,1796471804.1954090594,'run_head','run_01a24610510c13f27424',NULL,'{"hash":"d60cdd9d1dcd37281bbb5b16c130e379feb7bfdb117e0df67527b9550acb3bf7","seq":6,"status":"waiting"}','de27f760ba6a4c19c916145dac02132063caf132c2a746074cbd01e4df0aa8f3','0a291c041b204e971f96a5a37b8df07b19d4ea268abfdab46835276f2296a01e',NULL,NULL);
INSERT INTO audit_log VALUES(5,1796471806.3661510943,'run_created','run_01a24610599d59ac87f2','anonymous','{"agent_hash":"8a3c8ff6823fdc01d8b26fd014e3772ae26dce0915ebfa74ae3eab3c57d75bf7","hash":"79f0e1151aa4803e70ce717d89bb6e02e20f35145de9812824d5a4e01407a460","seq":2,"tenant":"default"}','0a291c041b204e971f96a5a37b8df07b19d4ea268abfdab46835276f2296a01e','e96ef411434d65b223e5c939d890faa85a6f5cdec3ebc9f7bcbdc14ec0cdf357',NULL,NULL);
INSERT INTO audit_log VALUES(6,1796471806.3847289085,'run_head','run_01a24610599d59ac87f2',NULL,'{"hash":"3044f7d46370ab73b01d7f6a9013b1445161f9de63e6fab7ca08738fbd5ec176","seq":6,"status":"waiting"}','e96ef411434d65b223e5c939d890faa85a6f5cdec3ebc9f7bcbdc14ec0cdf357','27b88f2a72f9e191629623900fd1880f22f3ff2eb23a78f910587eb31978b30d',NULL,NULL);
INSERT INTO audit_log VALUES(7,1796471810.7570676803,'run_head','run_01a24610510c13f27424',NULL,'{"hash":"88318a3ed497b5b874f02a2cdeafcccde9c5839a5a26e067576a50f46b174919","seq":10,"status":"succeeded"}','27b88f2a72f9e191629623900fd1880f22f3ff2eb23a78f910587eb31978b30d','87c56b3ebc0ebc1ec3c0cba2dc40b48dcf9365d9e62bdae27570c2edfd11a884',NULL,NULL);
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('inbox',1);
CREATE INDEX runs_ready ON runs(ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX runs_status ON runs(status, created_at);
CREATE INDEX inbox_pending ON inbox(run_id) WHERE consumed_at IS NULL;
CREATE INDEX runs_lease_owner ON runs(lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX approvals_status ON approvals(status, tenant, requested_at);
CREATE INDEX approvals_run ON approvals(run_id);
CREATE INDEX cache_expires_at ON cache (expires_at);
CREATE INDEX audit_log_run ON audit_log (run_id, seq);
COMMIT;
