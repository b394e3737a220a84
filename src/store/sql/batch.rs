//! Durable writes at volume.
//!
//! Writes that arrive together are group-committed: whatever queued while the
//! previous commit was being made durable goes into the next one. A caller hears back
//! only after the commit that holds its job.
//!
//! - Audit records (one per reveal, and on SQLite one per create that went in) go in
//!   with one statement for the whole batch, on both backends: they cannot conflict
//!   with anything, so they need no savepoints, and a batch of audit records alone is
//!   one autocommit statement.
//! - On SQLite (one writer, each commit an fsync) creates and logins are batched
//!   too, each inside a savepoint of its own (a create whose `request_id` is taken
//!   rolls back alone).
//! - On PostgreSQL a create is one statement (data-modifying CTEs) sent through the
//!   pool: there its cost is round trips, and concurrent creates commit in parallel.
use sqlx::{Executor, Pool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::engine::Db;
use super::statements::{
    bind_meta, conflict_or, insert_audit_query, insert_audits_query, insert_event_query,
};
use crate::model::users::email_key;
use crate::model::{AuditEntry, Event, SealedCredential};
use crate::store::{IdempotencyRecord, StoreError, StoreResult};

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
/// then every audit record (creates' included) with one statement; one transaction,
/// or that lone statement when there is nothing but audit records.
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
    // The records last, in the one statement: the batch's own, and those of the
    // creates that went in (a create that rolled back leaves none).
    let audits: Vec<&AuditEntry> = batch
        .iter()
        .zip(&results)
        .filter_map(|((job, _), result)| match (job, result) {
            (WriteJob::Audit(audit), _) => Some(audit),
            (WriteJob::Create(create), JobResult::Done(_)) => Some(&create.audit),
            _ => None,
        })
        .collect();
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
    const SAVEPOINT: &str = "SAVEPOINT job";
    let outcome = match job {
        WriteJob::Audit(_) => return Ok(JobResult::Done(None)),
        WriteJob::Create(create) => {
            tx.execute(SAVEPOINT).await?;
            insert_credential_rows(tx, create).await
        }
        WriteJob::Login(login) => {
            tx.execute(SAVEPOINT).await?;
            insert_login_rows(tx, login).await.map(|()| None)
        }
    };
    Ok(match outcome {
        Ok(email) => {
            tx.execute("RELEASE SAVEPOINT job").await?;
            JobResult::Done(email)
        }
        Err(e) => {
            tx.execute("ROLLBACK TO SAVEPOINT job").await?;
            tx.execute("RELEASE SAVEPOINT job").await?;
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

/// The rows of a new credential, in statements of their own (inside a savepoint):
/// the idempotency key first, so a taken one fails before anything else is written.
/// Its audit record is written with the batch's others, once it is in.
async fn insert_credential_rows(
    tx: &mut Transaction<'static, Db>,
    job: &CreateJob,
) -> Result<Option<String>, sqlx::Error> {
    let m = &job.credential.meta;
    if let Some(r) = &job.idempotency {
        sqlx::query(&format!(
            "{INSERT_IDEMPOTENCY} VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&r.tenant_id)
        .bind(&r.request_id)
        .bind(&r.fingerprint)
        .bind(i64::from(r.key_version))
        .bind(&r.credential_id)
        .bind(r.created_at)
        .execute(&mut **tx)
        .await?;
    }
    let row = sqlx::query(&format!(
        "{UPSERT_END_USER} VALUES ($1, $2, $3, $4, $4, $5) {ON_END_USER_CONFLICT}"
    ))
    .bind(&m.tenant_id)
    .bind(&m.user_id)
    .bind(&m.user_email)
    .bind(m.created_at)
    .bind(m.user_email.as_deref().map(email_key))
    .fetch_one(&mut **tx)
    .await?;
    bind_meta(sqlx::query(INSERT_CREDENTIAL), m)
        .bind(&m.user_id)
        .bind(&m.provider)
        .bind(m.created_at)
        .bind(&job.credential.blob)
        .execute(&mut **tx)
        .await?;
    row.try_get("email")
}

/// PostgreSQL: the whole create as one statement (one round trip, atomic). Foreign
/// keys are checked at the end of the statement, when the end user row exists.
pub(super) async fn create_in_one_statement(
    write: &Pool<Db>,
    job: &CreateJob,
) -> StoreResult<Option<String>> {
    let m = &job.credential.meta;
    let a = &job.audit;
    let idempotency = if job.idempotency.is_some() {
        format!(
            "idem AS ({INSERT_IDEMPOTENCY} VALUES ($28, $29, $30, $31, $32, $33) RETURNING 1), "
        )
    } else {
        String::new()
    };
    let sql = format!(
        "WITH {idempotency}\
         cred AS ({INSERT_CREDENTIAL} RETURNING 1), \
         audit AS (INSERT INTO audit_log (tenant_id, at, actor, action, credential_id, request_id, \
                   user_id, source, outcome) VALUES ($1, $21, $22, $23, $2, $24, $16, $26, $27) \
                   RETURNING 1), \
         usr AS ({UPSERT_END_USER} VALUES ($1, $16, $20, $18, $18, $25) {ON_END_USER_CONFLICT}) \
         SELECT email FROM usr"
    );
    let mut query = bind_meta(sqlx::query(&sql), m)
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
        .bind(a.outcome);
    if let Some(r) = &job.idempotency {
        query = query
            .bind(&r.tenant_id)
            .bind(&r.request_id)
            .bind(&r.fingerprint)
            .bind(i64::from(r.key_version))
            .bind(&r.credential_id)
            .bind(r.created_at);
    }
    let row = query.fetch_one(write).await.map_err(conflict_or)?;
    Ok(row.try_get("email")?)
}
