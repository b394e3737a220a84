-- External auth: end users get a case-insensitively unique email and an external id;
-- per-tenant connectors to the tenant's own auth system; failure counters shared by
-- replicas; audit records gain a detail column.

ALTER TABLE end_users ADD COLUMN email_key TEXT;     -- lowercased email, unique per tenant
ALTER TABLE end_users ADD COLUMN external_id TEXT;   -- the user's id in the tenant's system
-- Existing duplicates (same email, different case or user) keep their email; only the
-- first user (by id) claims it.
UPDATE end_users SET email_key = lower(email)
 WHERE email IS NOT NULL AND email <> '' AND user_id = (
    SELECT min(o.user_id) FROM end_users o
     WHERE o.tenant_id = end_users.tenant_id AND lower(o.email) = lower(end_users.email));
CREATE UNIQUE INDEX end_users_by_email ON end_users (tenant_id, email_key);
CREATE UNIQUE INDEX end_users_by_external_id ON end_users (tenant_id, external_id);

CREATE TABLE auth_connectors (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    id          TEXT NOT NULL,                -- ac_<uuidv7>
    name        TEXT NOT NULL,
    config      BYTEA NOT NULL,                -- sealed JSON: templates (headers may hold keys), rules, page
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE auth_failures (
    tenant_id     TEXT NOT NULL,
    subject       TEXT NOT NULL,              -- 'user:<user_id>' or 'ip:<address>'
    failures      BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject)
);

ALTER TABLE audit_log ADD COLUMN detail TEXT NOT NULL DEFAULT '';   -- JSON, never a secret
