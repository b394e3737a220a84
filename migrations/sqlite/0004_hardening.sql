-- Token expiry, and a key check value per master key version (a wrong key refuses to
-- start instead of looking like tampering).

ALTER TABLE service_tokens ADD COLUMN expires_at INTEGER;

CREATE TABLE key_checks (
    version      INTEGER PRIMARY KEY,   -- master key version
    check_value  BLOB NOT NULL,         -- HMAC-SHA256(derived check key, fixed label)
    created_at   INTEGER NOT NULL
);
