//! The `AuditStore` queries.
use async_trait::async_trait;
use sqlx::Row;

use super::audit_writes;
use super::engine::DbRow;
use super::statements::{chain_audits_query, push_conditions};
use super::store::SqlStore;
use crate::clock::Millis;
use crate::model::{AuditRecord, Checkpoint};
use crate::store::{AuditFilter, AuditStore, ChainLink, Head, HeadMove, StoreError, StoreResult};

const RECORD_COLUMNS: &str = "id, tenant_id, at, actor, action, credential_id, user_id, \
     request_id, source, outcome, detail, seq, prev_hash, hash";

const CHECKPOINT_COLUMNS: &str = "tenant_id, seq, hash, at, key_version, mac";

fn record(row: &DbRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        credential_id: row.try_get("credential_id")?,
        user_id: row.try_get("user_id")?,
        request_id: row.try_get("request_id")?,
        source: row.try_get("source")?,
        outcome: row.try_get("outcome")?,
        detail: row.try_get("detail")?,
        seq: row.try_get("seq")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn head(row: &DbRow) -> StoreResult<Head> {
    Ok(audit_writes::head(row)?)
}

fn checkpoint(row: &DbRow) -> StoreResult<Checkpoint> {
    let version: i64 = row.try_get("key_version")?;
    Ok(Checkpoint {
        tenant_id: row.try_get("tenant_id")?,
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        at: row.try_get("at")?,
        key_version: u32::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("checkpoint key version {version}")))?,
        mac: row.try_get("mac")?,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn unchained_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT {limit}"
        );
        self.fetch_all(&sql, &[], record).await
    }

    async fn audit_head(&self, tenant_id: &str) -> StoreResult<Option<Head>> {
        // From the writer: the chain job must see what it wrote last.
        let row = sqlx::query("SELECT tenant_id, seq, hash FROM audit_heads WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.write)
            .await?;
        row.as_ref().map(head).transpose()
    }

    async fn chain_audit(&self, moves: &[HeadMove], links: &[ChainLink]) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        for m in moves {
            let query = if m.from == 0 {
                sqlx::query(
                    "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id) DO NOTHING",
                )
            } else {
                sqlx::query(
                    "UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1 AND seq = $4",
                )
            };
            let query = query
                .bind(&m.to.tenant_id)
                .bind(m.to.seq)
                .bind(m.to.hash.as_slice());
            let query = if m.from == 0 {
                query
            } else {
                query.bind(m.from)
            };
            let done = query.execute(&mut *tx).await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
        }
        if !links.is_empty() {
            match chain_audits_query(links)?.execute(&mut *tx).await {
                Ok(done) if done.rows_affected() == links.len() as u64 => {}
                Ok(_) => return Ok(false),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn unsigned_heads(&self) -> StoreResult<Vec<Head>> {
        let sql = "SELECT tenant_id, seq, hash FROM audit_heads WHERE seq > signed_seq \
                   ORDER BY tenant_id";
        self.fetch_all(sql, &[], head).await
    }

    async fn insert_checkpoint(&self, c: &Checkpoint) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_checkpoints (tenant_id, seq, hash, at, key_version, mac) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, seq) DO NOTHING",
        )
        .bind(&c.tenant_id)
        .bind(c.seq)
        .bind(c.hash.as_slice())
        .bind(c.at)
        .bind(i64::from(c.key_version))
        .bind(c.mac.as_slice())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE audit_heads SET signed_seq = $2 WHERE tenant_id = $1 AND signed_seq < $2",
        )
        .bind(&c.tenant_id)
        .bind(c.seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn checkpoints(&self, tenant_id: &str) -> StoreResult<Vec<Checkpoint>> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY seq"
        );
        self.fetch_all(&sql, &[tenant_id], checkpoint).await
    }

    async fn checkpoint_before(&self, tenant_id: &str, before: Millis) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT seq FROM audit_checkpoints WHERE tenant_id = $1 AND at < $2 \
             ORDER BY at DESC, seq DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(before)
        .fetch_optional(&mut self.read.acquire().await?)
        .await?)
    }

    async fn audit_tenants(&self) -> StoreResult<Vec<String>> {
        let sql = "SELECT tenant_id FROM audit_heads UNION SELECT id FROM tenants ORDER BY 1";
        self.fetch_all(sql, &[], |row| Ok(row.try_get(0)?)).await
    }

    async fn chained_audit(
        &self,
        tenant_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log \
             WHERE tenant_id = $1 AND seq IS NOT NULL AND seq > $2 ORDER BY seq, id LIMIT {limit}"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(after_seq)
            .fetch_all(&mut self.read.acquire().await?)
            .await?;
        rows.iter().map(record).collect()
    }

    async fn unchained_count(&self, tenant_id: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND seq IS NULL",
        )
        .bind(tenant_id)
        .fetch_one(&mut self.read.acquire().await?)
        .await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM audit_log WHERE tenant_id = $1");
        let mut texts = Vec::new();
        push_conditions(
            &mut sql,
            &mut texts,
            1,
            [
                ("credential_id = ", filter.credential_id.as_deref()),
                ("user_id = ", filter.user_id.as_deref()),
                ("actor = ", filter.actor.as_deref()),
                ("action = ", filter.action.as_deref()),
            ],
        );
        let numbers: Vec<(&str, i64)> = [
            ("id > ", after),
            ("at >= ", filter.since),
            ("at < ", filter.until),
        ]
        .into_iter()
        .filter_map(|(c, v)| v.map(|v| (c, v)))
        .collect();
        for (k, (condition, _)) in numbers.iter().enumerate() {
            sql.push_str(&format!(" AND {condition}${}", 2 + texts.len() + k));
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
        let query = texts
            .iter()
            .fold(sqlx::query(&sql).bind(&filter.tenant_id), |q, t| q.bind(*t));
        let query = numbers.iter().fold(query, |q, (_, v)| q.bind(*v));
        let rows = query.fetch_all(&mut self.read.acquire().await?).await?;
        rows.iter().map(record).collect()
    }

    async fn prune_audit(&self, tenant_id: &str, through: i64, keep_from: i64) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query(
            "DELETE FROM audit_log WHERE tenant_id = $1 AND seq IS NOT NULL AND seq <= $2",
        )
        .bind(tenant_id)
        .bind(through)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND seq < $2")
            .bind(tenant_id)
            .bind(keep_from)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone)
    }
}
