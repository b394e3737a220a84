//! The audit log as a service: the chain job that links each tenant's records into a
//! hash chain and signs checkpoints of its head, retention that cuts the chain only
//! at a checkpoint, listing with filters, and verification (docs/audit.md).
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, Millis};
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::{AuditRecord, Checkpoint, Scope};
use crate::service::pagination::{self, Page};
use crate::service::{Caller, Vault};
use crate::store::{AuditFilter, Store};

mod chain;
mod verify;

pub use chain::AuditPass;
pub use verify::{Problem, ProblemKind};

/// How the audit job runs.
#[derive(Debug, Clone, Copy)]
pub struct AuditSettings {
    /// How often a chain's head is signed (if it moved).
    pub checkpoint_ms: Millis,
    /// Records older than this are pruned, at a checkpoint; 0 keeps them.
    pub retention_ms: Millis,
    /// How long a pass's lease lasts (the job's interval).
    pub lease_ms: Millis,
}

/// What `audit verify` found for one chain.
#[derive(Debug, Clone)]
pub struct Verification {
    pub tenant_id: String,
    /// Records checked, and the first and last sequence numbers among them.
    pub records: u64,
    pub first_seq: i64,
    pub last_seq: i64,
    /// Checkpoints whose signature held, and those signed under a key version this
    /// keyring lacks (not checked).
    pub checkpoints: u64,
    pub unverifiable_checkpoints: u64,
    /// Records the chain job has not reached yet (not covered by the check).
    pub unchained: u64,
    /// The first thing wrong, or `None`: the chain is intact.
    pub problem: Option<Problem>,
}

/// The audit log's service: chain job, retention, listing, verification.
pub struct AuditLog {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    instance: Arc<str>,
    settings: AuditSettings,
    /// When this replica last signed checkpoints, and last pruned.
    last_checkpoint: Mutex<Option<Millis>>,
    last_prune: Mutex<Option<Millis>>,
}

impl AuditLog {
    pub fn new(vault: &Vault, settings: AuditSettings) -> Self {
        Self {
            store: vault.store.clone(),
            keyring: vault.keyring.clone(),
            clock: vault.clock.clone(),
            metrics: vault.metrics.clone(),
            instance: vault.instance.clone(),
            settings,
            last_checkpoint: Mutex::default(),
            last_prune: Mutex::default(),
        }
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// The tenant a caller may read the audit of: its own, or with `admin` any
    /// (`tenant_id` empty: the caller's own; the operator's own chain is `""`).
    fn tenant_for(caller: &Caller, tenant_id: &str) -> Result<String> {
        if caller.scopes.contains(&Scope::Admin) {
            return Ok(if tenant_id.is_empty() {
                caller.tenant_id.clone()
            } else {
                tenant_id.to_owned()
            });
        }
        caller.require(Scope::AuditRead)?;
        if !tenant_id.is_empty() && tenant_id != caller.tenant_id {
            return Err(Error::PermissionDenied(
                "tenant_id: only an `admin` token reads another tenant's audit log".into(),
            ));
        }
        Ok(caller.tenant_id.clone())
    }

    /// A page of records in the order they were written.
    pub async fn list(
        &self,
        caller: &Caller,
        mut filter: AuditFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<AuditRecord>> {
        filter.tenant_id = Self::tenant_for(caller, &filter.tenant_id)?;
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            return Err(Error::invalid("since", "must be before `until`"));
        }
        let size = pagination::size(page_size)?;
        let after = pagination::decode_with(page_token, |id| id.parse::<i64>().is_ok())?
            .and_then(|id| id.parse::<i64>().ok());
        let mut items = self.store.list_audit(&filter, after, size + 1).await?;
        let next_page_token = if items.len() > size as usize {
            items.truncate(size as usize);
            items
                .last()
                .map(|r| pagination::encode(&r.id.to_string()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Verifies the chains `caller` may read: `tenant_id` (empty: its own), or with
    /// `admin` and `all`, every chain.
    pub async fn verify(
        &self,
        caller: &Caller,
        tenant_id: &str,
        all: bool,
    ) -> Result<Vec<Verification>> {
        let tenants = if all {
            caller.require(Scope::Admin)?;
            let mut t = self.store.audit_tenants().await?;
            if !t.iter().any(String::is_empty) {
                t.insert(0, String::new());
            }
            t
        } else {
            vec![Self::tenant_for(caller, tenant_id)?]
        };
        let mut out = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            out.push(self.verify_chain(&tenant).await?);
        }
        Ok(out)
    }

    /// The checkpoints of a tenant whose signatures hold, the number that could not
    /// be checked, or the first forged one.
    fn authentic(&self, all: Vec<Checkpoint>) -> (Vec<Checkpoint>, u64, Option<Problem>) {
        let mut good = Vec::with_capacity(all.len());
        let mut unverifiable = 0;
        for c in all {
            match self
                .keyring
                .audit_mac_matches(c.key_version, &c.mac, &c.message())
            {
                Some(true) => good.push(c),
                None => unverifiable += 1,
                Some(false) => {
                    let p = Problem {
                        kind: ProblemKind::Forged,
                        seq: c.seq,
                        detail: format!(
                            "the checkpoint at record {} does not carry a valid signature",
                            c.seq
                        ),
                    };
                    return (good, unverifiable, Some(p));
                }
            }
        }
        (good, unverifiable, None)
    }
}
