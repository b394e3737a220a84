-- Retention: events and finished deliveries older than `event_retention_days` are
-- pruned by a background job that one replica at a time runs, under a lease.

CREATE TABLE job_leases (
    job          TEXT PRIMARY KEY,   -- e.g. 'retention'
    owner        TEXT NOT NULL,      -- the instance id holding it
    lease_until  BIGINT NOT NULL     -- epoch ms; anyone may take it after this
);

CREATE INDEX events_by_age ON events (created_at);
CREATE INDEX deliveries_finished_by_age ON deliveries (updated_at) WHERE status <> 'pending';
