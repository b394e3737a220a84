-- OAuth: providers per tenant, single-use connect states, refresh bookkeeping on
-- credentials, and the event outbox written with every status transition.

CREATE TABLE oauth_providers (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    id             TEXT NOT NULL,
    slug           TEXT NOT NULL,
    config         TEXT NOT NULL,      -- JSON: endpoints, scopes, PKCE, margins (no secrets)
    client_secret  BLOB,               -- sealed envelope, NULL for public clients
    last_error     TEXT,               -- set when the provider rejected our client
    last_error_at  INTEGER,
    version        INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, slug)
);

CREATE TABLE oauth_states (
    state_hash     BLOB PRIMARY KEY,   -- SHA-256 of the state parameter
    id             TEXT NOT NULL,      -- binds the sealed verifier (AAD)
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    user_email     TEXT NOT NULL,
    provider       TEXT NOT NULL,
    request        TEXT NOT NULL,      -- JSON: name, scopes, labels, redirect URLs
    pkce_verifier  BLOB,               -- sealed envelope
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    created_at     INTEGER NOT NULL
);
CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);

ALTER TABLE credentials ADD COLUMN next_refresh_at INTEGER;
ALTER TABLE credentials ADD COLUMN refresh_lease_owner TEXT;
ALTER TABLE credentials ADD COLUMN refresh_lease_until INTEGER;
ALTER TABLE credentials ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credentials ADD COLUMN last_refresh_error TEXT;
CREATE INDEX credentials_refresh_due ON credentials (next_refresh_at) WHERE next_refresh_at IS NOT NULL;

CREATE TABLE events (
    id             TEXT PRIMARY KEY,   -- evt_<uuidv7>: time-ordered, the resume cursor
    tenant_id      TEXT NOT NULL,
    type           TEXT NOT NULL,
    credential_id  TEXT,
    payload        TEXT NOT NULL,      -- the webhook body (JSON), fixed at write time
    created_at     INTEGER NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant_id, id);
