//! Forgetting on schedule: used request ids, expired OAuth states, and — after
//! `event_retention_days` — events and finished webhook deliveries. One replica at a
//! time runs a pass, under the `retention` job lease; a replica that dies mid-pass
//! leaves the lease to run out, and the next holder carries on (every delete is
//! idempotent and batched, so a pass can stop anywhere).
use std::sync::Arc;
use std::time::Duration;

use super::Vault;
use crate::clock::{Clock, Millis};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::{Store, StoreResult};

/// The lease's name in `job_leases`.
const JOB: &str = "retention";
/// Rows deleted per statement, so no transaction holds its locks for long.
const BATCH: u32 = 1000;

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub request_ids: u64,
    pub oauth_states: u64,
    pub deliveries: u64,
    pub events: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.request_ids + self.oauth_states + self.deliveries + self.events
    }
}

/// The retention job: what it deletes, after how long, and whose turn it is.
pub struct Retention {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    instance: Arc<str>,
    idempotency_ttl_ms: Millis,
    event_retention_ms: Millis,
    lease_ms: Millis,
}

impl Retention {
    /// A job whose passes come `every` so often: the lease a pass takes lasts as long,
    /// so the other replicas skip their passes in between.
    pub fn new(vault: &Vault, every: Duration) -> Self {
        Self {
            store: vault.store.clone(),
            clock: vault.clock.clone(),
            metrics: vault.metrics.clone(),
            instance: vault.instance.clone(),
            idempotency_ttl_ms: vault.settings.idempotency_ttl_ms,
            event_retention_ms: vault.settings.event_retention_ms,
            lease_ms: Millis::try_from(every.as_millis()).unwrap_or(Millis::MAX),
        }
    }

    /// One pass if this replica gets the lease; `None` when another holds it.
    pub async fn pass(&self) -> Result<Option<Pruned>> {
        let now = self.clock.now_ms();
        let until = now.saturating_add(self.lease_ms);
        if !self
            .store
            .acquire_job_lease(JOB, &self.instance, now, until)
            .await?
        {
            return Ok(None);
        }
        let mut pruned = Pruned {
            request_ids: self
                .store
                .prune_idempotency(now - self.idempotency_ttl_ms)
                .await?,
            oauth_states: self.store.prune_oauth_states(now).await?,
            ..Pruned::default()
        };
        if self.event_retention_ms > 0 {
            let before = now - self.event_retention_ms;
            // Deliveries first: an event goes once none of its deliveries is left.
            pruned.deliveries = drain(|| self.store.prune_deliveries(before, BATCH)).await?;
            pruned.events = drain(|| self.store.prune_events(before, BATCH)).await?;
        }
        for (kind, rows) in [
            ("request_ids", pruned.request_ids),
            ("oauth_states", pruned.oauth_states),
            ("deliveries", pruned.deliveries),
            ("events", pruned.events),
        ] {
            self.metrics.pruned(kind, rows);
        }
        Ok(Some(pruned))
    }
}

/// Runs a batched delete until a batch comes back short; returns the rows deleted.
async fn drain<F, Fut>(mut batch: F) -> StoreResult<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<u64>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < u64::from(BATCH) {
            return Ok(total);
        }
    }
}
