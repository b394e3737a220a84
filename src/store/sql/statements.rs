//! Statements more than one part of the store writes with: audit records, events,
//! credential metadata; and [`DIALECT`], everything the two engines spell differently.
//! A leaf: it knows SQL and rows, not the store or its writer.
use std::sync::LazyLock;

use serde::Serialize;
use sqlx::query::Query;

use super::engine::{BACKEND, Db};
use super::rows;
use crate::clock::Millis;
use crate::model::{AuditEntry, CredentialMeta, Event};
use crate::store::{Backend, ChainLink, Place, StoreError};

pub(super) type DbQuery<'q> = Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;

/// What one engine does or spells differently from the other. The rest of the
/// store's SQL is text both accept; this table is the whole list of differences,
/// chosen once for the engine this copy of the store is compiled for.
pub(super) struct Dialect {
    /// One writer connection beside the readers, where every commit costs an fsync:
    /// a group commit is one transaction, with a savepoint per create and per login
    /// (SQLite). Otherwise a group commit's creates are one statement, its audit
    /// records another and each login a transaction of its own, committed side by
    /// side on connections of the writers' pool (PostgreSQL).
    pub one_writer: bool,
    /// How a write transaction starts. SQLite takes the write lock up front, so a
    /// transaction that reads before it writes cannot fail midway when another
    /// process writes to the same file.
    pub begin_write: &'static str,
    /// Taken first in a bootstrap, so that of two replicas bootstrapping at once the
    /// second waits and then sees a tenant (SQLite has one writer anyway).
    pub lock_tenants: Option<&'static str>,
    /// Whether revoking an admin token first locks the other admin tokens' rows, so
    /// the "another admin remains" check sees every concurrent revocation.
    pub lock_admin_tokens: bool,
    /// Appended to a claim's SELECT, so that replicas claim different rows.
    pub skip_locked: &'static str,
    /// The conditions that keep a credential listing (alias `c`) within a token's
    /// constraints: each takes one JSON parameter, `$?`.
    pub constraint_conditions: [&'static str; 2],
    /// A credential (alias `c`) whose id is in the JSON list `$2`, found by its key:
    /// on PostgreSQL an array, so that the plan is one index scan for the list
    /// whatever its length (`gathered.rs`).
    pub id_in_json: &'static str,
    /// Whether an audit record takes its place in its tenant's chain as it is
    /// written (`audit_writes.rs`): SQLite, where the one writer orders every write
    /// anyway. Otherwise the chain job links records after they are written.
    pub chain_at_insert: bool,
    /// Every audit record of the JSON array `$1`, with one statement; with its place
    /// in the chain where [`AuditRow`] carries one.
    pub insert_audits: &'static str,
    /// Every chain link of the JSON array `$1` ([`chain_audits_query`]) onto its
    /// unchained record, with one statement.
    pub chain_audits: &'static str,
}

pub(super) const DIALECT: Dialect = match BACKEND {
    Backend::Sqlite => Dialect {
        one_writer: true,
        begin_write: "BEGIN IMMEDIATE",
        lock_tenants: None,
        lock_admin_tokens: false,
        skip_locked: "",
        chain_at_insert: true,
        constraint_conditions: [
            "c.provider IN (SELECT value FROM json_each($?))",
            "NOT EXISTS (SELECT 1 FROM json_each($?) s WHERE NOT EXISTS \
             (SELECT 1 FROM json_each(c.labels) l WHERE l.key = s.key AND l.value = s.value))",
        ],
        id_in_json: "c.id IN (SELECT value FROM json_each($2))",
        insert_audits: INSERT_AUDITS_SQLITE,
        chain_audits: "UPDATE audit_log SET seq = v.value ->> 'seq', \
             prev_hash = unhex(v.value ->> 'prev_hash'), hash = unhex(v.value ->> 'hash') \
             FROM json_each($1) AS v \
             WHERE audit_log.id = v.value ->> 'id' AND audit_log.seq IS NULL",
    },
    Backend::Postgres => Dialect {
        one_writer: false,
        begin_write: "BEGIN",
        lock_tenants: Some("LOCK TABLE tenants IN EXCLUSIVE MODE"),
        lock_admin_tokens: true,
        skip_locked: " FOR UPDATE SKIP LOCKED",
        chain_at_insert: false,
        constraint_conditions: [
            "c.provider IN (SELECT json_array_elements_text(CAST($? AS json)))",
            "CAST(c.labels AS jsonb) @> CAST($? AS jsonb)",
        ],
        id_in_json: "c.id = ANY(ARRAY(SELECT json_array_elements_text(CAST($2 AS json))))",
        insert_audits: INSERT_AUDITS_POSTGRES,
        chain_audits: "UPDATE audit_log SET seq = v.seq, \
             prev_hash = decode(v.prev_hash, 'hex'), hash = decode(v.hash, 'hex') \
             FROM json_to_recordset(CAST($1 AS json)) \
             AS v(id bigint, seq bigint, prev_hash text, hash text) \
             WHERE audit_log.id = v.id AND audit_log.seq IS NULL",
    },
};

/// Appends ` AND <condition>$n` for each condition that has a value, and collects the
/// values: only the filters in use reach the SQL, so each shape gets its own plan
/// (and index) rather than one generic `($n IS NULL OR …)` plan. `$n` counts the
/// values collected so far plus `offset` parameters bound ahead of them; a condition
/// that names its parameter inside (`$?`) gets it there instead of at its end.
pub(super) fn push_conditions<'a>(
    sql: &mut String,
    values: &mut Vec<&'a str>,
    offset: usize,
    conditions: impl IntoIterator<Item = (&'static str, Option<&'a str>)>,
) {
    for (condition, value) in conditions {
        if let Some(value) = value {
            values.push(value);
            let parameter = format!("${}", values.len() + offset);
            sql.push_str(" AND ");
            if condition.contains("$?") {
                sql.push_str(&condition.replace("$?", &parameter));
            } else {
                sql.push_str(condition);
                sql.push_str(&parameter);
            }
        }
    }
}

/// Unique-key violations become [`StoreError::Conflict`]; everything else stays as is.
pub(super) fn conflict_or(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(err),
    }
}

/// Binds `$1`..`$15`: the key and the columns a write may change, in this order:
/// tenant_id, id, name, kind, status, labels, scopes, expires_at, token_expires_at,
/// version, updated_at, next_refresh_at, refresh_failures, last_refresh_error, and the
/// derived lapses_at.
pub(super) fn bind_meta<'q>(query: DbQuery<'q>, m: &'q CredentialMeta) -> DbQuery<'q> {
    query
        .bind(&m.tenant_id)
        .bind(&m.id)
        .bind(&m.name)
        .bind(m.kind.as_str())
        .bind(m.status.as_str())
        .bind(rows::json_text(&m.labels))
        .bind(rows::json_text(&m.scopes))
        .bind(m.expires_at)
        .bind(m.token_expires_at)
        .bind(m.version)
        .bind(m.updated_at)
        .bind(m.refresh.next_at)
        .bind(m.refresh.failures)
        .bind(&m.refresh.last_error)
        .bind(m.lapses_at())
}

pub(super) fn insert_event_query(e: &Event) -> DbQuery<'_> {
    sqlx::query(
        "INSERT INTO events (id, tenant_id, type, credential_id, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&e.id)
    .bind(&e.tenant_id)
    .bind(e.kind)
    .bind(&e.credential_id)
    .bind(&e.payload)
    .bind(e.created_at)
}

/// The columns every audit insert writes, in this order (here and a create's, in
/// `creates.rs`).
macro_rules! audit_columns {
    () => {
        "tenant_id, at, actor, action, credential_id, request_id, detail, user_id, source, outcome"
    };
}
pub(super) use audit_columns;

const INSERT_AUDIT: &str = concat!(
    "INSERT INTO audit_log (",
    audit_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);

/// SQLite: the rows of the JSON array `$1`, in array order, each at its place in
/// its chain. Each element is turned into SQLite's binary JSON once (the
/// materialized `r`), and its fields are read from that: `json_each`'s `value` is
/// the element's text, made afresh and parsed again at each mention, which cost
/// the writer's thread a third of each record's insert (docs/benchmarks.md).
const INSERT_AUDITS_SQLITE: &str = concat!(
    "WITH r AS MATERIALIZED (SELECT key, jsonb(value) AS v FROM json_each($1)) \
     INSERT INTO audit_log (",
    audit_columns!(),
    ", seq, prev_hash, hash) SELECT v ->> 'tenant_id', v ->> 'at', v ->> 'actor', \
     v ->> 'action', v ->> 'credential_id', v ->> 'request_id', v ->> 'detail', \
     v ->> 'user_id', v ->> 'source', v ->> 'outcome', v ->> 'seq', \
     unhex(v ->> 'prev_hash'), unhex(v ->> 'hash') FROM r ORDER BY key"
);

/// PostgreSQL: the rows of the JSON array `$1`.
const INSERT_AUDITS_POSTGRES: &str = concat!(
    "INSERT INTO audit_log (",
    audit_columns!(),
    ") SELECT ",
    audit_columns!(),
    " FROM json_to_recordset(CAST($1 AS json)) AS r(tenant_id text, at bigint, actor text, \
     action text, credential_id text, request_id text, detail text, user_id text, \
     source text, outcome text)"
);

pub(super) fn insert_audit_query(a: &AuditEntry) -> DbQuery<'_> {
    sqlx::query(INSERT_AUDIT)
        .bind(&a.tenant_id)
        .bind(a.at)
        .bind(&a.actor)
        .bind(a.action)
        .bind(&a.credential_id)
        .bind(&a.request_id)
        .bind(&a.detail)
        .bind(&a.user_id)
        .bind(&a.source)
        .bind(a.outcome)
}

/// One audit record as the batched insert reads it from its JSON array.
#[derive(Serialize)]
struct AuditRow<'a> {
    tenant_id: &'a str,
    at: Millis,
    actor: &'a str,
    action: &'a str,
    credential_id: &'a str,
    request_id: &'a str,
    detail: &'a str,
    user_id: &'a str,
    source: &'a str,
    outcome: &'a str,
    /// Its place in its chain, the hashes as hex (SQLite's `unhex` reads them).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
}

impl<'a> AuditRow<'a> {
    /// `a` at `place` in its chain.
    fn at_place(a: &'a AuditEntry, place: &Place) -> Self {
        Self {
            seq: Some(place.seq),
            prev_hash: Some(crate::ids::hex(&place.prev_hash)),
            hash: Some(crate::ids::hex(&place.hash)),
            ..Self::from(a)
        }
    }
}

impl<'a> From<&'a AuditEntry> for AuditRow<'a> {
    fn from(a: &'a AuditEntry) -> Self {
        Self {
            tenant_id: &a.tenant_id,
            at: a.at,
            actor: &a.actor,
            action: a.action,
            credential_id: &a.credential_id,
            request_id: &a.request_id,
            detail: &a.detail,
            user_id: &a.user_id,
            source: &a.source,
            outcome: a.outcome,
            seq: None,
            prev_hash: None,
            hash: None,
        }
    }
}

/// Every record in `audits` (in this order) with one statement whose text does not
/// depend on how many there are: the records travel as one JSON array parameter,
/// which each engine unpacks into rows itself. One statement, one plan, one round
/// trip, however many reveals a group commit carries.
pub(super) fn insert_audits_query(audits: &[&AuditEntry]) -> Result<DbQuery<'static>, sqlx::Error> {
    let rows: Vec<AuditRow<'_>> = audits.iter().map(|a| AuditRow::from(*a)).collect();
    json_rows_query(DIALECT.insert_audits, &rows)
}

/// SQLite: every record in `audits` at its place (`places`, in the same order),
/// with one statement (then the commit of the transaction begun before, if
/// `commit`). Each record moves its chain's head as it goes in: the trigger of
/// migration 0013, which moves a head only from the place right before the record.
/// A place another transaction took meanwhile breaks `audit_log_chain`'s
/// uniqueness, and nothing of the statement holds.
pub(super) fn insert_chained_audits_query(
    audits: &[&AuditEntry],
    places: &[Place],
    commit: bool,
) -> Result<DbQuery<'static>, sqlx::Error> {
    static SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
        [
            DIALECT.insert_audits.into(),
            format!("{}; COMMIT", DIALECT.insert_audits),
        ]
    });
    let rows: Vec<AuditRow<'_>> = audits
        .iter()
        .zip(places)
        .map(|(a, place)| AuditRow::at_place(a, place))
        .collect();
    json_rows_query(&SQL[usize::from(commit)], &rows)
}

/// `sql`, whose one parameter `$1` is `rows` as a JSON array.
pub(super) fn json_rows_query<R: Serialize>(
    sql: &'static str,
    rows: &[R],
) -> Result<DbQuery<'static>, sqlx::Error> {
    let json = serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok(sqlx::query(sql).bind(json))
}

/// One chain link as [`DIALECT`]'s `chain_audits` reads it: the hashes as hex text.
#[derive(Serialize)]
struct LinkRow {
    id: i64,
    seq: i64,
    prev_hash: String,
    hash: String,
}

/// Every link in `links` with one statement whose text does not depend on how many
/// there are (as [`insert_audits_query`]): one JSON array parameter, not four bound
/// parameters per link, whose binding costs SQLite time quadratic in their number.
pub(super) fn chain_audits_query(links: &[ChainLink]) -> Result<DbQuery<'static>, sqlx::Error> {
    let rows: Vec<LinkRow> = links
        .iter()
        .map(|l| LinkRow {
            id: l.id,
            seq: l.place.seq,
            prev_hash: crate::ids::hex(&l.place.prev_hash),
            hash: crate::ids::hex(&l.place.hash),
        })
        .collect();
    json_rows_query(DIALECT.chain_audits, &rows)
}
