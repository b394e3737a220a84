-- Hosted connect: links, per-tenant page settings, and deliveries to a link's
-- notify_url (signed with the tenant's connect secret instead of an endpoint's).

CREATE TABLE connect_links (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    id               TEXT NOT NULL,            -- cl_<uuidv7>
    token_hash       BYTEA NOT NULL UNIQUE,     -- SHA-256 of the link's bearer token
    user_id          TEXT NOT NULL,
    user_email       TEXT NOT NULL,
    request          TEXT NOT NULL,            -- JSON: type, providers, name, redirects …
    status           TEXT NOT NULL,            -- pending, completed, revoked
    credential_id    TEXT,
    failed_attempts  BIGINT NOT NULL DEFAULT 0,
    revoked_reason   TEXT,
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    completed_at     BIGINT,
    revoked_at       BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX connect_links_by_user ON connect_links (tenant_id, user_id, id);

CREATE TABLE connect_settings (
    tenant_id              TEXT PRIMARY KEY REFERENCES tenants (id),
    settings               TEXT NOT NULL,      -- JSON: branding, allow-lists, base URL
    secret                 BYTEA,               -- sealed whsec_ notify signing secret
    previous_secret        BYTEA,
    previous_secret_until  BIGINT,
    version                BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

-- Set for a delivery to a link's notify_url (endpoint_id is then the link id).
ALTER TABLE deliveries ADD COLUMN url TEXT;
