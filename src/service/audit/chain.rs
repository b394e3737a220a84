//! The chain job: gives records their place in their tenant's chain (sequence
//! number, previous hash, hash), signs each moved head in a checkpoint, and prunes
//! what retention let go, cutting only at a checkpoint so what remains still
//! verifies. One replica at a time runs it, under the `audit` job lease; two that
//! overlap anyway cannot fork a chain (each head moves by compare-and-set).
use std::collections::BTreeMap;
use std::sync::Mutex;

use super::AuditLog;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::model::{AuditRecord, Checkpoint};
use crate::store::{ChainLink, Head, HeadMove};

/// The lease's name in `job_leases`.
const JOB: &str = "audit";
/// Records chained per transaction.
const BATCH: u32 = 1000;
/// How often a replica holding the lease prunes.
const PRUNE_EVERY_MS: Millis = 60 * 60 * 1000;
/// Sequence numbers deleted per statement when pruning.
const PRUNE_STEP: i64 = 1000;

/// What one pass of the job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditPass {
    pub chained: u64,
    pub checkpoints: u64,
    pub pruned: u64,
}

impl AuditLog {
    /// One pass if this replica gets the lease (`None` when another holds it):
    /// chain what is waiting; every `checkpoint_ms`, sign and prune.
    pub async fn pass(&self) -> Result<Option<AuditPass>> {
        let now = self.now();
        let until = now.saturating_add(self.settings.lease_ms);
        if !self
            .store
            .acquire_job_lease(JOB, &self.instance, now, until)
            .await?
        {
            return Ok(None);
        }
        let mut pass = AuditPass {
            chained: self.chain().await?,
            ..AuditPass::default()
        };
        if due(&self.last_checkpoint, now, self.settings.checkpoint_ms) {
            pass.checkpoints = self.checkpoint().await?;
        }
        if due(&self.last_prune, now, PRUNE_EVERY_MS) {
            pass.pruned = self.prune().await?;
        }
        Ok(Some(pass))
    }

    /// Chains every record waiting, in batches; returns how many it chained. A batch
    /// another replica chained meanwhile is read again.
    pub async fn chain(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let batch = self.store.unchained_audit(BATCH).await?;
            let n = batch.len() as u64;
            if n == 0 {
                return Ok(total);
            }
            let (moves, links) = self.links(batch).await?;
            if self.store.chain_audit(&moves, &links).await? {
                total += n;
                self.metrics.audit_chained(n);
            } else {
                tracing::debug!("another replica chained audit records meanwhile");
            }
            if n < u64::from(BATCH) {
                return Ok(total);
            }
        }
    }

    /// Each record's place after its chain's head, and where each head moves.
    async fn links(&self, batch: Vec<AuditRecord>) -> Result<(Vec<HeadMove>, Vec<ChainLink>)> {
        let mut by_tenant: BTreeMap<String, Vec<AuditRecord>> = BTreeMap::new();
        for r in batch {
            by_tenant.entry(r.tenant_id.clone()).or_default().push(r);
        }
        let mut moves = Vec::with_capacity(by_tenant.len());
        let mut links = Vec::new();
        for (tenant_id, records) in by_tenant {
            let mut head = match self.store.audit_head(&tenant_id).await? {
                Some(head) => head,
                None => Head::start(&tenant_id),
            };
            let from = head.seq;
            for r in records {
                let place = head.advance(|seq, prev| r.chain_hash(seq, prev));
                links.push(ChainLink { id: r.id, place });
            }
            moves.push(HeadMove { from, to: head });
        }
        Ok((moves, links))
    }

    /// Signs every head that moved since its last checkpoint, with the audit key of
    /// the active master key version; returns how many it signed.
    pub async fn checkpoint(&self) -> Result<u64> {
        let at = self.now();
        let version = self.keyring.active_version();
        let heads = self.store.unsigned_heads().await?;
        for h in &heads {
            let message = Checkpoint::signed_bytes(&h.tenant_id, h.seq, &h.hash, at);
            let mac = self.keyring.audit_mac(version, &message).ok_or_else(|| {
                Error::Unavailable(format!("master key version {version} is not held"))
            })?;
            let checkpoint = Checkpoint {
                tenant_id: h.tenant_id.clone(),
                seq: h.seq,
                hash: h.hash.clone(),
                at,
                key_version: version,
                mac,
            };
            self.store.insert_checkpoint(&checkpoint).await?;
        }
        Ok(heads.len() as u64)
    }

    /// Deletes, per chain, the records up to the last checkpoint signed before the
    /// retention horizon; that checkpoint stays, anchoring what remains.
    pub async fn prune(&self) -> Result<u64> {
        if self.settings.retention_ms <= 0 {
            return Ok(0);
        }
        let before: Millis = self.now() - self.settings.retention_ms;
        let mut total = 0;
        for tenant in self.store.audit_tenants().await? {
            let Some(cut) = self.store.checkpoint_before(&tenant, before).await? else {
                continue;
            };
            let oldest = self.store.chained_audit(&tenant, i64::MIN, 1).await?;
            let mut through = oldest.first().and_then(|r| r.seq).map_or(cut, |s| s - 1);
            loop {
                through = through.saturating_add(PRUNE_STEP).min(cut);
                total += self.store.prune_audit(&tenant, through, cut).await?;
                if through >= cut {
                    break;
                }
            }
        }
        self.metrics.pruned("audit_records", total);
        Ok(total)
    }
}

/// Whether `every` has passed since `last` (and if so, notes `now`).
fn due(last: &Mutex<Option<Millis>>, now: Millis, every: Millis) -> bool {
    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
    let due = last.is_none_or(|at| now - at >= every);
    if due {
        *last = Some(now);
    }
    due
}
