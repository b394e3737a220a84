//! The `TenantKeyStore` queries.
use async_trait::async_trait;

use super::audit_writes::append_audit;
use super::store::SqlStore;
use crate::clock::Millis;
use crate::model::AuditEntry;
use crate::store::{StoreResult, TenantKeyStore};

/// Every table holding a tenant's rows, children before the tables they refer to;
/// `tenants` itself goes last.
const TENANT_TABLES: [&str; 17] = [
    "deliveries",
    "events",
    "credentials",
    "idempotency_keys",
    "oauth_states",
    "oauth_providers",
    "connect_links",
    "connect_settings",
    "auth_failures",
    "auth_connectors",
    "webhook_endpoints",
    "end_users",
    "service_tokens",
    "audit_checkpoints",
    "audit_heads",
    "audit_log",
    "tenant_keys",
];

#[async_trait]
impl TenantKeyStore for SqlStore {
    async fn tenant_key(&self, tenant_id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM tenant_keys WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(&mut self.read.acquire().await?)
                .await?,
        )
    }

    async fn create_tenant_key(
        &self,
        tenant_id: &str,
        sealed: &[u8],
        at: Millis,
    ) -> StoreResult<Option<Vec<u8>>> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, sealed, created_at) \
             SELECT id, $2, $3 FROM tenants WHERE id = $1 AND deleting_at IS NULL \
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(sealed)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let stored = sqlx::query_scalar("SELECT sealed FROM tenant_keys WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn destroy_tenant_key(&self, tenant_id: &str, at: Millis) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let marked =
            sqlx::query("UPDATE tenants SET deleting_at = COALESCE(deleting_at, $2) WHERE id = $1")
                .bind(tenant_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM tenant_keys WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(marked.rows_affected() == 1)
    }

    async fn delete_tenant_rows(&self, tenant_id: &str, audit: &AuditEntry) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let mut deleted = 0;
        for table in TENANT_TABLES.into_iter().chain(["tenants"]) {
            let key = if table == "tenants" {
                "id"
            } else {
                "tenant_id"
            };
            let done = sqlx::query(&format!("DELETE FROM {table} WHERE {key} = $1"))
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?;
            deleted += done.rows_affected();
        }
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
