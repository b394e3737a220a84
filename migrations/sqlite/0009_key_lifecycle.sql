-- Key lifecycle: the active master key version is a cluster-wide fact, replicas report
-- which versions their keyrings hold, and seals are counted per version.

CREATE TABLE key_versions (
    version       INTEGER PRIMARY KEY,   -- master key version
    state         TEXT NOT NULL,        -- 'active' (exactly one), 'ready' or 'retired'
    seals         INTEGER NOT NULL,      -- seals made under it, flushed by heartbeats
    legacy_seals  INTEGER NOT NULL,      -- format-1 values found under it when first counted
    updated_at    INTEGER NOT NULL
);

CREATE UNIQUE INDEX one_active_key ON key_versions (state) WHERE state = 'active';

CREATE TABLE replicas (
    id            TEXT PRIMARY KEY,     -- the instance id
    key_versions  TEXT NOT NULL,        -- comma-separated versions its keyring holds
    seen_at       INTEGER NOT NULL       -- its last heartbeat, epoch ms
);
