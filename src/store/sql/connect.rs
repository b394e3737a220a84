//! The `ConnectStore` queries.
use async_trait::async_trait;
use sqlx::Row;

use super::audit_writes::append_audit;
use super::engine::{Db, DbRow};
use super::statements::{DbQuery, insert_event_query, push_conditions};
use super::store::SqlStore;
use crate::clock::Millis;
use crate::model::AuditEntry;
use crate::model::connect::{
    ConnectLink, ConnectSettings, LinkChange, LinkId, LinkRequest, LinkStatus,
    REVOKED_TOO_MANY_ATTEMPTS, SealedConnectSettings,
};
use crate::store::{
    AttemptCount, ConnectNotice, ConnectStore, LinkFilter, StoreError, StoreResult,
};

const LINK_COLUMNS: &str = "tenant_id, id, token_hash, user_id, user_email, request, status, \
     credential_id, failed_attempts, revoked_reason, expires_at, created_at, updated_at, \
     completed_at, revoked_at, signed_in_browser";
const SETTINGS_COLUMNS: &str =
    "tenant_id, settings, secret, previous_secret, previous_secret_until, version, updated_at";
fn link(row: &DbRow) -> StoreResult<ConnectLink> {
    let request: String = row.try_get("request")?;
    let status: String = row.try_get("status")?;
    Ok(ConnectLink {
        tenant_id: row.try_get("tenant_id")?,
        id: LinkId(row.try_get("id")?),
        token_hash: row.try_get("token_hash")?,
        user_id: row.try_get("user_id")?,
        user_email: row.try_get("user_email")?,
        request: serde_json::from_str::<LinkRequest>(&request)
            .map_err(|_| StoreError::Corrupt("connect link request".into()))?,
        status: LinkStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt("connect link status".into()))?,
        credential_id: row.try_get("credential_id")?,
        failed_attempts: row.try_get("failed_attempts")?,
        revoked_reason: row.try_get("revoked_reason")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        completed_at: row.try_get("completed_at")?,
        revoked_at: row.try_get("revoked_at")?,
        signed_in_browser: row.try_get("signed_in_browser")?,
    })
}

fn settings(row: &DbRow) -> StoreResult<SealedConnectSettings> {
    let text: String = row.try_get("settings")?;
    Ok(SealedConnectSettings {
        tenant_id: row.try_get("tenant_id")?,
        settings: serde_json::from_str::<ConnectSettings>(&text)
            .map_err(|_| StoreError::Corrupt("connect settings".into()))?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_secret_until: row.try_get("previous_secret_until")?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Binds `$1`..`$7` of a settings write: tenant_id, settings, secret,
/// previous_secret, previous_secret_until, version, updated_at.
fn bind_settings<'q>(query: DbQuery<'q>, s: &'q SealedConnectSettings) -> DbQuery<'q> {
    query
        .bind(&s.tenant_id)
        .bind(super::rows::json_text(&s.settings))
        .bind(&s.secret)
        .bind(&s.previous_secret)
        .bind(s.previous_secret_until)
        .bind(s.version)
        .bind(s.updated_at)
}

/// The event and, if there is a notify URL, its delivery (due at once).
async fn insert_notice(
    tx: &mut sqlx::Transaction<'_, Db>,
    notice: ConnectNotice<'_>,
) -> StoreResult<()> {
    insert_event_query(notice.event).execute(&mut **tx).await?;
    if !notice.notify_url.is_empty() {
        sqlx::query(
            "INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, status, attempts, \
             next_attempt_at, created_at, updated_at, url) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5, $6)",
        )
        .bind(crate::ids::new_id(crate::ids::DELIVERY_PREFIX))
        .bind(&notice.event.tenant_id)
        .bind(&notice.event.id)
        .bind(notice.link_id.as_str())
        .bind(notice.event.created_at)
        .bind(notice.notify_url)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl ConnectStore for SqlStore {
    async fn insert_link(&self, l: &ConnectLink, audit: &AuditEntry) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO connect_links ({LINK_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        );
        let insert = sqlx::query(&sql)
            .bind(&l.tenant_id)
            .bind(l.id.as_str())
            .bind(&l.token_hash)
            .bind(&l.user_id)
            .bind(&l.user_email)
            .bind(super::rows::json_text(&l.request))
            .bind(l.status.as_str())
            .bind(&l.credential_id)
            .bind(l.failed_attempts)
            .bind(&l.revoked_reason)
            .bind(l.expires_at)
            .bind(l.created_at)
            .bind(l.updated_at)
            .bind(l.completed_at)
            .bind(l.revoked_at)
            .bind(&l.signed_in_browser);
        self.write_audited(insert, audit).await?;
        Ok(())
    }

    async fn get_link(&self, tenant_id: &str, id: &LinkId) -> StoreResult<Option<ConnectLink>> {
        let sql =
            format!("SELECT {LINK_COLUMNS} FROM connect_links WHERE tenant_id = $1 AND id = $2");
        self.fetch_optional(&sql, &[tenant_id, id.as_str()], link)
            .await
    }

    async fn find_link_by_token(&self, token_hash: &[u8]) -> StoreResult<Option<ConnectLink>> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM connect_links WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&mut self.read.acquire().await?)
            .await?;
        row.as_ref().map(link).transpose()
    }

    async fn list_links(
        &self,
        tenant_id: &str,
        filter: &LinkFilter,
        now: Millis,
        before: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ConnectLink>> {
        let mut sql = format!("SELECT {LINK_COLUMNS} FROM connect_links WHERE tenant_id = $1");
        // `expired` is pending past its expiry, `pending` is pending before it.
        let (stored, expiry) = match filter.status {
            Some(LinkStatus::Expired) => (Some("pending"), Some(" AND expires_at <= $2")),
            Some(LinkStatus::Pending) => (Some("pending"), Some(" AND expires_at > $2")),
            Some(other) => (Some(other.as_str()), None),
            None => (None, None),
        };
        if let Some(condition) = expiry {
            sql.push_str(condition);
        }
        let mut values: Vec<&str> = Vec::new();
        let conditions = [
            ("status = ", stored),
            ("user_id = ", filter.user_id.as_deref()),
            ("id < ", before),
        ];
        push_conditions(&mut sql, &mut values, 2, conditions);
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
        let query = values
            .into_iter()
            .fold(sqlx::query(&sql).bind(tenant_id).bind(now), |q, v| {
                q.bind(v)
            });
        let rows = query.fetch_all(&mut self.read.acquire().await?).await?;
        rows.iter().map(link).collect()
    }

    async fn finish_link(
        &self,
        c: &LinkChange<'_>,
        audit: &AuditEntry,
        notice: Option<ConnectNotice<'_>>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let (completed_at, revoked_at) = match c.status {
            LinkStatus::Completed => (Some(c.at), None),
            _ => (None, Some(c.at)),
        };
        let done = sqlx::query(
            "UPDATE connect_links SET status = $3, credential_id = COALESCE($4, credential_id), \
             revoked_reason = $5, completed_at = $6, revoked_at = $7, updated_at = $8 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
        )
        .bind(c.tenant_id)
        .bind(c.id.as_str())
        .bind(c.status.as_str())
        .bind(c.credential_id)
        .bind(c.revoked_reason)
        .bind(completed_at)
        .bind(revoked_at)
        .bind(c.at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        append_audit(&mut tx, audit).await?;
        if let Some(notice) = notice {
            insert_notice(&mut tx, notice).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn count_failed_attempt(
        &self,
        tenant_id: &str,
        id: &LinkId,
        limit: i64,
        at: Millis,
        notice: ConnectNotice<'_>,
    ) -> StoreResult<AttemptCount> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE connect_links SET failed_attempts = failed_attempts + 1, updated_at = $3, \
             status = CASE WHEN failed_attempts + 1 >= $4 THEN 'revoked' ELSE status END, \
             revoked_reason = CASE WHEN failed_attempts + 1 >= $4 THEN $5 ELSE revoked_reason END, \
             revoked_at = CASE WHEN failed_attempts + 1 >= $4 THEN $3 ELSE revoked_at END \
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending' RETURNING failed_attempts",
        )
        .bind(tenant_id)
        .bind(id.as_str())
        .bind(at)
        .bind(limit)
        .bind(REVOKED_TOO_MANY_ATTEMPTS)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(AttemptCount::NotPending);
        };
        let attempts: i64 = row.try_get("failed_attempts")?;
        if attempts < limit {
            tx.commit().await?;
            return Ok(AttemptCount::Counted(attempts));
        }
        insert_notice(&mut tx, notice).await?;
        tx.commit().await?;
        Ok(AttemptCount::Exhausted)
    }

    async fn mark_link_signed_in(
        &self,
        tenant_id: &str,
        id: &LinkId,
        browser_hash: &[u8],
        at: Millis,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE connect_links SET signed_in_browser = $3, updated_at = $4 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
        )
        .bind(tenant_id)
        .bind(id.as_str())
        .bind(browser_hash)
        .bind(at)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_connect_notice(&self, notice: ConnectNotice<'_>) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_notice(&mut tx, notice).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_connect_settings(
        &self,
        tenant_id: &str,
    ) -> StoreResult<Option<SealedConnectSettings>> {
        let sql = format!("SELECT {SETTINGS_COLUMNS} FROM connect_settings WHERE tenant_id = $1");
        self.fetch_optional(&sql, &[tenant_id], settings).await
    }

    async fn put_connect_settings(
        &self,
        s: &SealedConnectSettings,
        expected_version: i64,
    ) -> StoreResult<bool> {
        let done = if expected_version == 0 {
            let sql = format!(
                "INSERT INTO connect_settings ({SETTINGS_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id) DO NOTHING"
            );
            bind_settings(sqlx::query(&sql), s)
                .execute(&self.write)
                .await?
        } else {
            let sql = "UPDATE connect_settings SET settings = $2, secret = $3, \
                       previous_secret = $4, previous_secret_until = $5, version = $6, \
                       updated_at = $7 WHERE tenant_id = $1 AND version = $8";
            bind_settings(sqlx::query(sql), s)
                .bind(expected_version)
                .execute(&self.write)
                .await?
        };
        Ok(done.rows_affected() == 1)
    }
}
