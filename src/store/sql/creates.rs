//! The statements that write a new credential: its idempotency key (if it has one),
//! its end user, the credential and (on PostgreSQL) its audit record, all or none.
//! On SQLite the audit record follows with the batch's others, once the create went
//! in, at its place in its tenant's chain (`audit_writes.rs`).
//!
//! - One create: [`create_sql`], one statement of data-modifying CTEs on PostgreSQL,
//!   the statements in a savepoint sent as one command on SQLite. Both bind the same
//!   `$1`..`$34` ([`create_query`]); SQLite's leave the audit record's unused.
//! - Creates that arrive together on PostgreSQL: [`creates_in_one_statement`], one
//!   statement for all of them, whose values travel as one JSON array.
//!
//! A leaf beside `statements.rs`: it knows SQL and rows, not the writer that batches.
use serde::Serialize;
use sqlx::{Pool, Row};

use super::engine::{BACKEND, Connection, Db, DbRow};
use super::statements::{DbQuery, audit_columns, bind_meta, conflict_or};
use crate::model::users::email_key;
use crate::model::{AuditEntry, SealedCredential};
use crate::store::{Backend, IdempotencyRecord, StoreError, StoreResult};

pub(super) struct CreateJob {
    pub credential: SealedCredential,
    pub idempotency: Option<IdempotencyRecord>,
    pub audit: AuditEntry,
}

const INSERT_IDEMPOTENCY: &str = "INSERT INTO idempotency_keys \
     (tenant_id, request_id, fingerprint, key_version, credential_id, created_at)";
const UPSERT_END_USER: &str =
    "INSERT INTO end_users (tenant_id, user_id, email, created_at, updated_at, email_key)";
/// A new email replaces the one on file (and claims its key: a key another user holds
/// fails the write, which the service checks for first).
const ON_END_USER_CONFLICT: &str = "ON CONFLICT (tenant_id, user_id) DO UPDATE \
     SET email = COALESCE(excluded.email, end_users.email), \
     email_key = COALESCE(excluded.email_key, end_users.email_key), \
     updated_at = excluded.updated_at";
/// The credential's columns, in the order `bind_meta` binds `$1`..`$15`; then
/// user_id, provider, created_at, secret.
macro_rules! credential_columns {
    () => {
        "tenant_id, id, name, kind, status, labels, scopes, expires_at, token_expires_at, \
         version, updated_at, next_refresh_at, refresh_failures, last_refresh_error, \
         lapses_at, user_id, provider, created_at, secret"
    };
}
const INSERT_CREDENTIAL: &str = concat!(
    "INSERT INTO credentials (",
    credential_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18, $19)"
);

/// A create's audit record, and its idempotency key if it has one.
const INSERT_CREATE_AUDIT: &str = concat!(
    "INSERT INTO audit_log (",
    audit_columns!(),
    ") VALUES ($1, $21, $22, $23, $2, $24, $28, $16, $26, $27)"
);
const IDEMPOTENCY_VALUES: &str = "VALUES ($29, $30, $31, $32, $33, $34)";
const END_USER_VALUES: &str = "VALUES ($1, $16, $20, $18, $18, $25)";

/// Everything a create writes, `$1`..`$34` as [`create_query`] binds them: the
/// idempotency key first (a taken one fails before anything else is written), the
/// end user (whose row the credential's foreign key needs), the credential and its
/// audit record.
/// - PostgreSQL: one statement of data-modifying CTEs, atomic; foreign keys are
///   checked at its end, when the end user row exists.
/// - SQLite, which has no such CTEs: the statements in a savepoint of the batch's
///   transaction, sent as one command; the audit record is the batch's to write
///   (it takes a place in the chain only if the savepoint held).
fn create_sql(idempotency: bool) -> &'static str {
    static SQL: std::sync::LazyLock<[String; 2]> =
        std::sync::LazyLock::new(|| [create_statements(false), create_statements(true)]);
    &SQL[usize::from(idempotency)]
}

fn create_statements(idempotency: bool) -> String {
    let upsert_user =
        format!("{UPSERT_END_USER} {END_USER_VALUES} {ON_END_USER_CONFLICT} RETURNING email");
    // The idempotency key's insert, as a CTE or as a statement of its own.
    let (before, after) = match BACKEND {
        Backend::Postgres => ("idem AS (", " RETURNING 1), "),
        Backend::Sqlite => ("", "; "),
    };
    let idem = if idempotency {
        format!("{before}{INSERT_IDEMPOTENCY} {IDEMPOTENCY_VALUES}{after}")
    } else {
        String::new()
    };
    match BACKEND {
        Backend::Postgres => format!(
            "WITH {idem}cred AS ({INSERT_CREDENTIAL} RETURNING 1), \
             audit AS ({INSERT_CREATE_AUDIT} RETURNING 1), \
             usr AS ({upsert_user}) SELECT email FROM usr"
        ),
        Backend::Sqlite => format!(
            "SAVEPOINT job; {idem}{upsert_user}; {INSERT_CREDENTIAL}; RELEASE SAVEPOINT job"
        ),
    }
}

/// [`create_sql`] with `job`'s values bound.
fn create_query(job: &CreateJob) -> DbQuery<'_> {
    let m = &job.credential.meta;
    let a = &job.audit;
    let mut query = bind_meta(sqlx::query(create_sql(job.idempotency.is_some())), m)
        .bind(&m.user_id)
        .bind(&m.provider)
        .bind(m.created_at)
        .bind(&job.credential.blob)
        .bind(&m.user_email)
        .bind(a.at)
        .bind(&a.actor)
        .bind(a.action)
        .bind(&a.request_id)
        .bind(m.user_email.as_deref().map(email_key))
        .bind(&a.source)
        .bind(a.outcome)
        .bind(&a.detail);
    if let Some(r) = &job.idempotency {
        query = query
            .bind(&r.tenant_id)
            .bind(&r.request_id)
            .bind(&r.fingerprint)
            .bind(i64::from(r.key_version))
            .bind(&r.credential_id)
            .bind(r.created_at);
    }
    query
}

/// The end user's email on file, from the one row a create returns.
fn email_of(rows: &[DbRow]) -> Result<Option<String>, sqlx::Error> {
    match rows.first() {
        Some(row) => row.try_get("email"),
        None => Err(sqlx::Error::RowNotFound),
    }
}

/// SQLite: a create's statements (`SAVEPOINT` to `RELEASE`) as one command to the
/// connection's worker thread, which runs them one after another.
pub(super) async fn create_in_savepoint(
    conn: &mut Connection,
    job: &CreateJob,
) -> Result<Option<String>, sqlx::Error> {
    email_of(&create_query(job).fetch_all(conn).await?)
}

/// PostgreSQL: one create as one statement (one round trip, atomic).
pub(super) async fn create_in_one_statement(
    write: &Pool<Db>,
    job: &CreateJob,
) -> StoreResult<Option<String>> {
    let rows = create_query(job)
        .fetch_all(write)
        .await
        .map_err(conflict_or)?;
    Ok(email_of(&rows)?)
}

/// PostgreSQL: the creates of the JSON array `$1` ([`CreateRow`]), with one
/// statement. A create whose idempotency key is taken (by an earlier request, or by
/// another create of the same array) writes nothing; the others write what
/// [`create_sql`] writes. The end user of several creates is upserted once, with the
/// email of the last of them that names one. Returns each written create's `ord`
/// and its end user's email on file. Any other conflict (an email another user
/// holds) fails the whole statement.
fn insert_creates_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH job AS (SELECT * FROM json_to_recordset(CAST($1 AS json)) AS j({JOB_COLUMNS})), \
             idem AS ({INSERT_IDEMPOTENCY} SELECT key_tenant_id, key_request_id, \
             decode(key_fingerprint, 'hex'), key_version, key_credential_id, key_created_at \
             FROM job WHERE key_request_id IS NOT NULL ORDER BY ord \
             ON CONFLICT DO NOTHING RETURNING credential_id), \
             won AS (SELECT * FROM job WHERE key_request_id IS NULL \
             OR key_credential_id IN (SELECT credential_id FROM idem)), \
             usr AS ({UPSERT_END_USER} SELECT DISTINCT ON (tenant_id, user_id) tenant_id, \
             user_id, email, created_at, created_at, email_key FROM won \
             ORDER BY tenant_id, user_id, email IS NULL, ord DESC \
             {ON_END_USER_CONFLICT} RETURNING tenant_id, user_id, email), \
             cred AS ({INSERT_CREDENTIAL_COLUMNS} SELECT tenant_id, id, name, kind, status, \
             labels, scopes, expires_at, token_expires_at, version, updated_at, \
             next_refresh_at, refresh_failures, last_refresh_error, lapses_at, user_id, \
             provider, created_at, decode(secret, 'hex') FROM won RETURNING 1), \
             audit AS ({INSERT_AUDIT_COLUMNS} SELECT tenant_id, at, actor, action, id, \
             request_id, detail, user_id, source, outcome FROM won ORDER BY ord RETURNING 1) \
             SELECT won.ord, usr.email FROM won \
             JOIN usr ON usr.tenant_id = won.tenant_id AND usr.user_id = won.user_id"
        )
    });
    &SQL
}

/// The fields of [`CreateRow`] with their SQL types, as `json_to_recordset` reads them.
const JOB_COLUMNS: &str = "ord bigint, tenant_id text, id text, name text, kind text, \
     status text, labels text, scopes text, expires_at bigint, token_expires_at bigint, \
     version bigint, updated_at bigint, next_refresh_at bigint, refresh_failures bigint, \
     last_refresh_error text, lapses_at bigint, user_id text, provider text, \
     created_at bigint, secret text, email text, email_key text, at bigint, actor text, \
     action text, request_id text, source text, outcome text, detail text, \
     key_tenant_id text, key_request_id text, key_fingerprint text, key_version bigint, \
     key_credential_id text, key_created_at bigint";
const INSERT_CREDENTIAL_COLUMNS: &str =
    concat!("INSERT INTO credentials (", credential_columns!(), ")");
const INSERT_AUDIT_COLUMNS: &str = concat!("INSERT INTO audit_log (", audit_columns!(), ")");

/// One create as [`insert_creates_sql`] reads it from its JSON array: the values
/// [`create_query`] binds, byte strings as hex.
#[derive(Serialize)]
struct CreateRow<'a> {
    ord: usize,
    tenant_id: &'a str,
    id: &'a str,
    name: &'a str,
    kind: &'a str,
    status: &'a str,
    labels: String,
    scopes: String,
    expires_at: Option<i64>,
    token_expires_at: Option<i64>,
    version: i64,
    updated_at: i64,
    next_refresh_at: Option<i64>,
    refresh_failures: i64,
    last_refresh_error: Option<&'a str>,
    lapses_at: Option<i64>,
    user_id: &'a str,
    provider: &'a str,
    created_at: i64,
    secret: String,
    email: Option<&'a str>,
    email_key: Option<String>,
    at: i64,
    actor: &'a str,
    action: &'a str,
    request_id: &'a str,
    source: &'a str,
    outcome: &'a str,
    detail: &'a str,
    #[serde(flatten)]
    key: Option<KeyColumns<'a>>,
}

/// A create's idempotency key, as [`CreateRow`] carries it.
#[derive(Serialize)]
struct KeyColumns<'a> {
    key_tenant_id: &'a str,
    key_request_id: &'a str,
    key_fingerprint: String,
    key_version: u32,
    key_credential_id: &'a str,
    key_created_at: i64,
}

impl<'a> CreateRow<'a> {
    fn new(ord: usize, job: &'a CreateJob) -> Self {
        let m = &job.credential.meta;
        let a = &job.audit;
        Self {
            ord,
            tenant_id: &m.tenant_id,
            id: &m.id,
            name: &m.name,
            kind: m.kind.as_str(),
            status: m.status.as_str(),
            labels: super::rows::json_text(&m.labels),
            scopes: super::rows::json_text(&m.scopes),
            expires_at: m.expires_at,
            token_expires_at: m.token_expires_at,
            version: m.version,
            updated_at: m.updated_at,
            next_refresh_at: m.refresh.next_at,
            refresh_failures: m.refresh.failures,
            last_refresh_error: m.refresh.last_error.as_deref(),
            lapses_at: m.lapses_at(),
            user_id: &m.user_id,
            provider: &m.provider,
            created_at: m.created_at,
            secret: crate::ids::hex(&job.credential.blob),
            email: m.user_email.as_deref(),
            email_key: m.user_email.as_deref().map(email_key),
            at: a.at,
            actor: &a.actor,
            action: a.action,
            request_id: &a.request_id,
            source: &a.source,
            outcome: a.outcome,
            detail: &a.detail,
            key: job.idempotency.as_ref().map(|r| KeyColumns {
                key_tenant_id: &r.tenant_id,
                key_request_id: &r.request_id,
                key_fingerprint: crate::ids::hex(&r.fingerprint),
                key_version: r.key_version,
                key_credential_id: &r.credential_id,
                key_created_at: r.created_at,
            }),
        }
    }
}

/// PostgreSQL: `jobs` with one statement, [`insert_creates_sql`]. Each job's outcome, in
/// order: its end user's email on file, or [`StoreError::Conflict`] if its
/// idempotency key was taken. The statement's own failure (a unique key other than
/// an idempotency key, say) is returned as it is: then nothing of it was written.
pub(super) async fn creates_in_one_statement(
    write: &Pool<Db>,
    jobs: &[&CreateJob],
) -> Result<Vec<StoreResult<Option<String>>>, sqlx::Error> {
    let rows: Vec<CreateRow<'_>> = jobs
        .iter()
        .enumerate()
        .map(|(ord, job)| CreateRow::new(ord, job))
        .collect();
    let json = serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let written = sqlx::query(insert_creates_sql())
        .bind(json)
        .fetch_all(write)
        .await?;
    let mut outcomes: Vec<StoreResult<Option<String>>> = jobs
        .iter()
        .map(|job| match job.idempotency {
            Some(_) => Err(StoreError::Conflict),
            None => Err(StoreError::Database(sqlx::Error::RowNotFound)),
        })
        .collect();
    for row in &written {
        let ord: i64 = row.try_get("ord")?;
        let slot = usize::try_from(ord)
            .ok()
            .and_then(|ord| outcomes.get_mut(ord))
            .ok_or(sqlx::Error::RowNotFound)?;
        *slot = Ok(row.try_get("email")?);
    }
    Ok(outcomes)
}
