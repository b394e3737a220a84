//! The `AuthStore` queries.
use async_trait::async_trait;
use sqlx::Row;

use super::engine::DbRow;
use super::store::SqlStore;
use crate::clock::Millis;
use crate::model::external_auth::{ConnectorId, SealedConnector};
use crate::model::{AuditEntry, Event};
use crate::store::{AuthStore, LockoutPolicy, StoreResult};

const CONNECTOR_COLUMNS: &str = "tenant_id, id, name, config, version, created_at, updated_at";

fn connector(row: &DbRow) -> StoreResult<SealedConnector> {
    Ok(SealedConnector {
        tenant_id: row.try_get("tenant_id")?,
        id: ConnectorId(row.try_get("id")?),
        name: row.try_get("name")?,
        config: row.try_get("config")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl AuthStore for SqlStore {
    async fn insert_connector(&self, c: &SealedConnector, audit: &AuditEntry) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO auth_connectors ({CONNECTOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        let insert = sqlx::query(&sql)
            .bind(&c.tenant_id)
            .bind(c.id.as_str())
            .bind(&c.name)
            .bind(&c.config)
            .bind(c.version)
            .bind(c.created_at)
            .bind(c.updated_at);
        self.write_audited(insert, audit).await?;
        Ok(())
    }

    async fn get_connector(
        &self,
        tenant_id: &str,
        id: &ConnectorId,
    ) -> StoreResult<Option<SealedConnector>> {
        let sql = format!(
            "SELECT {CONNECTOR_COLUMNS} FROM auth_connectors WHERE tenant_id = $1 AND id = $2"
        );
        self.fetch_optional(&sql, &[tenant_id, id.as_str()], connector)
            .await
    }

    async fn list_connectors(&self, tenant_id: &str) -> StoreResult<Vec<SealedConnector>> {
        let sql = format!(
            "SELECT {CONNECTOR_COLUMNS} FROM auth_connectors WHERE tenant_id = $1 ORDER BY name"
        );
        self.fetch_all(&sql, &[tenant_id], connector).await
    }

    async fn update_connector(
        &self,
        c: &SealedConnector,
        expected_version: i64,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let update = sqlx::query(
            "UPDATE auth_connectors SET name = $3, config = $4, version = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND id = $2 AND version = $7",
        )
        .bind(&c.tenant_id)
        .bind(c.id.as_str())
        .bind(&c.name)
        .bind(&c.config)
        .bind(c.version)
        .bind(c.updated_at)
        .bind(expected_version);
        self.write_audited(update, audit).await
    }

    async fn delete_connector(
        &self,
        tenant_id: &str,
        id: &ConnectorId,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        self.delete_audited(
            "DELETE FROM auth_connectors WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            id.as_str(),
            audit,
        )
        .await
    }

    async fn locked_until(
        &self,
        tenant_id: &str,
        subjects: &[&str],
        now: Millis,
    ) -> StoreResult<Option<Millis>> {
        let marks: Vec<String> = (0..subjects.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT MAX(locked_until) AS until FROM auth_failures \
             WHERE tenant_id = $1 AND locked_until > $2 AND subject IN ({})",
            marks.join(", ")
        );
        let query = subjects
            .iter()
            .fold(sqlx::query(&sql).bind(tenant_id).bind(now), |q, s| {
                q.bind(*s)
            });
        let row = query.fetch_one(&mut self.read.acquire().await?).await?;
        Ok(row.try_get("until")?)
    }

    async fn count_failure(
        &self,
        tenant_id: &str,
        subject: &str,
        now: Millis,
        policy: &LockoutPolicy,
    ) -> StoreResult<Option<Millis>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO auth_failures (tenant_id, subject, failures, locked_until, updated_at) \
             VALUES ($1, $2, 1, 0, $3) ON CONFLICT (tenant_id, subject) DO UPDATE SET \
             failures = CASE WHEN auth_failures.updated_at < $4 THEN 1 \
                             ELSE auth_failures.failures + 1 END, \
             updated_at = $3 RETURNING failures, locked_until",
        )
        .bind(tenant_id)
        .bind(subject)
        .bind(now)
        .bind(now - policy.window_ms)
        .fetch_one(&mut *tx)
        .await?;
        let failures: i64 = row.try_get("failures")?;
        let lock_ms = policy.lock_ms(failures);
        if lock_ms == 0 {
            tx.commit().await?;
            return Ok(None);
        }
        let until = now + lock_ms;
        sqlx::query(
            "UPDATE auth_failures SET locked_until = $3 \
             WHERE tenant_id = $1 AND subject = $2 AND locked_until < $3",
        )
        .bind(tenant_id)
        .bind(subject)
        .bind(until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(until))
    }

    async fn record_login(
        &self,
        audit: &AuditEntry,
        event: &Event,
        forget: Option<&str>,
    ) -> StoreResult<()> {
        self.commit_login(super::batch::LoginJob {
            audit: audit.clone(),
            event: event.clone(),
            forget: forget.map(str::to_owned),
        })
        .await
    }
}
