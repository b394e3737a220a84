//! The audit log as the chain job, `audit verify` and `ListAuditRecords` see it:
//! how a chain's head advances, records not yet chained, each tenant's chain in
//! sequence order, signed checkpoints, filtered pages, and pruning at a checkpoint.
use async_trait::async_trait;

use super::StoreResult;
use crate::clock::Millis;
use crate::model::audit::GENESIS;
use crate::model::{AuditRecord, Checkpoint};

/// Which records a listing wants; `None` matches everything.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub tenant_id: String,
    pub credential_id: Option<String>,
    pub user_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Written at or after (epoch ms).
    pub since: Option<Millis>,
    /// Written before (epoch ms).
    pub until: Option<Millis>,
}

/// Where a tenant's chain ends: its last sequence number and that record's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub tenant_id: String,
    pub seq: i64,
    pub hash: Vec<u8>,
}

impl Head {
    /// Where a tenant's chain starts: no record yet, and [`GENESIS`] for the first
    /// record's `prev_hash`.
    pub fn start(tenant_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            seq: 0,
            hash: GENESIS.to_vec(),
        }
    }

    /// Moves the head onto the next record, whose hash at a place `hash_at` gives;
    /// returns that record's place.
    pub fn advance(&mut self, hash_at: impl FnOnce(i64, &[u8]) -> [u8; 32]) -> Place {
        self.seq += 1;
        let hash = hash_at(self.seq, &self.hash).to_vec();
        Place {
            seq: self.seq,
            prev_hash: std::mem::replace(&mut self.hash, hash.clone()),
            hash,
        }
    }
}

/// A record's place in its chain: its sequence number, the hash of the record
/// before it, and its own hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// A chain's head moving from sequence number `from` (0: a new chain) to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadMove {
    pub from: i64,
    pub to: Head,
}

/// A written record's place in its chain, as the chain job computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub id: i64,
    pub place: Place,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Up to `limit` records the chain job has not reached, in id order.
    async fn unchained_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// The head of a tenant's chain as the chain job left it.
    async fn audit_head(&self, tenant_id: &str) -> StoreResult<Option<Head>>;
    /// Moves each chain's head from `from` (seq 0: none yet) and gives the records
    /// their places, all or none: false (nothing written) when a head moved or a
    /// record was chained meanwhile (another chain job raced).
    async fn chain_audit(&self, moves: &[HeadMove], links: &[ChainLink]) -> StoreResult<bool>;
    /// The heads past their last checkpoint.
    async fn unsigned_heads(&self) -> StoreResult<Vec<Head>>;
    /// Stores a checkpoint (one already at that place stays) and marks its head signed.
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()>;
    /// A tenant's checkpoints in sequence order.
    async fn checkpoints(&self, tenant_id: &str) -> StoreResult<Vec<Checkpoint>>;
    /// The sequence number of a tenant's last checkpoint signed before `before`.
    async fn checkpoint_before(&self, tenant_id: &str, before: Millis) -> StoreResult<Option<i64>>;
    /// Every tenant, and every chain the job has started (`""`: the operator's).
    async fn audit_tenants(&self) -> StoreResult<Vec<String>>;
    /// A tenant's chained records after `after_seq`, in sequence order (ties, which
    /// only tampering makes, by id).
    async fn chained_audit(
        &self,
        tenant_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// How many of a tenant's records the chain job has not reached.
    async fn unchained_count(&self, tenant_id: &str) -> StoreResult<u64>;
    /// A page of records in id order, after id `after`.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// Deletes a tenant's records up to sequence number `through` and the checkpoints
    /// before `keep_from`; returns the records deleted.
    async fn prune_audit(&self, tenant_id: &str, through: i64, keep_from: i64) -> StoreResult<u64>;
}
