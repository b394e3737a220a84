//! Writing audit records, in the transaction of the change they record.
//!
//! - **SQLite** ([`DIALECT`]`.chain_at_insert`): the one writer puts every write in
//!   an order anyway, so each record takes its tenant's next place in the chain as
//!   it is written. The transaction reads the heads of the chains it extends (or the
//!   group commit knows them from its last commit), hashes each record onto its
//!   chain and writes the records whole; each insert moves its chain's head (the
//!   trigger of migrations/sqlite/0013). One write per record, and nothing left for
//!   the chain job to update later.
//! - **PostgreSQL**: replicas write side by side, and one head per tenant moved by
//!   every audited write would queue them all on that row's lock. Records go in
//!   unchained; the chain job links them later, in the order it finds them.
//!
//! A leaf beside `statements.rs`: it knows SQL and rows, not the store or its writer.
use std::collections::HashMap;

use sqlx::{Executor, Row};

use super::engine::{Connection, DbRow};
use super::statements::{
    DIALECT, insert_audit_query, insert_audits_query, insert_chained_audits_query, json_rows_query,
};
use crate::model::AuditEntry;
use crate::store::Head;

/// The heads of the chains `audits` extend, by tenant (a chain not started yet has
/// none).
macro_rules! heads_of {
    () => {
        "SELECT tenant_id, seq, hash FROM audit_heads \
         WHERE tenant_id IN (SELECT value FROM json_each($1))"
    };
}

/// Chain heads by tenant: as read in the transaction that moves them, or as the
/// group commit last moved them. The heads themselves move in the database as each
/// record goes in (a trigger, migrations/sqlite/0013).
#[derive(Clone, Default)]
pub(super) struct Heads(HashMap<String, Head>);

impl Heads {
    /// The heads of `tenants`, if each has its head here.
    pub(super) fn of<'a>(&self, tenants: impl Iterator<Item = &'a str>) -> Option<Heads> {
        let heads = tenants.map(|t| Some((t.to_owned(), self.0.get(t)?.clone())));
        heads.collect::<Option<_>>().map(Heads)
    }

    /// Takes in `newer`, which replace the heads of the same tenants.
    pub(super) fn update(&mut self, newer: Heads) {
        self.0.extend(newer.0);
    }
}

/// Writes `audits`, in this order, on `conn`, which is in a write transaction on
/// SQLite (begun with [`DIALECT`]`.begin_write`, so that no other writer can move a
/// head between its read here and the write).
pub(super) async fn append_audits(
    conn: &mut Connection,
    audits: &[&AuditEntry],
) -> Result<(), sqlx::Error> {
    match audits {
        [] => Ok(()),
        _ if DIALECT.chain_at_insert => {
            let tenants = audits.iter().map(|a| a.tenant_id.as_str());
            let heads = read_heads(conn, heads_of!(), tenants).await?;
            insert_chained(conn, audits, heads, false).await.map(drop)
        }
        [one] => insert_audit_query(one).execute(conn).await.map(drop),
        _ => insert_audits_query(audits)?.execute(conn).await.map(drop),
    }
}

/// One record: [`append_audits`].
pub(super) async fn append_audit(
    conn: &mut Connection,
    audit: &AuditEntry,
) -> Result<(), sqlx::Error> {
    append_audits(conn, &[audit]).await
}

/// SQLite's group commit, first command: begins the write transaction on `conn` and
/// reads the heads of the chains of `tenants`.
pub(super) async fn begin_with_heads<'a>(
    conn: &mut Connection,
    tenants: impl Iterator<Item = &'a str>,
) -> Result<Heads, sqlx::Error> {
    read_heads(conn, concat!("BEGIN IMMEDIATE; ", heads_of!()), tenants).await
}

/// SQLite's group commit, last command: `audits` at their places after `heads`,
/// then the commit of the transaction begun before, if `commit` (without, the
/// statement is a transaction of its own). Returns the heads as they now are.
pub(super) async fn write_chained(
    conn: &mut Connection,
    audits: &[&AuditEntry],
    heads: Heads,
    commit: bool,
) -> Result<Heads, sqlx::Error> {
    if audits.is_empty() {
        if commit {
            conn.execute("COMMIT").await?;
        }
        return Ok(heads);
    }
    insert_chained(conn, audits, heads, commit).await
}

/// The records at their places after `heads`, each moving its chain's head, with
/// one statement (and the commit, if `commit`); the heads after.
async fn insert_chained(
    conn: &mut Connection,
    audits: &[&AuditEntry],
    Heads(mut heads): Heads,
    commit: bool,
) -> Result<Heads, sqlx::Error> {
    let places: Vec<_> = audits
        .iter()
        .map(|a| {
            let head = heads
                .entry(a.tenant_id.clone())
                .or_insert_with(|| Head::start(&a.tenant_id));
            head.advance(|seq, prev| a.chain_hash(seq, prev))
        })
        .collect();
    insert_chained_audits_query(audits, &places, commit)?
        .execute(conn)
        .await?;
    Ok(Heads(heads))
}

/// The heads that `sql` selects for the JSON array of `tenants`, by tenant.
async fn read_heads<'a>(
    conn: &mut Connection,
    sql: &'static str,
    tenants: impl Iterator<Item = &'a str>,
) -> Result<Heads, sqlx::Error> {
    let mut tenants: Vec<&str> = tenants.collect();
    tenants.sort_unstable();
    tenants.dedup();
    let rows = json_rows_query(sql, &tenants)?.fetch_all(conn).await?;
    let heads = rows
        .iter()
        .map(|row| head(row).map(|h| (h.tenant_id.clone(), h)));
    Ok(Heads(heads.collect::<Result<_, _>>()?))
}

/// A row of `audit_heads` (`tenant_id`, `seq`, `hash`).
pub(super) fn head(row: &DbRow) -> Result<Head, sqlx::Error> {
    Ok(Head {
        tenant_id: row.try_get("tenant_id")?,
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
    })
}
