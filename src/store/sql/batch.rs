//! Durable writes at volume.
//!
//! Writes that arrive together are group-committed: whatever queued while the
//! previous commit was being made durable goes into the next one. A caller hears back
//! only after the commit that holds its job.
//!
//! - Audit records (one per reveal) go in with one statement for the whole batch, on
//!   both backends: they cannot conflict with anything, so they need no savepoints,
//!   and a batch of audit records alone is one autocommit statement.
//! - On SQLite (one writer, each commit an fsync) creates and logins are batched
//!   too, each inside a savepoint of its own (a create whose `request_id` is taken
//!   rolls back alone). A create's statements, its savepoint and its own audit
//!   record included, go to SQLite's worker thread as one command.
//! - On PostgreSQL a create is one statement (data-modifying CTEs) sent through the
//!   pool: there its cost is round trips, and concurrent creates commit in parallel.
use sqlx::{Executor, Pool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::engine::{BACKEND, Db};
use super::statements::{
    DbQuery, audit_columns, bind_meta, conflict_or, insert_audit_query, insert_audits_query,
    insert_event_query,
};
use crate::model::users::email_key;
use crate::model::{AuditEntry, Event, SealedCredential};
use crate::store::{Backend, IdempotencyRecord, StoreError, StoreResult};

/// Jobs committed together at most.
const WRITE_BATCH: usize = 256;

/// A write waiting for the next group commit.
pub(super) enum WriteJob {
    Audit(AuditEntry),
    Create(Box<CreateJob>),
    Login(Box<LoginJob>),
}

/// The record of one login attempt: its audit record and event and, after a
/// success, the subject whose failures are forgotten.
pub(super) struct LoginJob {
    pub audit: AuditEntry,
    pub event: Event,
    pub forget: Option<String>,
}

/// The rows of a login record, in the transaction `tx` (batched or not).
pub(super) async fn insert_login_rows(
    tx: &mut Transaction<'static, Db>,
    job: &LoginJob,
) -> Result<(), sqlx::Error> {
    insert_audit_query(&job.audit).execute(&mut **tx).await?;
    insert_event_query(&job.event).execute(&mut **tx).await?;
    if let Some(subject) = &job.forget {
        sqlx::query("DELETE FROM auth_failures WHERE tenant_id = $1 AND subject = $2")
            .bind(&job.audit.tenant_id)
            .bind(subject)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(super) struct CreateJob {
    pub credential: SealedCredential,
    pub idempotency: Option<IdempotencyRecord>,
    pub audit: AuditEntry,
}

/// How one job ended: `Done` with the end user's email on file (creates); `Conflict`
/// for a taken unique key; other failures as text, their cause logged once.
#[derive(Debug, Clone)]
pub(super) enum JobResult {
    Done(Option<String>),
    Conflict,
    Failed(String),
}

pub(super) type Queued = (WriteJob, oneshot::Sender<JobResult>);

/// Starts the group-commit writer on `write`; returns its queue.
pub(super) fn spawn(write: Pool<Db>) -> mpsc::Sender<Queued> {
    let (queue, jobs) = mpsc::channel(4 * WRITE_BATCH);
    tokio::spawn(group_commit(write, jobs));
    queue
}

/// Queues a job and waits until it is durable (or failed).
pub(super) async fn submit(
    queue: &mpsc::Sender<Queued>,
    job: WriteJob,
) -> StoreResult<Option<String>> {
    let (done, committed) = oneshot::channel();
    let gone = || StoreError::Batch("the database writer stopped".into());
    queue.send((job, done)).await.map_err(|_| gone())?;
    match committed.await.map_err(|_| gone())? {
        JobResult::Done(email) => Ok(email),
        JobResult::Conflict => Err(StoreError::Conflict),
        JobResult::Failed(reason) => Err(StoreError::Batch(reason)),
    }
}

async fn group_commit(write: Pool<Db>, mut jobs: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while jobs.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        match commit_batch(&write, &batch).await {
            Ok(results) => {
                for ((_, done), result) in batch.drain(..).zip(results) {
                    let _ = done.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
                for (_, done) in batch.drain(..) {
                    let _ = done.send(JobResult::Failed(e.to_string()));
                }
            }
        }
    }
}

/// Commits `batch`: each job other than an audit record in a savepoint of its own,
/// then the audit records with one statement; one transaction, or that lone
/// statement when there is nothing but audit records.
async fn commit_batch(write: &Pool<Db>, batch: &[Queued]) -> Result<Vec<JobResult>, sqlx::Error> {
    let audits: Vec<&AuditEntry> = batch
        .iter()
        .filter_map(|(job, _)| match job {
            WriteJob::Audit(audit) => Some(audit),
            _ => None,
        })
        .collect();
    if audits.len() == batch.len() {
        insert_audits_query(&audits)?.execute(write).await?;
        return Ok(vec![JobResult::Done(None); batch.len()]);
    }
    let mut tx = write.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for (job, _) in batch {
        results.push(commit_job(&mut tx, job).await?);
    }
    if !audits.is_empty() {
        insert_audits_query(&audits)?.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// One job of a batch in a savepoint of its own, so that its failure rolls back
/// alone (audit records follow, with the batch's one statement).
async fn commit_job(
    tx: &mut Transaction<'static, Db>,
    job: &WriteJob,
) -> Result<JobResult, sqlx::Error> {
    let outcome = match job {
        WriteJob::Audit(_) => return Ok(JobResult::Done(None)),
        // The savepoint is part of the create's one command.
        WriteJob::Create(create) => create_in_savepoint(tx, create).await,
        WriteJob::Login(login) => login_in_savepoint(tx, login).await,
    };
    Ok(match outcome {
        Ok(email) => JobResult::Done(email),
        Err(e) => {
            tx.execute("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")
                .await?;
            match conflict_or(e) {
                StoreError::Conflict => JobResult::Conflict,
                other => {
                    tracing::error!(error = %other, "a batched write failed");
                    JobResult::Failed(other.to_string())
                }
            }
        }
    })
}

async fn login_in_savepoint(
    tx: &mut Transaction<'static, Db>,
    login: &LoginJob,
) -> Result<Option<String>, sqlx::Error> {
    tx.execute("SAVEPOINT job").await?;
    insert_login_rows(tx, login).await?;
    tx.execute("RELEASE SAVEPOINT job").await?;
    Ok(None)
}

/// SQLite: a create's statements (`SAVEPOINT` to `RELEASE`) as one command to the
/// connection's worker thread, which runs them one after another; the end user's
/// email on file is the one row they return.
async fn create_in_savepoint(
    tx: &mut Transaction<'static, Db>,
    job: &CreateJob,
) -> Result<Option<String>, sqlx::Error> {
    let rows = create_query(job).fetch_all(&mut **tx).await?;
    match rows.first() {
        Some(row) => row.try_get("email"),
        None => Err(sqlx::Error::RowNotFound),
    }
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
     updated_at = excluded.updated_at \
     RETURNING email";
/// `$1`..`$15` are bound by `bind_meta`; then user_id, provider, created_at, secret.
const INSERT_CREDENTIAL: &str = "INSERT INTO credentials (tenant_id, id, name, kind, status, labels, \
     scopes, expires_at, token_expires_at, version, updated_at, next_refresh_at, refresh_failures, \
     last_refresh_error, lapses_at, user_id, provider, created_at, secret) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

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
///   transaction, sent as one command.
fn create_sql(idempotency: bool) -> &'static str {
    static SQL: std::sync::LazyLock<[String; 2]> =
        std::sync::LazyLock::new(|| [create_statements(false), create_statements(true)]);
    &SQL[usize::from(idempotency)]
}

fn create_statements(idempotency: bool) -> String {
    let upsert_user = format!("{UPSERT_END_USER} {END_USER_VALUES} {ON_END_USER_CONFLICT}");
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
            "SAVEPOINT job; {idem}{upsert_user}; {INSERT_CREDENTIAL}; \
             {INSERT_CREATE_AUDIT}; RELEASE SAVEPOINT job"
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

/// PostgreSQL: the whole create as one statement (one round trip, atomic), sent
/// through the pool: concurrent creates commit in parallel.
pub(super) async fn create_in_one_statement(
    write: &Pool<Db>,
    job: &CreateJob,
) -> StoreResult<Option<String>> {
    let row = create_query(job)
        .fetch_one(write)
        .await
        .map_err(conflict_or)?;
    Ok(row.try_get("email")?)
}
