-- Hosted connect: links, per-tenant page settings, and deliveries to a link's
-- notify_url (signed with the tenant's connect secret instead of an endpoint's).

CREATE TABLE connect_links (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    id               TEXT NOT NULL,            -- cl_<uuidv7>
    token_hash       BLOB NOT NULL UNIQUE,     -- SHA-256 of the link's bearer token
    user_id          TEXT NOT NULL,
    user_email       TEXT NOT NULL,
    request          TEXT NOT NULL,            -- JSON: type, providers, name, redirects …
    status           TEXT NOT NULL,            -- pending, completed, revoked
    credential_id    TEXT,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    revoked_reason   TEXT,
    expires_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER,
    revoked_at       INTEGER,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX connect_links_by_user ON connect_links (tenant_id, user_id, id);

CREATE TABLE connect_settings (
    tenant_id              TEXT PRIMARY KEY REFERENCES tenants (id),
    settings               TEXT NOT NULL,      -- JSON: branding, allow-lists, base URL
    secret                 BLOB,               -- sealed whsec_ notify signing secret
    previous_secret        BLOB,
    previous_secret_until  INTEGER,
    version                INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);

-- Set for a delivery to a link's notify_url (endpoint_id is then the link id).
ALTER TABLE deliveries ADD COLUMN url TEXT;
