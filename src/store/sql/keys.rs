//! The `KeyStore` queries.
use async_trait::async_trait;
use sqlx::Row;

use super::engine::{Db, DbRow};
use super::store::SqlStore;
use crate::clock::Millis;
use crate::store::{
    Heartbeat, KeyStore, KeyVersionRow, ReplicaRow, Resealed, SealedColumn, SealedCount,
    SealedValue, StoreError, StoreResult,
};

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

/// Where `column` lives and what its values' AAD is made of.
fn place(sealed: SealedColumn) -> Place {
    use SealedColumn::*;
    let (table, column) = sealed.name().split_once('.').unwrap_or_default();
    let (id, context) = match sealed {
        CredentialSecret | OAuthStateVerifier => ("id", "user_id"),
        // The endpoints the secret is bound to are in the JSON config.
        ProviderClientSecret => ("id", "config"),
        TenantKey | ConnectSecret | ConnectPreviousSecret => ("''", "''"),
        WebhookSecret | WebhookPreviousSecret | ConnectorConfig => ("id", "''"),
    };
    Place {
        table,
        column,
        id,
        context,
    }
}

/// The first bytes of a sealed value: format and key version (`substr` takes a BLOB
/// on SQLite and a BYTEA on PostgreSQL alike).
fn head(column: &str) -> String {
    format!("substr({column}, 1, 5)")
}

fn sealed_value(row: &DbRow) -> StoreResult<SealedValue> {
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
            let p = place(column);
            let head = head(p.column);
            let sql = format!(
                "SELECT {head} AS head, COUNT(*) FROM {table} WHERE {col} IS NOT NULL \
                 GROUP BY head ORDER BY head",
                table = p.table,
                col = p.column
            );
            for row in sqlx::query(&sql)
                .fetch_all(&mut self.read.acquire().await?)
                .await?
            {
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
        let p = place(column);
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
            .fetch_all(&mut self.read.acquire().await?)
            .await?;
        rows.iter().map(sealed_value).collect()
    }

    async fn replace_sealed(
        &self,
        column: SealedColumn,
        values: &[Resealed<'_>],
    ) -> StoreResult<u64> {
        let p = place(column);
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
    tx: &mut sqlx::Transaction<'static, Db>,
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
