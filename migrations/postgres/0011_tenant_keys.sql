-- Per-tenant keys (docs/encryption.md, "Tenant keys"): each tenant's random 256-bit key,
-- sealed in format 2 under a master key. Every tenant-owned sealed value is sealed
-- under it (format 3). Deleting a tenant destroys this row first, then the tenant's rows.
CREATE TABLE tenant_keys (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id),
    sealed      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Set when a deletion destroyed the tenant's key; no new key is made after it.
ALTER TABLE tenants ADD COLUMN deleting_at BIGINT;
