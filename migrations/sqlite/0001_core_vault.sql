-- Core vault: tenants, service tokens, end users, credentials, idempotency keys, audit.
-- Times are Unix milliseconds. Secrets exist here only as sealed blobs (docs/encryption.md).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE service_tokens (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    token_hash   BLOB NOT NULL UNIQUE,   -- SHA-256 of the bearer token
    scopes       TEXT NOT NULL,          -- space-separated
    description  TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX service_tokens_by_tenant ON service_tokens (tenant_id, id);

CREATE TABLE end_users (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    user_id     TEXT NOT NULL,
    email       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE credentials (
    tenant_id         TEXT NOT NULL,
    id                TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    name              TEXT NOT NULL,
    provider          TEXT NOT NULL,
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL,
    labels            TEXT NOT NULL,      -- JSON object of strings
    scopes            TEXT NOT NULL,      -- JSON array of strings
    expires_at        INTEGER,
    token_expires_at  INTEGER,
    secret            BLOB NOT NULL,      -- sealed envelope
    version           INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES end_users (tenant_id, user_id)
);
CREATE INDEX credentials_by_user ON credentials (tenant_id, user_id, id);
CREATE INDEX credentials_by_provider ON credentials (tenant_id, provider, id);

CREATE TABLE idempotency_keys (
    tenant_id      TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    fingerprint    BLOB NOT NULL,         -- HMAC of the request under a key derived from the KEK
    key_version    INTEGER NOT NULL,
    credential_id  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL,
    at             INTEGER NOT NULL,
    actor          TEXT NOT NULL,         -- service token id
    action         TEXT NOT NULL,
    credential_id  TEXT NOT NULL,
    request_id     TEXT NOT NULL
);
CREATE INDEX audit_log_by_credential ON audit_log (tenant_id, credential_id, id);
