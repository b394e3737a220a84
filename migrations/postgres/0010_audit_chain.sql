-- A tamper-evident audit log (docs/audit.md): every record gains the end user it
-- concerns, the caller's source address and the outcome; the chain job gives each
-- record its tenant's next sequence number and the hash of the record before it, and
-- signs checkpoints of each chain's head with a key derived from the master key.

ALTER TABLE audit_log ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE audit_log ADD COLUMN seq BIGINT;           -- NULL until chained
ALTER TABLE audit_log ADD COLUMN prev_hash BYTEA;      -- the previous record's hash
ALTER TABLE audit_log ADD COLUMN hash BYTEA;           -- SHA-256, docs/audit.md

-- One record per (tenant, seq); unchained records (seq NULL) do not collide.
CREATE UNIQUE INDEX audit_log_chain ON audit_log (tenant_id, seq);
CREATE INDEX audit_log_unchained ON audit_log (id) WHERE seq IS NULL;
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, at);

-- Each chain's head as the chain job left it, and the last place it signed. Only a
-- bookmark for the job: `audit verify` trusts the records and checkpoints, not this.
CREATE TABLE audit_heads (
    tenant_id    TEXT PRIMARY KEY,
    seq          BIGINT NOT NULL,
    hash         BYTEA NOT NULL,
    signed_seq   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE audit_checkpoints (
    tenant_id    TEXT NOT NULL,
    seq          BIGINT NOT NULL,       -- the chain's head when signed
    hash         BYTEA NOT NULL,        -- that record's hash
    at           BIGINT NOT NULL,       -- when signed, epoch ms
    key_version  BIGINT NOT NULL,       -- the master key version the MAC key comes from
    mac          BYTEA NOT NULL,        -- 0x02 ‖ HMAC-SHA256, docs/audit.md
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_checkpoints_by_time ON audit_checkpoints (tenant_id, at);
