-- Expiry scanning, webhook endpoints and deliveries.

-- When the scanner will consider a credential expired: its own expiry, or for an OAuth
-- credential that cannot be refreshed, its access token's. Derived on every write.
ALTER TABLE credentials ADD COLUMN lapses_at INTEGER;
-- The smallest `credential.expiring` horizon already announced (milliseconds).
ALTER TABLE credentials ADD COLUMN expiry_warned_ms INTEGER;
UPDATE credentials SET lapses_at = CASE
    WHEN kind = 'oauth2' AND next_refresh_at IS NULL AND token_expires_at IS NOT NULL
         AND (expires_at IS NULL OR token_expires_at < expires_at) THEN token_expires_at
    ELSE expires_at END;
CREATE INDEX credentials_lapsing ON credentials (lapses_at)
    WHERE status = 'active' AND lapses_at IS NOT NULL;

-- Events not yet fanned out to deliveries.
ALTER TABLE events ADD COLUMN dispatched_at INTEGER;
CREATE INDEX events_undispatched ON events (id) WHERE dispatched_at IS NULL;

CREATE TABLE webhook_endpoints (
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    id                     TEXT NOT NULL,
    url                    TEXT NOT NULL,
    event_types            TEXT NOT NULL,     -- JSON array; empty = every type
    enabled                INTEGER NOT NULL,  -- 0 or 1
    disabled_reason        TEXT,
    secret                 BLOB NOT NULL,     -- sealed whsec_ secret
    previous_secret        BLOB,              -- sealed; still signed with until:
    previous_secret_until  INTEGER,
    version                INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    status           TEXT NOT NULL,          -- pending, delivered, dead
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_status      INTEGER,                -- HTTP status of the last attempt
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_tenant ON deliveries (tenant_id, id);
