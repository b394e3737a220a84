//! The `NotificationStore` queries.
use async_trait::async_trait;
use sqlx::Row;

use super::engine::{Db, DbRow};
use super::readers::Readers;
use super::rows::{self, CREDENTIAL_COLUMNS, DELIVERY_COLUMNS, ENDPOINT_COLUMNS};
use super::statements::{DIALECT, DbQuery, push_conditions};
use super::store::SqlStore;
use crate::clock::Millis;
use crate::model::{CredentialMeta, EVENT_EXPIRED, Event};
use crate::store::{DeliveryFilter, NotificationStore, StoreError, StoreResult, Window};
use crate::webhooks::{AttemptRecord, ClaimedDelivery, Delivery, DeliveryStatus, SealedEndpoint};

impl SqlStore {
    /// Metadata of the credentials `keys`, read inside `tx`, 200 keys a query: with a
    /// long `IN (VALUES …)` list PostgreSQL trades the primary-key lookups for a hash
    /// join over the whole table (3 s instead of 30 ms at a million rows).
    async fn metas_in(
        tx: &mut sqlx::Transaction<'_, Db>,
        keys: &[(String, String)],
    ) -> StoreResult<Vec<CredentialMeta>> {
        let mut metas = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(200) {
            let pairs: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials c \
                 JOIN end_users u ON u.tenant_id = c.tenant_id AND u.user_id = c.user_id \
                 WHERE (c.tenant_id, c.id) IN (VALUES {}) ORDER BY c.tenant_id, c.id",
                pairs.join(", ")
            );
            let query = chunk
                .iter()
                .fold(sqlx::query(&sql), |q, (t, id)| q.bind(t).bind(id));
            for row in query.fetch_all(&mut **tx).await? {
                metas.push(rows::credential_meta(&row)?);
            }
        }
        Ok(metas)
    }

    /// The payloads of the events `deliveries` carry, 200 ids a query.
    async fn payloads_of(
        read: &Readers,
        deliveries: &[Delivery],
    ) -> StoreResult<std::collections::HashMap<String, String>> {
        let mut ids: Vec<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut payloads = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(200) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, payload FROM events WHERE id IN ({})",
                params.join(", ")
            );
            let query = chunk.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
            for row in query.fetch_all(&mut read.acquire().await?).await? {
                payloads.insert(row.try_get("id")?, row.try_get("payload")?);
            }
        }
        Ok(payloads)
    }

    /// All of `events` in one multi-row statement (one round trip per batch).
    async fn insert_events(
        tx: &mut sqlx::Transaction<'_, Db>,
        events: &[Event],
    ) -> StoreResult<()> {
        // 500 rows × 6 parameters stays far below both engines' parameter limits.
        for chunk in events.chunks(500) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 6;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO events (id, tenant_id, type, credential_id, payload, created_at) VALUES {}",
                rows.join(", ")
            );
            let query = chunk.iter().fold(sqlx::query(&sql), |q, e| {
                q.bind(&e.id)
                    .bind(&e.tenant_id)
                    .bind(e.kind)
                    .bind(&e.credential_id)
                    .bind(&e.payload)
                    .bind(e.created_at)
            });
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// A delivery filter as SQL conditions on `deliveries`, with their values.
fn conditions(f: &DeliveryFilter) -> [(&'static str, Option<&str>); 3] {
    [
        ("status = ", f.status.map(DeliveryStatus::as_str)),
        ("endpoint_id = ", f.endpoint_id.as_deref()),
        ("event_id = ", f.event_id.as_deref()),
    ]
}

/// Binds `$1`..`$11` of an endpoint write: tenant_id, id, url, event_types, enabled,
/// disabled_reason, secret, previous_secret, previous_secret_until, version, updated_at.
fn bind_endpoint<'q>(query: DbQuery<'q>, e: &'q SealedEndpoint) -> DbQuery<'q> {
    let m = &e.endpoint;
    query
        .bind(&m.tenant_id)
        .bind(&m.id)
        .bind(&m.url)
        .bind(rows::json_text(&m.event_types))
        .bind(i64::from(m.enabled))
        .bind(&m.disabled_reason)
        .bind(&e.secret)
        .bind(&e.previous_secret)
        .bind(e.previous_secret_until)
        .bind(m.version)
        .bind(m.updated_at)
}

fn keys_of(rows: &[DbRow]) -> StoreResult<Vec<(String, String)>> {
    rows.iter()
        .map(|r| Ok((r.try_get("tenant_id")?, r.try_get("id")?)))
        .collect()
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn oldest_pending_delivery(&self) -> StoreResult<Option<Millis>> {
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT MIN(created_at) FROM deliveries WHERE status = 'pending'")
                .fetch_one(&mut self.read.acquire().await?)
                .await?;
        Ok(oldest)
    }

    async fn expire_due(&self, now: Millis, limit: u32) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "WITH due AS (SELECT tenant_id AS due_tenant, id AS due_id FROM credentials \
                 WHERE status = 'active' AND lapses_at IS NOT NULL AND lapses_at <= $1 \
                 ORDER BY lapses_at LIMIT {limit}{}) \
             UPDATE credentials SET status = 'expired', version = version + 1, updated_at = $1, \
             next_refresh_at = NULL, refresh_lease_owner = NULL, refresh_lease_until = NULL \
             FROM due WHERE tenant_id = due_tenant AND id = due_id AND status = 'active' \
             RETURNING tenant_id, id",
            DIALECT.skip_locked
        );
        let rows = sqlx::query(&sql).bind(now).fetch_all(&mut *tx).await?;
        let metas = Self::metas_in(&mut tx, &keys_of(&rows)?).await?;
        let events: Vec<Event> = metas
            .iter()
            .map(|m| Event::credential(EVENT_EXPIRED, m, now))
            .collect();
        Self::insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(events)
    }

    async fn warn_expiring(
        &self,
        now: Millis,
        horizon_ms: Millis,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "WITH due AS (SELECT tenant_id AS due_tenant, id AS due_id FROM credentials \
                 WHERE status = 'active' AND lapses_at IS NOT NULL \
                 AND lapses_at > $1 AND lapses_at <= $1 + $2 \
                 AND (expiry_warned_ms IS NULL OR expiry_warned_ms > $2) \
                 ORDER BY lapses_at LIMIT {limit}{}) \
             UPDATE credentials SET expiry_warned_ms = $2 \
             FROM due WHERE tenant_id = due_tenant AND id = due_id \
             AND (expiry_warned_ms IS NULL OR expiry_warned_ms > $2) RETURNING tenant_id, id",
            DIALECT.skip_locked
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(horizon_ms)
            .fetch_all(&mut *tx)
            .await?;
        let metas = Self::metas_in(&mut tx, &keys_of(&rows)?).await?;
        let events: Vec<Event> = metas
            .iter()
            .map(|m| Event::expiring(m, horizon_ms, now))
            .collect();
        Self::insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(events)
    }

    async fn insert_endpoint(&self, e: &SealedEndpoint) -> StoreResult<()> {
        let sql = "INSERT INTO webhook_endpoints (tenant_id, id, url, event_types, enabled, \
                   disabled_reason, secret, previous_secret, previous_secret_until, version, \
                   updated_at, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        bind_endpoint(sqlx::query(sql), e)
            .bind(e.endpoint.created_at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn get_endpoint(&self, tenant_id: &str, id: &str) -> StoreResult<Option<SealedEndpoint>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
        );
        self.fetch_optional(&sql, &[tenant_id, id], rows::endpoint)
            .await
    }

    async fn list_endpoints(
        &self,
        tenant_id: &str,
        window: Window<'_>,
    ) -> StoreResult<Vec<SealedEndpoint>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1");
        self.fetch_window(sql, vec![tenant_id], "id", window, rows::endpoint)
            .await
    }

    async fn update_endpoint(
        &self,
        e: &SealedEndpoint,
        expected_version: i64,
    ) -> StoreResult<bool> {
        let sql = "UPDATE webhook_endpoints SET url = $3, event_types = $4, enabled = $5, \
                   disabled_reason = $6, secret = $7, previous_secret = $8, \
                   previous_secret_until = $9, version = $10, updated_at = $11 \
                   WHERE tenant_id = $1 AND id = $2 AND version = $12";
        let done = bind_endpoint(sqlx::query(sql), e)
            .bind(expected_version)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // Nothing will be sent there again: its undelivered work goes too.
        sqlx::query("DELETE FROM deliveries WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'pending'")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn disable_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
        reason: &str,
        at: Millis,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $3, version = version + 1, \
             updated_at = $4 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(reason)
        .bind(at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn prune_deliveries(&self, before: Millis, limit: u32) -> StoreResult<u64> {
        let sql = format!(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
             WHERE status <> 'pending' AND updated_at < $1 LIMIT {limit})"
        );
        let done = sqlx::query(&sql).bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
    }

    async fn prune_events(&self, before: Millis, limit: u32) -> StoreResult<u64> {
        let sql = format!(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e \
             WHERE e.created_at < $1 AND e.dispatched_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT {limit})"
        );
        let done = sqlx::query(&sql).bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
    }

    async fn dispatch_events(&self, now: Millis, limit: u32) -> StoreResult<usize> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT id, tenant_id, type FROM events WHERE dispatched_at IS NULL ORDER BY id LIMIT {limit}{}",
            DIALECT.skip_locked
        );
        let events = sqlx::query(&sql).fetch_all(&mut *tx).await?;
        let mut endpoints: std::collections::HashMap<String, Vec<SealedEndpoint>> =
            Default::default();
        for event in &events {
            let (id, tenant_id, kind): (String, String, String) = (
                event.try_get("id")?,
                event.try_get("tenant_id")?,
                event.try_get("type")?,
            );
            if !endpoints.contains_key(&tenant_id) {
                let sql = format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = 1"
                );
                let rows = sqlx::query(&sql)
                    .bind(&tenant_id)
                    .fetch_all(&mut *tx)
                    .await?;
                let list = rows
                    .iter()
                    .map(rows::endpoint)
                    .collect::<StoreResult<Vec<_>>>()?;
                endpoints.insert(tenant_id.clone(), list);
            }
            for endpoint in endpoints[&tenant_id]
                .iter()
                .filter(|e| e.endpoint.wants(&kind))
            {
                sqlx::query(
                    "INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, status, attempts, \
                     next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5) \
                     ON CONFLICT (event_id, endpoint_id) DO NOTHING",
                )
                .bind(crate::ids::new_id(crate::ids::DELIVERY_PREFIX))
                .bind(&tenant_id)
                .bind(&id)
                .bind(&endpoint.endpoint.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE events SET dispatched_at = $2 WHERE id = $1")
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(events.len())
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Millis,
        until: Millis,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let claimable = "status = 'pending' AND (lease_until IS NULL OR lease_until <= $3)";
        let sql = format!(
            "WITH due AS (SELECT id AS due_id FROM deliveries \
                 WHERE {claimable} AND next_attempt_at <= $3 \
                 ORDER BY next_attempt_at LIMIT {limit}{}) \
             UPDATE deliveries SET lease_owner = $1, lease_until = $2 \
             FROM due WHERE id = due_id AND {claimable} RETURNING {DELIVERY_COLUMNS}",
            DIALECT.skip_locked
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(until)
            .bind(now)
            .fetch_all(&self.write)
            .await?;
        let deliveries = rows
            .iter()
            .map(rows::delivery)
            .collect::<StoreResult<Vec<_>>>()?;
        let payloads = Self::payloads_of(&self.read, &deliveries).await?;
        let mut claimed = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let payload = payloads.get(&delivery.event_id).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!("event {} is missing", delivery.event_id))
            })?;
            claimed.push(ClaimedDelivery { delivery, payload });
        }
        Ok(claimed)
    }

    async fn release_delivery(&self, delivery_id: &str, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(delivery_id)
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn record_attempt(
        &self,
        delivery_id: &str,
        owner: &str,
        r: &AttemptRecord,
    ) -> StoreResult<bool> {
        let delivered_at = (r.status == DeliveryStatus::Delivered).then_some(r.at);
        let done = sqlx::query(
            "UPDATE deliveries SET status = $3, attempts = $4, next_attempt_at = $5, last_status = $6, \
             last_error = $7, updated_at = $8, delivered_at = COALESCE($9, delivered_at), \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(delivery_id)
        .bind(owner)
        .bind(r.status.as_str())
        .bind(r.attempts)
        .bind(r.next_attempt_at)
        .bind(r.last_status)
        .bind(&r.last_error)
        .bind(r.at)
        .bind(delivered_at)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        f: &DeliveryFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant_id = $1");
        let mut values: Vec<&str> = vec![tenant_id];
        let conditions = conditions(f).into_iter().chain([("id > ", after)]);
        push_conditions(&mut sql, &mut values, 0, conditions);
        sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
        self.fetch_all(&sql, &values, rows::delivery).await
    }

    async fn requeue_deliveries(
        &self,
        tenant_id: &str,
        f: &DeliveryFilter,
        now: Millis,
    ) -> StoreResult<u64> {
        let mut sql =
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2, \
                       updated_at = $2, lease_owner = NULL, lease_until = NULL WHERE tenant_id = $1"
                .to_owned();
        let mut values: Vec<&str> = Vec::new();
        // $1 and $2 (tenant, now) are bound ahead of the filter values.
        push_conditions(&mut sql, &mut values, 2, conditions(f));
        let query = values
            .into_iter()
            .fold(sqlx::query(&sql).bind(tenant_id).bind(now), |q, v| {
                q.bind(v)
            });
        Ok(query.execute(&self.write).await?.rows_affected())
    }
}
