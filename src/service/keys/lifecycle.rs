//! The cluster's key versions: which one seals new values (one fact in the database,
//! not each replica's configuration), which each replica holds, and the operator's
//! moves: activate a version every live replica holds, retire one nothing is sealed
//! under any more.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, Millis};
use crate::crypto::{Keyring, LEGACY_FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::service::{Caller, Vault};
use crate::store::{Heartbeat, KeyVersionRow, ReplicaRow, SealedCount, Store};

/// Format-1 seals under one key beyond which its random-nonce collision risk is no
/// longer negligible (NIST SP 800-38D caps one key at 2^32 random-nonce encryptions).
pub const LEGACY_SEAL_WARNING: u64 = 1 << 31;

/// What `keys status` shows.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub active: u32,
    pub versions: Vec<KeyVersionRow>,
    pub sealed: Vec<SealedCount>,
    pub replicas: Vec<ReplicaRow>,
}

impl KeyStatus {
    /// How many values are sealed under `version`, in any format.
    pub fn values_under(&self, version: u32) -> u64 {
        values_under(&self.sealed, version)
    }
}

fn values_under(sealed: &[SealedCount], version: u32) -> u64 {
    sealed
        .iter()
        .filter(|c| c.key_version == version)
        .map(|c| c.values)
        .sum()
}

/// The cluster's active version, as the rows of `key_versions` say.
fn active_of(versions: &[KeyVersionRow]) -> Option<u32> {
    versions
        .iter()
        .find(|v| v.state == "active")
        .map(|v| v.version)
}

/// The key lifecycle: heartbeats, activation, retirement, status.
pub struct KeyLifecycle {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    instance: Arc<str>,
    /// A replica is live while its last heartbeat is younger than this.
    live_ms: Millis,
    /// Seal counts already flushed, per version.
    flushed: Mutex<BTreeMap<u32, u64>>,
}

impl KeyLifecycle {
    /// `heartbeat_ms` is how often [`KeyLifecycle::beat`] runs; a replica silent for
    /// three of them no longer counts as live.
    pub fn new(vault: &Vault, heartbeat_ms: Millis) -> Self {
        Self {
            store: vault.store.clone(),
            keyring: vault.keyring.clone(),
            clock: vault.clock.clone(),
            metrics: vault.metrics.clone(),
            instance: vault.instance.clone(),
            live_ms: heartbeat_ms.saturating_mul(3),
            flushed: Mutex::default(),
        }
    }

    /// At start: adopts the cluster's active version (the configured one, or this
    /// keyring's highest, when the database has none yet) and reports this replica.
    /// Refuses when this keyring lacks the active version: every value it sealed
    /// would be unreadable by the rest of the cluster.
    pub async fn join(&self, configured: Option<u32>) -> Result<u32> {
        // Registers this keyring's versions first, so a version's first row carries
        // the format-1 values already sealed under it.
        self.beat().await?;
        let proposed = configured.unwrap_or_else(|| self.keyring.active_version());
        let active = self.store.init_active_key(proposed, self.now()).await?;
        if self.keyring.set_active(active).is_err() {
            self.leave().await?;
            let held: Vec<String> = self.keyring.versions().map(|v| v.to_string()).collect();
            return Err(Error::FailedPrecondition(format!(
                "the cluster's active master key version is {active}, which this keyring \
                 (versions {}) does not hold: add key version {active} to \
                 CREDVAULT_MASTER_KEYS before starting this replica",
                held.join(", ")
            )));
        }
        if configured.is_some_and(|c| c != active) {
            tracing::warn!(
                configured = configured,
                active,
                "active_key_version is ignored: the cluster's active version is kept in the \
                 database; change it with `credvault keys activate`"
            );
        }
        Ok(active)
    }

    /// Reports this replica's versions and seal counts, and follows the cluster's
    /// active version: one read of `key_versions` and one write per beat.
    pub async fn beat(&self) -> Result<()> {
        let versions: Vec<u32> = self.keyring.versions().collect();
        let known = self.store.key_versions().await?;
        let legacy = if versions
            .iter()
            .all(|v| known.iter().any(|k| k.version == *v))
        {
            Vec::new()
        } else {
            self.legacy_counts().await?
        };
        let counts = self.keyring.seal_counts();
        let deltas: Vec<(u32, u64)> = {
            let flushed = self.flushed.lock().unwrap_or_else(|e| e.into_inner());
            counts
                .iter()
                .map(|(v, n)| (*v, n - flushed.get(v).copied().unwrap_or(0)))
                .collect()
        };
        let beat = Heartbeat {
            replica: &self.instance,
            versions: &versions,
            seals: &deltas,
            at: self.now(),
        };
        self.store.heartbeat(&beat, &legacy).await?;
        self.flushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(counts);
        self.follow(active_of(&known));
        self.warn_on_legacy_seals(&known);
        Ok(())
    }

    /// Forgets this replica at a clean shutdown, so activation need not wait for it.
    pub async fn leave(&self) -> Result<()> {
        Ok(self.store.leave(&self.instance).await?)
    }

    fn follow(&self, active: Option<u32>) {
        let Some(active) = active else {
            return;
        };
        if active != self.keyring.active_version() && self.keyring.set_active(active).is_err() {
            tracing::error!(
                active,
                "the cluster's active master key version is not in this keyring; this \
                 replica keeps sealing under its previous version until it is restarted with it"
            );
        }
    }

    /// The format-1 values under each version: the legacy seal count a version's
    /// first row starts from.
    async fn legacy_counts(&self) -> Result<Vec<(u32, u64)>> {
        let mut legacy: BTreeMap<u32, u64> = BTreeMap::new();
        for c in self.store.sealed_counts().await? {
            if c.format == LEGACY_FORMAT_VERSION {
                *legacy.entry(c.key_version).or_default() += c.values;
            }
        }
        Ok(legacy.into_iter().collect())
    }

    fn warn_on_legacy_seals(&self, versions: &[KeyVersionRow]) {
        for v in versions {
            self.metrics.set_legacy_seals(v.version, v.legacy_seals);
            if v.legacy_seals >= LEGACY_SEAL_WARNING && v.state != "retired" {
                tracing::warn!(
                    key_version = v.version,
                    legacy_seals = v.legacy_seals,
                    "master key version {} made at least 2^31 format-1 seals: activate a new \
                     version and rewrap (docs/operations.md, key rotation)",
                    v.version
                );
            }
        }
    }

    fn live_since(&self) -> Millis {
        self.now().saturating_sub(self.live_ms)
    }

    pub async fn status(&self) -> Result<KeyStatus> {
        let versions = self.store.key_versions().await?;
        Ok(KeyStatus {
            active: active_of(&versions).unwrap_or_else(|| self.keyring.active_version()),
            versions,
            sealed: self.store.sealed_counts().await?,
            replicas: self.store.live_replicas(self.live_since()).await?,
        })
    }

    /// How many values are not yet where rewrap puts them: tenant keys under the
    /// active version, everything else under its tenant's key.
    pub async fn stale(&self) -> Result<u64> {
        let active = self.keyring.active_version();
        Ok(self
            .store
            .sealed_counts()
            .await?
            .iter()
            .filter(|c| !super::columns::is_current(c, active))
            .map(|c| c.values)
            .sum())
    }

    /// Makes `version` the cluster's active version once every live replica holds it.
    pub async fn activate(&self, caller: &Caller, version: u32) -> Result<()> {
        let versions = self.store.key_versions().await?;
        if versions
            .iter()
            .any(|v| v.version == version && v.state == "retired")
        {
            return Err(Error::FailedPrecondition(format!(
                "version: key version {version} is retired and cannot be activated again"
            )));
        }
        let replicas = self.store.live_replicas(self.live_since()).await?;
        let mut lacking: Vec<&str> = replicas
            .iter()
            .filter(|r| !r.versions.contains(&version))
            .map(|r| r.id.as_str())
            .collect();
        if !self.keyring.holds(version) && !lacking.contains(&&*self.instance) {
            lacking.insert(0, &self.instance);
        }
        if !lacking.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "version: not every live replica holds key version {version} (lacking: {}); \
                 add it to every replica's keyring and restart them first",
                lacking.join(", ")
            )));
        }
        self.store.activate_key(version, self.now()).await?;
        self.keyring.set_active(version).ok();
        self.audit(caller, "key.activate", version).await?;
        tracing::info!(key_version = version, "master key version activated");
        Ok(())
    }

    /// Marks `version` retired once nothing is sealed under it and it is not active.
    pub async fn retire(&self, caller: &Caller, version: u32) -> Result<()> {
        let versions = self.store.key_versions().await?;
        if active_of(&versions) == Some(version) {
            return Err(Error::FailedPrecondition(format!(
                "version: key version {version} is active; activate another one first"
            )));
        }
        let remaining = values_under(&self.store.sealed_counts().await?, version);
        if remaining > 0 {
            return Err(Error::FailedPrecondition(format!(
                "version: {remaining} values are still sealed under key version {version}; \
                 run `credvault keys rewrap` and retry"
            )));
        }
        if !self.store.retire_key(version, self.now()).await? {
            return Err(Error::FailedPrecondition(format!(
                "version: key version {version} became active meanwhile"
            )));
        }
        self.audit(caller, "key.retire", version).await?;
        tracing::info!(key_version = version, "master key version retired");
        Ok(())
    }

    /// Records that `caller` ran a rewrap pass (towards the active version).
    pub async fn record_rewrap(&self, caller: &Caller) -> Result<()> {
        self.audit(caller, "key.rewrap", self.keyring.active_version())
            .await
    }

    async fn audit(&self, caller: &Caller, action: &'static str, version: u32) -> Result<()> {
        let entry = caller.audit(self.now(), action, &format!("key:{version}"), "");
        Ok(self.store.insert_audit(&entry).await?)
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }
}
