//! The store itself, and the queries of the [`Store`] trait.
use async_trait::async_trait;
use sqlx::{Executor, Pool, Row};
use tokio::sync::mpsc;

use super::audit_writes::append_audit;
use super::batch::{self, Queued, WriteJob};
use super::creates::CreateJob;
use super::engine::{BACKEND, CallerReads, Db, DbRow};
use super::gathered::{self, Gathered};
use super::readers::Readers;
use super::rows::{
    self, CREDENTIAL_COLUMNS, EVENT_COLUMNS, PROVIDER_COLUMNS, STATE_COLUMNS, SUMMARY_COLUMNS,
    TOKEN_COLUMNS,
};
use super::statements::{
    DIALECT, DbQuery, bind_meta, conflict_or, insert_event_query, push_conditions,
};
use crate::clock::Millis;
use crate::model::{
    AuditEntry, CredentialMeta, CredentialSummary, Event, SealedCredential, ServiceToken, Tenant,
};
use crate::oauth::{OAuthState, SealedProvider, StateLookup};
use crate::store::changes::{Change, ChangeStore, Changes, Hearer};
use crate::store::credential_row::{CREDENTIALS_OF_TENANT, Columns};
use crate::store::{
    Backend, CredentialWrite, IdempotencyRecord, ListFilter, PoolStats, Revocation, Store,
    StoreResult, Window,
};

/// The store over its readers and a writer pool.
pub struct SqlStore {
    /// Where reads go: a list of connections of their own (`readers.rs`).
    pub(super) read: Readers,
    /// The reveal's read and short listings, made on the calling thread where the
    /// engine allows (SQLite: `sqlite/caller_reads.rs`; [`SqlStore::fetch_nearby`]).
    on_caller: CallerReads,
    /// The reveal's reads that go to the readers, gathered while they are busy.
    gathered: Gathered,
    pub(super) write: Pool<Db>,
    /// The group-commit queue of audit records, creates and logins.
    writes: mpsc::Sender<Queued>,
    /// How changes reach the other replicas.
    changes: Changes,
}

impl SqlStore {
    /// The readers, for a test to hold them.
    #[cfg(test)]
    #[allow(
        dead_code,
        reason = "SQLite's tests use it; this source is compiled per engine"
    )]
    pub(in crate::store) fn readers(&self) -> &Readers {
        &self.read
    }

    /// A login's record, through the group commit: in the batch's transaction on
    /// SQLite, a transaction of its own beside the batch's other writes on PostgreSQL.
    pub(super) async fn commit_login(&self, job: batch::LoginJob) -> StoreResult<()> {
        batch::submit(&self.writes, WriteJob::Login(Box::new(job)))
            .await
            .map(|_| ())
    }

    /// The store over the readers `read` (and `on_caller`) and the writer pool
    /// `write`, starting its group-commit writer.
    pub(in crate::store) fn new(
        read: Readers,
        on_caller: CallerReads,
        write: Pool<Db>,
        changes: Changes,
    ) -> Self {
        let writes = batch::spawn(write.clone());
        Self {
            read,
            on_caller,
            gathered: Gathered::default(),
            write,
            writes,
            changes,
        }
    }

    /// The row `sql` selects with text parameters `params` (from the reader pool),
    /// decoded, or `None`.
    pub(super) async fn fetch_optional<T>(
        &self,
        sql: &str,
        params: &[&str],
        decode: fn(&DbRow) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let query = params.iter().fold(sqlx::query(sql), |q, p| q.bind(*p));
        let row = query
            .fetch_optional(&mut self.read.acquire().await?)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every row `sql` selects with text parameters `params`, decoded.
    pub(super) async fn fetch_all<T>(
        &self,
        sql: &str,
        params: &[&str],
        decode: impl Fn(&DbRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let query = params.iter().fold(sqlx::query(sql), |q, p| q.bind(*p));
        let rows = query.fetch_all(&mut self.read.acquire().await?).await?;
        rows.iter().map(decode).collect()
    }

    /// The first `at_most` rows `sql` selects (it says so itself, with a key or a
    /// `LIMIT`), decoded by `decode`, which reads either driver's rows: on the calling
    /// thread where the engine allows and the read is short (`CallerReads`), else, or
    /// if it could not be made there, on the readers.
    async fn fetch_nearby<T>(
        &self,
        sql: &str,
        params: &[&str],
        at_most: u32,
        decode: fn(&dyn Columns) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        if let Some(rows) = self.on_caller.fetch(sql, params, at_most, decode) {
            return Ok(rows);
        }
        self.fetch_all(sql, params, |row| decode(row)).await
    }

    /// The rows of `sql` (a SELECT ending in its WHERE clause, or in its FROM when
    /// `params` is empty) that `window` names, in `key` order.
    pub(super) async fn fetch_window<'a, T>(
        &self,
        mut sql: String,
        mut params: Vec<&'a str>,
        key: &str,
        window: Window<'a>,
        decode: fn(&DbRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        if let Some(after) = window.after {
            let joiner = if params.is_empty() { "WHERE" } else { "AND" };
            params.push(after);
            sql.push_str(&format!(" {joiner} {key} > ${}", params.len()));
        }
        sql.push_str(&format!(" ORDER BY {key}"));
        if let Some(limit) = window.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.fetch_all(&sql, &params, decode).await
    }

    /// Runs `delete` (binding the tenant and the key) and, if it removed a row,
    /// records `audit` in the same transaction; returns whether a row went.
    pub(super) async fn delete_audited(
        &self,
        delete: &'static str,
        tenant_id: &str,
        key: &str,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let delete = sqlx::query(delete).bind(tenant_id).bind(key);
        self.write_audited(delete, audit).await
    }

    /// Runs `write` and, if it changed a row, records `audit` in the same transaction;
    /// returns whether it changed one (a taken unique key is [`StoreError::Conflict`]).
    pub(super) async fn write_audited(
        &self,
        write: DbQuery<'_>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = write.execute(&mut *tx).await.map_err(conflict_or)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A write transaction, begun as [`DIALECT`] says.
    pub(super) async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Db>> {
        Ok(self.write.begin_with(DIALECT.begin_write).await?)
    }
}

fn insert_tenant_query(t: &Tenant) -> DbQuery<'_> {
    sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&t.id)
        .bind(&t.name)
        .bind(t.created_at)
}

fn insert_token_query<'q>(t: &'q ServiceToken, hash: &'q [u8]) -> DbQuery<'q> {
    sqlx::query(
        "INSERT INTO service_tokens \
         (id, tenant_id, token_hash, scopes, description, created_at, expires_at, constraints) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&t.id)
    .bind(&t.tenant_id)
    .bind(hash)
    .bind(rows::scopes_text(&t.scopes))
    .bind(&t.description)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.constraints.to_text())
}

#[async_trait]
impl ChangeStore for SqlStore {
    async fn announce(&self, change: &Change) -> StoreResult<()> {
        self.changes.announce(change).await
    }

    fn hear(&self, hearer: Hearer) {
        self.changes.own().hear_with(hearer);
    }

    fn deafen(&self, deaf: bool) {
        self.changes.deafen(deaf);
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        BACKEND
    }

    fn pool_stats(&self) -> PoolStats {
        // The readers' list and the writers' pool.
        let connections = [
            (self.read.size(), self.read.num_idle()),
            (self.write.size(), self.write.num_idle()),
        ]
        .into_iter()
        .fold(PoolStats::default(), |acc, (size, idle)| {
            let idle = u32::try_from(idle).unwrap_or(u32::MAX);
            PoolStats {
                in_use: acc.in_use + size.saturating_sub(idle),
                idle: acc.idle + idle,
                ..acc
            }
        });
        PoolStats {
            reads_shared: self.gathered.shared(),
            ..connections
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        (&mut self.read.acquire().await?)
            .execute("SELECT 1")
            .await?;
        Ok(())
    }

    async fn insert_tenant(&self, t: &Tenant) -> StoreResult<()> {
        insert_tenant_query(t)
            .execute(&self.write)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        let sql = "SELECT id, name, created_at FROM tenants WHERE id = $1";
        self.fetch_optional(sql, &[id], rows::tenant).await
    }

    async fn find_tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let sql = "SELECT id, name, created_at FROM tenants WHERE name = $1";
        self.fetch_optional(sql, &[name], rows::tenant).await
    }

    async fn list_tenants(&self, window: Window<'_>) -> StoreResult<Vec<Tenant>> {
        let sql = "SELECT id, name, created_at FROM tenants".to_owned();
        self.fetch_window(sql, vec![], "id", window, rows::tenant)
            .await
    }

    async fn bootstrap(&self, t: &Tenant, token: &ServiceToken, hash: &[u8]) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        if let Some(lock) = DIALECT.lock_tenants {
            tx.execute(lock).await?;
        }
        let any: Option<String> = sqlx::query_scalar("SELECT id FROM tenants LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        if any.is_some() {
            return Ok(false);
        }
        insert_tenant_query(t)
            .execute(&mut *tx)
            .await
            .map_err(conflict_or)?;
        insert_token_query(token, hash)
            .execute(&mut *tx)
            .await
            .map_err(conflict_or)?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_token(&self, t: &ServiceToken, hash: &[u8]) -> StoreResult<()> {
        insert_token_query(t, hash)
            .execute(&self.write)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn find_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ServiceToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM service_tokens WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(&mut self.read.acquire().await?)
            .await?;
        row.as_ref().map(rows::service_token).transpose()
    }

    async fn get_token(&self, id: &str) -> StoreResult<Option<ServiceToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM service_tokens WHERE id = $1");
        self.fetch_optional(&sql, &[id], rows::service_token).await
    }

    async fn list_tokens(
        &self,
        tenant_id: &str,
        window: Window<'_>,
    ) -> StoreResult<Vec<ServiceToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM service_tokens WHERE tenant_id = $1");
        self.fetch_window(sql, vec![tenant_id], "id", window, rows::service_token)
            .await
    }

    async fn revoke_token(&self, id: &str, at: Millis) -> StoreResult<Revocation> {
        const IS_ADMIN: &str = "(' ' || scopes || ' ') LIKE '% admin %'";
        let mut tx = self.begin_write().await?;
        if DIALECT.lock_admin_tokens {
            let lock = format!("SELECT id FROM service_tokens WHERE {IS_ADMIN} FOR UPDATE");
            tx.execute(lock.as_str()).await?;
        }
        let sql = format!(
            "UPDATE service_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
             AND NOT ({IS_ADMIN} AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) \
                  AND NOT EXISTS (SELECT 1 FROM service_tokens o WHERE o.id <> $1 \
                      AND (' ' || o.scopes || ' ') LIKE '% admin %' AND o.revoked_at IS NULL \
                      AND (o.expires_at IS NULL OR o.expires_at > $2))) \
             RETURNING {TOKEN_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match row {
            Some(row) => Revocation::Revoked(rows::service_token(&row)?),
            None => {
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT id FROM service_tokens WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_some() {
                    Revocation::LastAdmin
                } else {
                    Revocation::NotFound
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn insert_credential(
        &self,
        c: &SealedCredential,
        idempotency: Option<&IdempotencyRecord>,
        audit: &AuditEntry,
    ) -> StoreResult<Option<String>> {
        let job = CreateJob {
            credential: c.clone(),
            idempotency: idempotency.cloned(),
            audit: audit.clone(),
        };
        batch::submit(&self.writes, WriteJob::Create(Box::new(job))).await
    }

    async fn find_idempotency(
        &self,
        tenant_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT tenant_id, request_id, fingerprint, key_version, credential_id, created_at \
             FROM idempotency_keys WHERE tenant_id = $1 AND request_id = $2",
        )
        .bind(tenant_id)
        .bind(request_id)
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(rows::idempotency).transpose()
    }

    async fn delete_idempotency(&self, r: &IdempotencyRecord) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND request_id = $2 AND created_at = $3",
        )
        .bind(&r.tenant_id)
        .bind(&r.request_id)
        .bind(r.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn prune_idempotency(&self, before: Millis) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    async fn acquire_job_lease(
        &self,
        job: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO job_leases (job, owner, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (job) DO UPDATE SET owner = $2, lease_until = $3 \
             WHERE job_leases.lease_until <= $4 OR job_leases.owner = $2",
        )
        .bind(job)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_credential(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<CredentialMeta>> {
        let sql = format!("SELECT {CREDENTIAL_COLUMNS} {CREDENTIALS_OF_TENANT} AND c.id = $2");
        self.fetch_optional(&sql, &[tenant_id, id], rows::credential_meta)
            .await
    }

    async fn get_sealed(&self, tenant_id: &str, id: &str) -> StoreResult<Option<SealedCredential>> {
        let sql = &gathered::SEALED_BY_ID;
        let params = [tenant_id, id];
        let on_caller = self
            .on_caller
            .fetch(sql, &params, 1, |row| rows::sealed_credential(row));
        if let Some(mut found) = on_caller {
            return Ok(found.pop());
        }
        if let Some(found) = self.gathered.get(&self.read, tenant_id, id).await {
            return Ok(found);
        }
        self.fetch_optional(sql, &params, rows::sealed_credential)
            .await
    }

    async fn list_credentials(
        &self,
        tenant_id: &str,
        filter: &ListFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<CredentialSummary>> {
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} {CREDENTIALS_OF_TENANT}");
        let mut values: Vec<&str> = vec![tenant_id];
        let within = &filter.within;
        let providers = (!within.providers.is_empty()).then(|| rows::json_text(&within.providers));
        let labels = (!within.labels.is_empty()).then(|| rows::json_text(&within.labels));
        let [in_providers, with_labels] = DIALECT.constraint_conditions;
        let conditions = [
            ("c.user_id = ", filter.user_id.as_deref()),
            ("c.provider = ", filter.provider.as_deref()),
            ("c.status = ", filter.status.map(|s| s.as_str())),
            (in_providers, providers.as_deref()),
            (with_labels, labels.as_deref()),
            ("c.id > ", after),
        ];
        push_conditions(&mut sql, &mut values, 0, conditions);
        sql.push_str(&format!(" ORDER BY c.id LIMIT {limit}"));
        self.fetch_nearby(&sql, &values, limit, |row| rows::credential_summary(row))
            .await
    }

    async fn update_credential(
        &self,
        w: &CredentialWrite,
        audit: Option<&AuditEntry>,
        events: &[Event],
    ) -> StoreResult<bool> {
        let m = &w.meta;
        let mut tx = self.begin_write().await?;
        let done = bind_meta(
            sqlx::query(
                "UPDATE credentials SET name = $3, kind = $4, status = $5, labels = $6, \
                 scopes = $7, expires_at = $8, token_expires_at = $9, version = $10, \
                 updated_at = $11, next_refresh_at = $12, refresh_failures = $13, \
                 last_refresh_error = $14, refresh_lease_owner = NULL, \
                 refresh_lease_until = NULL, \
                 expiry_warned_ms = CASE WHEN lapses_at = $15 THEN expiry_warned_ms END, \
                 lapses_at = $15, secret = COALESCE($16, secret) \
                 WHERE tenant_id = $1 AND id = $2 AND version = $17",
            ),
            m,
        )
        .bind(&w.blob)
        .bind(w.expected_version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(audit) = audit {
            append_audit(&mut tx, audit).await?;
        }
        for event in events {
            insert_event_query(event).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_credential(
        &self,
        tenant_id: &str,
        id: &str,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        self.delete_audited(
            "DELETE FROM credentials WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            id,
            audit,
        )
        .await
    }

    async fn insert_audit(&self, audit: &AuditEntry) -> StoreResult<()> {
        batch::submit(&self.writes, WriteJob::Audit(audit.clone()))
            .await
            .map(|_| ())
    }

    async fn acquire_refresh_lease(
        &self,
        tenant_id: &str,
        id: &str,
        version: i64,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE credentials SET refresh_lease_owner = $3, refresh_lease_until = $4 \
             WHERE tenant_id = $1 AND id = $2 AND status = 'active' AND version = $6 \
             AND (refresh_lease_until IS NULL OR refresh_lease_until <= $5 \
                  OR refresh_lease_owner = $3)",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(owner)
        .bind(until)
        .bind(now)
        .bind(version)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_refresh_failure(
        &self,
        tenant_id: &str,
        id: &str,
        version: i64,
        failures: i64,
        next_at: Millis,
        error: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE credentials SET refresh_failures = $4, next_refresh_at = $5, \
             last_refresh_error = $6, refresh_lease_owner = NULL, refresh_lease_until = NULL \
             WHERE tenant_id = $1 AND id = $2 AND version = $3",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(version)
        .bind(failures)
        .bind(next_at)
        .bind(error)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_refreshes(&self, now: Millis, limit: u32) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(&format!(
            "SELECT tenant_id, id FROM credentials \
             WHERE next_refresh_at <= $1 AND status = 'active' AND kind = 'oauth2' \
             AND (refresh_lease_until IS NULL OR refresh_lease_until <= $1) \
             ORDER BY next_refresh_at LIMIT {limit}"
        ))
        .bind(now)
        .fetch_all(&mut self.read.acquire().await?)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant_id")?, r.try_get("id")?)))
            .collect()
    }

    async fn insert_provider(&self, p: &SealedProvider, audit: &AuditEntry) -> StoreResult<()> {
        let m = &p.provider;
        let sql = format!(
            "INSERT INTO oauth_providers ({PROVIDER_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let insert = sqlx::query(&sql)
            .bind(&m.tenant_id)
            .bind(&m.id)
            .bind(&m.slug)
            .bind(rows::json_text(&m.config))
            .bind(&p.client_secret)
            .bind(&m.last_error)
            .bind(m.last_error_at)
            .bind(m.version)
            .bind(m.created_at)
            .bind(m.updated_at);
        self.write_audited(insert, audit).await?;
        Ok(())
    }

    async fn get_provider(
        &self,
        tenant_id: &str,
        slug: &str,
    ) -> StoreResult<Option<SealedProvider>> {
        let sql = format!(
            "SELECT {PROVIDER_COLUMNS} FROM oauth_providers WHERE tenant_id = $1 AND slug = $2"
        );
        self.fetch_optional(&sql, &[tenant_id, slug], rows::provider)
            .await
    }

    async fn list_providers(
        &self,
        tenant_id: &str,
        window: Window<'_>,
    ) -> StoreResult<Vec<SealedProvider>> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM oauth_providers WHERE tenant_id = $1");
        self.fetch_window(sql, vec![tenant_id], "slug", window, rows::provider)
            .await
    }

    async fn update_provider(
        &self,
        p: &SealedProvider,
        expected_version: i64,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let m = &p.provider;
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE oauth_providers SET config = $3, client_secret = $4, last_error = $5, \
             last_error_at = $6, version = $7, updated_at = $8 \
             WHERE tenant_id = $1 AND slug = $2 AND version = $9",
        )
        .bind(&m.tenant_id)
        .bind(&m.slug)
        .bind(rows::json_text(&m.config))
        .bind(&p.client_secret)
        .bind(&m.last_error)
        .bind(m.last_error_at)
        .bind(m.version)
        .bind(m.updated_at)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // The operator has looked at the provider: its credentials' back-off ends now
        // (the version stays: this is bookkeeping, not a change of the credential).
        sqlx::query(
            "UPDATE credentials SET refresh_failures = 0, last_refresh_error = NULL, \
             next_refresh_at = $3 \
             WHERE tenant_id = $1 AND provider = $2 AND kind = 'oauth2' AND status = 'active' \
             AND refresh_failures > 0 AND next_refresh_at > $3",
        )
        .bind(&m.tenant_id)
        .bind(&m.slug)
        .bind(m.updated_at)
        .execute(&mut *tx)
        .await?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_provider(
        &self,
        tenant_id: &str,
        slug: &str,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let sql = "DELETE FROM oauth_providers WHERE tenant_id = $1 AND slug = $2";
        self.delete_audited(sql, tenant_id, slug, audit).await
    }

    async fn replace_provider_secret(
        &self,
        tenant_id: &str,
        id: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE oauth_providers SET client_secret = $4 \
             WHERE tenant_id = $1 AND id = $2 AND client_secret = $3",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(old)
        .bind(new)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_provider_error(
        &self,
        tenant_id: &str,
        slug: &str,
        event: &Event,
        error: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE oauth_providers SET last_error = $3, last_error_at = $4 \
             WHERE tenant_id = $1 AND slug = $2 AND last_error IS NULL",
        )
        .bind(tenant_id)
        .bind(slug)
        .bind(error)
        .bind(event.created_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event_query(event).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_oauth_state(&self, st: &OAuthState) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO oauth_states ({STATE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&st.state_hash)
        .bind(&st.id)
        .bind(&st.tenant_id)
        .bind(&st.user_id)
        .bind(&st.user_email)
        .bind(&st.provider)
        .bind(rows::json_text(&st.request))
        .bind(&st.pkce_verifier)
        .bind(st.expires_at)
        .bind(st.used_at)
        .bind(st.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn consume_oauth_state(
        &self,
        state_hash: &[u8],
        now: Millis,
    ) -> StoreResult<StateLookup> {
        let consumed = sqlx::query(&format!(
            "UPDATE oauth_states SET used_at = $2 \
             WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING {STATE_COLUMNS}"
        ))
        .bind(state_hash)
        .bind(now)
        .fetch_optional(&self.write)
        .await?;
        if let Some(row) = consumed {
            return Ok(StateLookup::Consumed(rows::oauth_state(&row)?));
        }
        let sql = format!("SELECT {STATE_COLUMNS} FROM oauth_states WHERE state_hash = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(state_hash)
            .fetch_optional(&self.write)
            .await?
        else {
            return Ok(StateLookup::Unknown);
        };
        let state = rows::oauth_state(&row)?;
        Ok(if state.used_at.is_some() {
            StateLookup::Replayed(state)
        } else {
            StateLookup::Expired(state)
        })
    }

    async fn prune_oauth_states(&self, before: Millis) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
            .bind(before)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    async fn latest_event_id(&self, tenant_id: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT id FROM events WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1";
        Ok(sqlx::query_scalar(sql)
            .bind(tenant_id)
            .fetch_optional(&mut self.read.acquire().await?)
            .await?)
    }

    async fn list_events(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT {limit}"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(after.unwrap_or(""))
            .fetch_all(&mut self.read.acquire().await?)
            .await?;
        rows.iter().map(rows::event).collect()
    }
}
