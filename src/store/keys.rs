//! What the database knows about master keys: which version is active cluster-wide,
//! which versions each replica holds (heartbeats), which are retired, how many seals
//! each made; and the sealed values themselves, walked column by column for rewrap.
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{SqlStore, StoreError, StoreResult};
use crate::clock::Millis;

/// Every column that holds sealed values. The rewrap job walks each in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedColumn {
    TenantKey,
    CredentialSecret,
    ProviderClientSecret,
    OAuthStateVerifier,
    WebhookSecret,
    WebhookPreviousSecret,
    ConnectSecret,
    ConnectPreviousSecret,
    ConnectorConfig,
}

/// Where a column lives and what its values' AAD is made of.
struct Place {
    table: &'static str,
    column: &'static str,
    /// The second half of the row key after `tenant_id` (`''` where the tenant alone
    /// is the key).
    id: &'static str,
    /// The text column (or literal) after `tenant_id` and the id that its AAD is
    /// built from.
    context: &'static str,
}

impl SealedColumn {
    /// Tenant keys first: a pass moves them under the active master key before it
    /// moves older values under the tenant keys.
    pub const ALL: [SealedColumn; 9] = [
        Self::TenantKey,
        Self::CredentialSecret,
        Self::ProviderClientSecret,
        Self::OAuthStateVerifier,
        Self::WebhookSecret,
        Self::WebhookPreviousSecret,
        Self::ConnectSecret,
        Self::ConnectPreviousSecret,
        Self::ConnectorConfig,
    ];

    /// `table.column`, as `keys status` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::TenantKey => "tenant_keys.sealed",
            Self::CredentialSecret => "credentials.secret",
            Self::ProviderClientSecret => "oauth_providers.client_secret",
            Self::OAuthStateVerifier => "oauth_states.pkce_verifier",
            Self::WebhookSecret => "webhook_endpoints.secret",
            Self::WebhookPreviousSecret => "webhook_endpoints.previous_secret",
            Self::ConnectSecret => "connect_settings.secret",
            Self::ConnectPreviousSecret => "connect_settings.previous_secret",
            Self::ConnectorConfig => "auth_connectors.config",
        }
    }

    fn place(self) -> Place {
        let (table, column) = self.name().split_once('.').unwrap_or_default();
        let (id, context) = match self {
            Self::CredentialSecret | Self::OAuthStateVerifier => ("id", "user_id"),
            // The endpoints the secret is bound to are in the JSON config.
            Self::ProviderClientSecret => ("id", "config"),
            Self::TenantKey | Self::ConnectSecret | Self::ConnectPreviousSecret => ("''", "''"),
            Self::WebhookSecret | Self::WebhookPreviousSecret | Self::ConnectorConfig => {
                ("id", "''")
            }
        };
        Place {
            table,
            column,
            id,
            context,
        }
    }
}

/// One sealed value and what its AAD is built from.
#[derive(Clone)]
pub struct SealedValue {
    pub tenant_id: String,
    /// The row's id within the tenant (empty where the tenant alone is the key).
    pub id: String,
    /// What besides the tenant and the id the value's AAD is built from: the end
    /// user (credentials, OAuth states), the provider's JSON config, or empty.
    pub context: String,
    pub blob: Vec<u8>,
}

impl std::fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedValue")
            .field("tenant_id", &self.tenant_id)
            .field("id", &self.id)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// A rewrapped value: written only if the row still holds `old` (version fencing).
pub struct Resealed<'a> {
    pub tenant_id: &'a str,
    pub id: &'a str,
    pub old: &'a [u8],
    pub new: Vec<u8>,
}

/// How many values of one column one (format, key version) seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCount {
    pub column: SealedColumn,
    pub format: u8,
    pub key_version: u32,
    pub values: u64,
}

/// A key version as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionRow {
    pub version: u32,
    /// `active`, `ready` or `retired`.
    pub state: String,
    /// Seals made under it (flushed by every replica's heartbeat).
    pub seals: u64,
    /// Format-1 values found under it when the vault first counted (a lower bound
    /// of the seals made under it directly with the master key).
    pub legacy_seals: u64,
}

/// A replica's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    pub id: String,
    /// The key versions its keyring holds.
    pub versions: Vec<u32>,
    pub seen_at: Millis,
}

/// A heartbeat: who, what it holds, and the seals it made since the last one.
#[derive(Debug, Clone)]
pub struct Heartbeat<'a> {
    pub replica: &'a str,
    pub versions: &'a [u32],
    pub seals: &'a [(u32, u64)],
    pub at: Millis,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores `value` as `version`'s key check value unless one is stored; returns
    /// the stored one.
    async fn key_check(&self, version: u32, value: &[u8], at: Millis) -> StoreResult<Vec<u8>>;
    /// Replaces `version`'s key check value if it is still `old`.
    async fn replace_key_check(&self, version: u32, old: &[u8], new: &[u8]) -> StoreResult<()>;

    /// The cluster's active version, setting it to `proposed` if none is set yet.
    async fn init_active_key(&self, proposed: u32, at: Millis) -> StoreResult<u32>;
    /// Makes `version` the active one, the previous active one `ready`.
    async fn activate_key(&self, version: u32, at: Millis) -> StoreResult<()>;
    /// Marks a non-active version retired; false if it is active.
    async fn retire_key(&self, version: u32, at: Millis) -> StoreResult<bool>;
    async fn key_versions(&self) -> StoreResult<Vec<KeyVersionRow>>;
    /// Registers the held versions (with the format-1 values found under each as
    /// their initial legacy seal count), adds the seals, records the heartbeat.
    async fn heartbeat(&self, beat: &Heartbeat<'_>, legacy: &[(u32, u64)]) -> StoreResult<()>;
    /// Replicas heard from at or after `since`.
    async fn live_replicas(&self, since: Millis) -> StoreResult<Vec<ReplicaRow>>;
    /// Forgets a replica (it stopped cleanly).
    async fn leave(&self, replica: &str) -> StoreResult<()>;

    /// Per column, format and key version: how many values.
    async fn sealed_counts(&self) -> StoreResult<Vec<SealedCount>>;
    /// Up to `limit` values of `column` after the row key `after`, in key order,
    /// whose header is not `current` (format byte and key version).
    async fn sealed_batch(
        &self,
        column: SealedColumn,
        after: Option<(&str, &str)>,
        current: &[u8],
        limit: u32,
    ) -> StoreResult<Vec<SealedValue>>;
    /// Writes each value whose row still holds its `old` blob, in one transaction;
    /// returns how many were written.
    async fn replace_sealed(
        &self,
        column: SealedColumn,
        values: &[Resealed<'_>],
    ) -> StoreResult<u64>;
}

/// The first bytes of a sealed value: format and key version (`substr` takes a BLOB
/// on SQLite and a BYTEA on PostgreSQL alike).
fn head(column: &str) -> String {
    format!("substr({column}, 1, 5)")
}

fn sealed_value(row: &AnyRow) -> StoreResult<SealedValue> {
    Ok(SealedValue {
        tenant_id: row.try_get(0)?,
        id: row.try_get(1)?,
        context: row.try_get(2)?,
        blob: row.try_get(3)?,
    })
}

fn version_of(v: i64) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("key version {v}")))
}

fn count_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn key_check(&self, version: u32, value: &[u8], at: Millis) -> StoreResult<Vec<u8>> {
        let version = i64::from(version);
        sqlx::query(
            "INSERT INTO key_checks (version, check_value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(value)
        .bind(at)
        .execute(&self.write)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT check_value FROM key_checks WHERE version = $1")
                .bind(version)
                .fetch_one(&self.write)
                .await?,
        )
    }

    async fn replace_key_check(&self, version: u32, old: &[u8], new: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "UPDATE key_checks SET check_value = $1 WHERE version = $2 AND check_value = $3",
        )
        .bind(new)
        .bind(i64::from(version))
        .bind(old)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn init_active_key(&self, proposed: u32, at: Millis) -> StoreResult<u32> {
        let mut tx = self.begin_write().await?;
        let active: Option<i64> =
            sqlx::query_scalar("SELECT version FROM key_versions WHERE state = 'active'")
                .fetch_optional(&mut *tx)
                .await?;
        let active = match active {
            Some(v) => version_of(v)?,
            None => {
                make_active(&mut tx, proposed, at).await?;
                proposed
            }
        };
        tx.commit().await?;
        Ok(active)
    }

    async fn activate_key(&self, version: u32, at: Millis) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE key_versions SET state = 'ready', updated_at = $1 \
             WHERE state = 'active' AND version <> $2",
        )
        .bind(at)
        .bind(i64::from(version))
        .execute(&mut *tx)
        .await?;
        make_active(&mut tx, version, at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retire_key(&self, version: u32, at: Millis) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO key_versions (version, state, seals, legacy_seals, updated_at) \
             VALUES ($1, 'retired', 0, 0, $2) \
             ON CONFLICT (version) DO UPDATE SET state = 'retired', updated_at = $2 \
             WHERE key_versions.state <> 'active'",
        )
        .bind(i64::from(version))
        .bind(at)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn key_versions(&self) -> StoreResult<Vec<KeyVersionRow>> {
        let rows = sqlx::query(
            "SELECT version, state, seals, legacy_seals FROM key_versions ORDER BY version",
        )
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyVersionRow {
                    version: version_of(r.try_get(0)?)?,
                    state: r.try_get(1)?,
                    seals: count_of(r.try_get(2)?),
                    legacy_seals: count_of(r.try_get(3)?),
                })
            })
            .collect()
    }

    async fn heartbeat(&self, beat: &Heartbeat<'_>, legacy: &[(u32, u64)]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for &version in beat.versions {
            let found = legacy
                .iter()
                .find(|(v, _)| *v == version)
                .map_or(0, |l| l.1);
            sqlx::query(
                "INSERT INTO key_versions (version, state, seals, legacy_seals, updated_at) \
                 VALUES ($1, 'ready', 0, $2, $3) ON CONFLICT (version) DO NOTHING",
            )
            .bind(i64::from(version))
            .bind(i64::try_from(found).unwrap_or(i64::MAX))
            .bind(beat.at)
            .execute(&mut *tx)
            .await?;
        }
        for &(version, seals) in beat.seals.iter().filter(|s| s.1 > 0) {
            sqlx::query("UPDATE key_versions SET seals = seals + $1 WHERE version = $2")
                .bind(i64::try_from(seals).unwrap_or(i64::MAX))
                .bind(i64::from(version))
                .execute(&mut *tx)
                .await?;
        }
        let versions: Vec<String> = beat.versions.iter().map(u32::to_string).collect();
        sqlx::query(
            "INSERT INTO replicas (id, key_versions, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET key_versions = $2, seen_at = $3",
        )
        .bind(beat.replica)
        .bind(versions.join(","))
        .bind(beat.at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn live_replicas(&self, since: Millis) -> StoreResult<Vec<ReplicaRow>> {
        let rows = sqlx::query(
            "SELECT id, key_versions, seen_at FROM replicas WHERE seen_at >= $1 ORDER BY id",
        )
        .bind(since)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| {
                let versions: String = r.try_get(1)?;
                Ok(ReplicaRow {
                    id: r.try_get(0)?,
                    versions: versions.split(',').filter_map(|v| v.parse().ok()).collect(),
                    seen_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn leave(&self, replica: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(replica)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn sealed_counts(&self) -> StoreResult<Vec<SealedCount>> {
        let mut counts = Vec::new();
        for column in SealedColumn::ALL {
            let p = column.place();
            let head = head(p.column);
            let sql = format!(
                "SELECT {head} AS head, COUNT(*) FROM {table} WHERE {col} IS NOT NULL \
                 GROUP BY head ORDER BY head",
                table = p.table,
                col = p.column
            );
            for row in sqlx::query(&sql).fetch_all(&self.read).await? {
                let head: Vec<u8> = row.try_get(0)?;
                let n: i64 = row.try_get(1)?;
                let (format, key_version) = match head.as_slice() {
                    [f, v @ ..] if v.len() == 4 => {
                        (*f, u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
                    }
                    _ => (0, 0),
                };
                counts.push(SealedCount {
                    column,
                    format,
                    key_version,
                    values: count_of(n),
                });
            }
        }
        Ok(counts)
    }

    async fn sealed_batch(
        &self,
        column: SealedColumn,
        after: Option<(&str, &str)>,
        current: &[u8],
        limit: u32,
    ) -> StoreResult<Vec<SealedValue>> {
        let p = column.place();
        let (tenant, id) = after.unwrap_or(("", ""));
        let sql = format!(
            "SELECT tenant_id, {id} AS row_id, {ctx}, {col} FROM {table} \
             WHERE {col} IS NOT NULL AND {head} <> $1 \
             AND (tenant_id > $2 OR (tenant_id = $2 AND {id} > $3)) \
             ORDER BY tenant_id, row_id LIMIT {limit}",
            id = p.id,
            ctx = p.context,
            col = p.column,
            table = p.table,
            head = head(p.column),
        );
        // A walk starts at ('', ''), before every key: tenant ids are never empty.
        let rows = sqlx::query(&sql)
            .bind(current)
            .bind(tenant)
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(sealed_value).collect()
    }

    async fn replace_sealed(
        &self,
        column: SealedColumn,
        values: &[Resealed<'_>],
    ) -> StoreResult<u64> {
        let p = column.place();
        let sql = format!(
            "UPDATE {table} SET {col} = $1 WHERE tenant_id = $2 AND {id} = $3 AND {col} = $4",
            table = p.table,
            col = p.column,
            id = p.id,
        );
        let mut tx = self.begin_write().await?;
        let mut written = 0;
        for v in values {
            let done = sqlx::query(&sql)
                .bind(v.new.as_slice())
                .bind(v.tenant_id)
                .bind(v.id)
                .bind(v.old)
                .execute(&mut *tx)
                .await?;
            written += done.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }
}

/// Records `version` as the active one (a row it may not have yet) in `tx`.
async fn make_active(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    version: u32,
    at: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO key_versions (version, state, seals, legacy_seals, updated_at) \
         VALUES ($1, 'active', 0, 0, $2) \
         ON CONFLICT (version) DO UPDATE SET state = 'active', updated_at = $2",
    )
    .bind(i64::from(version))
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
