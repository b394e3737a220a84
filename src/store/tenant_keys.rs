//! Tenant keys and tenant deletion. A tenant's key is stored only sealed under a
//! master key; deleting a tenant destroys the key (one committed write) before the
//! tenant's rows go, so whatever copy of those rows survives can no longer be opened.
use async_trait::async_trait;

use super::StoreResult;
use crate::clock::Millis;
use crate::model::AuditEntry;

#[async_trait]
pub trait TenantKeyStore: Send + Sync {
    /// The tenant's sealed key, if it has one.
    async fn tenant_key(&self, tenant_id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Stores `sealed` as the tenant's key unless it has one; returns the key stored
    /// now. `None` when the tenant does not exist or is being deleted (no key is ever
    /// made for it again).
    async fn create_tenant_key(
        &self,
        tenant_id: &str,
        sealed: &[u8],
        at: Millis,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// Marks the tenant as being deleted and destroys its key, in one transaction;
    /// false if there is no such tenant.
    async fn destroy_tenant_key(&self, tenant_id: &str, at: Millis) -> StoreResult<bool>;
    /// Deletes every row of the tenant and the tenant itself, and records `audit` (in
    /// another tenant's log), in one transaction; returns how many rows went.
    async fn delete_tenant_rows(&self, tenant_id: &str, audit: &AuditEntry) -> StoreResult<u64>;
}
