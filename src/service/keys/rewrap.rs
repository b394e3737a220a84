//! Rewrap: re-seals every tenant key not sealed under the active master key version,
//! and moves every value sealed directly under a master key (formats 1 and 2) under
//! its tenant's key (format 3). One replica at a time walks the columns (the `rewrap` job
//! lease, renewed batch by batch); each batch is one transaction whose writes are
//! fenced on the exact bytes read, so a value changed meanwhile (a refresh, an update)
//! is left to its writer, which sealed it under the active key anyway. A pass that
//! dies leaves every value either old or new, both readable; the next pass finds
//! what is left, since it selects by header, not by position.
use std::sync::Arc;
use std::time::Duration;

use super::columns::{Aad, current_head};
use crate::clock::{Clock, Millis};
use crate::crypto::Keyring;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::service::tenant_keys::TenantKeys;
use crate::store::{Resealed, SealedColumn, SealedValue, Store};

/// The lease's name in `job_leases`.
const JOB: &str = "rewrap";
/// How long a batch may take before another replica may take the job over.
const LEASE_MS: Millis = 60_000;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// Re-sealed under the active version.
    pub rewrapped: u64,
    /// Changed by someone else between read and write; their write is current.
    pub raced: u64,
    /// Could not be opened (a missing key version, or tampered); left untouched.
    pub failed: u64,
}

/// How a pass is paced.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Values per batch (one transaction).
    pub batch: u32,
    /// Values per second at most; 0 = as fast as the database allows.
    pub rate: u32,
}

/// The rewrap job.
pub struct Rewrap {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    tenant_keys: Arc<TenantKeys>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    instance: Arc<str>,
    pace: Pace,
    /// One pass at a time in this process (the lease keeps other processes out).
    running: tokio::sync::Mutex<()>,
}

impl Rewrap {
    pub fn new(vault: &crate::service::Vault, pace: Pace) -> Self {
        Self {
            store: vault.store.clone(),
            keyring: vault.keyring.clone(),
            tenant_keys: vault.tenant_keys().clone(),
            clock: vault.clock.clone(),
            metrics: vault.metrics.clone(),
            instance: vault.instance.clone(),
            pace: Pace {
                batch: pace.batch.clamp(1, 10_000),
                ..pace
            },
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// One pass over every column if this replica gets the lease; `None` when another
    /// replica holds it, or a pass is running here already.
    pub async fn pass(&self) -> Result<Option<Rewrapped>> {
        let Ok(_one) = self.running.try_lock() else {
            return Ok(None);
        };
        if !self.renew_lease().await? {
            return Ok(None);
        }
        let mut total = Rewrapped::default();
        for column in SealedColumn::ALL {
            if !self.column(column, &mut total).await? {
                return Ok(Some(total));
            }
        }
        // Hand the lease back at once, so a pass asked for elsewhere need not wait.
        let now = self.clock.now_ms();
        self.store
            .acquire_job_lease(JOB, &self.instance, now, now)
            .await?;
        Ok(Some(total))
    }

    async fn renew_lease(&self) -> Result<bool> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .acquire_job_lease(JOB, &self.instance, now, now.saturating_add(LEASE_MS))
            .await?)
    }

    /// Walks one column in key order, a batch at a time; false if the lease was lost.
    async fn column(&self, column: SealedColumn, total: &mut Rewrapped) -> Result<bool> {
        let mut after: Option<(String, String)> = None;
        loop {
            let current = current_head(column, self.keyring.active_version());
            let batch = self
                .store
                .sealed_batch(
                    column,
                    after.as_ref().map(|(t, i)| (t.as_str(), i.as_str())),
                    &current,
                    self.pace.batch,
                )
                .await?;
            let Some(last) = batch.last() else {
                return Ok(true);
            };
            after = Some((last.tenant_id.clone(), last.id.clone()));
            let started = std::time::Instant::now();
            let done = self.batch(column, &batch).await?;
            total.rewrapped += done.rewrapped;
            total.raced += done.raced;
            total.failed += done.failed;
            self.metrics
                .count_rewrap(done.rewrapped, done.raced, done.failed);
            self.throttle(batch.len(), started.elapsed()).await;
            if !self.renew_lease().await? {
                tracing::warn!("rewrap: the job lease passed to another replica; stopping");
                return Ok(false);
            }
        }
    }

    /// Opens and re-seals one batch and writes it, fenced on the bytes read.
    async fn batch(&self, column: SealedColumn, values: &[SealedValue]) -> Result<Rewrapped> {
        let mut failed = 0;
        let mut resealed = Vec::with_capacity(values.len());
        for value in values {
            match self.reseal(column, value).await {
                Ok(new) => resealed.push(Resealed {
                    tenant_id: &value.tenant_id,
                    id: &value.id,
                    old: &value.blob,
                    new,
                }),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(
                        column = column.name(),
                        tenant = %value.tenant_id,
                        id = %value.id,
                        error = %e,
                        "rewrap: value left as it is"
                    );
                }
            }
        }
        let written = self.store.replace_sealed(column, &resealed).await?;
        Ok(Rewrapped {
            rewrapped: written,
            raced: resealed.len() as u64 - written,
            failed,
        })
    }

    /// The value sealed where rewrap puts it: a tenant key under the active master
    /// key, anything else under its tenant's key. Errs (and the value stays as it is)
    /// when it does not open or its tenant is being deleted.
    async fn reseal(&self, column: SealedColumn, value: &SealedValue) -> Result<Vec<u8>> {
        let plain = self.open_value(column, value).await?;
        let aad = Aad::of(column, value);
        if column == SealedColumn::TenantKey {
            return Ok(self.keyring.seal(&aad.context(), &plain));
        }
        self.tenant_keys.seal(&aad.context(), &plain).await
    }

    /// What a value of `column` opens to, as the vault opens it (tests use this to
    /// show what a copy of a row would give away).
    #[doc(hidden)]
    pub async fn open_value(
        &self,
        column: SealedColumn,
        value: &SealedValue,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let aad = Aad::of(column, value);
        self.tenant_keys
            .try_open(&aad.context(), &value.blob)
            .await?
            .map_err(|e| crate::error::Error::from_crypto(e, &value.id))
    }

    /// Re-seals every value of `column` directly under the active master key (format
    /// 2), as versions before tenant keys sealed them; returns how many. Only for
    /// tests of upgraded databases: the vault itself never moves values this way.
    #[doc(hidden)]
    pub async fn seal_as_before_tenant_keys(&self, column: SealedColumn) -> Result<u64> {
        let (mut after, mut moved) = (None::<(String, String)>, 0);
        loop {
            let key = after.as_ref().map(|(t, i)| (t.as_str(), i.as_str()));
            let values = self.store.sealed_batch(column, key, &[0xff], 1000).await?;
            let Some(last) = values.last() else {
                return Ok(moved);
            };
            after = Some((last.tenant_id.clone(), last.id.clone()));
            let mut resealed = Vec::with_capacity(values.len());
            for value in &values {
                let plain = self.open_value(column, value).await?;
                let aad = Aad::of(column, value);
                resealed.push(Resealed {
                    tenant_id: &value.tenant_id,
                    id: &value.id,
                    old: &value.blob,
                    new: self.keyring.seal(&aad.context(), &plain),
                });
            }
            moved += self.store.replace_sealed(column, &resealed).await?;
        }
    }

    /// Sleeps what is left of the time `values` may take at the configured rate.
    async fn throttle(&self, values: usize, took: Duration) {
        if self.pace.rate == 0 {
            return;
        }
        let budget = Duration::from_secs_f64(values as f64 / f64::from(self.pace.rate));
        if let Some(rest) = budget.checked_sub(took) {
            tokio::time::sleep(rest).await;
        }
    }
}
