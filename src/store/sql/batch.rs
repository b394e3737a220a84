//! Durable writes at volume.
//!
//! Writes that arrive together are group-committed: whatever queued while the
//! previous commit was being made durable goes into the next one. A caller hears back
//! only after the commit that holds its job.
//!
//! - Audit records (one per reveal) go in with one statement for the whole batch, on
//!   both backends: they cannot conflict with anything, so they need no savepoints.
//! - On SQLite (one writer, each commit an fsync) creates and logins share the
//!   batch's one transaction, each inside a savepoint of its own (a create whose
//!   `request_id` is taken rolls back alone); a create's statements and its
//!   savepoint go to SQLite's worker thread as one command. The audit records of the
//!   batch's reveals and of the creates and logins that went in then follow, each at
//!   its place in its chain (`audit_writes.rs`): a create that rolled back takes no
//!   place. The writer keeps the chains' heads it last wrote, so a batch of audit
//!   records alone is one autocommit statement, as it would be unchained.
//! - On PostgreSQL the creates of a batch are one statement ([`creates`]), beside the
//!   audit records' statement and each login's transaction, on connections of their
//!   own: what a create costs there is PostgreSQL's work per statement and per
//!   commit, which the batch then pays once. A batch of audit records alone is one
//!   autocommit statement.
use futures::future::join_all;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, Pool};
use tokio::sync::{mpsc, oneshot};

use super::audit_writes::{Heads, append_audit, begin_with_heads, write_chained};
use super::creates::{
    CreateJob, create_in_one_statement, create_in_savepoint, creates_in_one_statement,
};
use super::engine::{Connection, Db};
use super::statements::{DIALECT, conflict_or, insert_audits_query, insert_event_query};
use crate::model::{AuditEntry, Event};
use crate::store::{StoreError, StoreResult};

/// Jobs committed together at most.
const WRITE_BATCH: usize = 256;

/// A write waiting for the next group commit.
pub(super) enum WriteJob {
    Audit(AuditEntry),
    Create(Box<CreateJob>),
    Login(Box<LoginJob>),
}

impl WriteJob {
    /// The audit record the job leaves once it went in.
    fn audit(&self) -> &AuditEntry {
        match self {
            Self::Audit(audit) => audit,
            Self::Create(create) => &create.audit,
            Self::Login(login) => &login.audit,
        }
    }
}

/// The record of one login attempt: its audit record and event and, after a
/// success, the subject whose failures are forgotten.
pub(super) struct LoginJob {
    pub audit: AuditEntry,
    pub event: Event,
    pub forget: Option<String>,
}

/// The rows of a login record other than its audit record, in the transaction
/// `conn` (batched or not).
async fn insert_login_rows(conn: &mut Connection, job: &LoginJob) -> Result<(), sqlx::Error> {
    insert_event_query(&job.event).execute(&mut *conn).await?;
    if let Some(subject) = &job.forget {
        sqlx::query("DELETE FROM auth_failures WHERE tenant_id = $1 AND subject = $2")
            .bind(&job.audit.tenant_id)
            .bind(subject)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
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
    // The audit chains' heads as the last commit left them (SQLite).
    let mut known = Heads::default();
    while jobs.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        match commit_batch(&write, &batch, &mut known).await {
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

/// Commits `batch`: in one transaction on SQLite ([`DIALECT`]`.one_writer`); on
/// PostgreSQL, one autocommit statement when it holds nothing but audit records,
/// otherwise its kinds of job side by side.
async fn commit_batch(
    write: &Pool<Db>,
    batch: &[Queued],
    known: &mut Heads,
) -> Result<Vec<JobResult>, sqlx::Error> {
    if DIALECT.one_writer {
        return commit_in_one_transaction(write, batch, known).await;
    }
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
    Ok(commit_side_by_side(write, batch, &audits).await)
}

/// SQLite: one transaction, each job other than an audit record in a savepoint of
/// its own, then the audit records of every job that went in, at their places in
/// their chains. The transaction is begun by hand and committed with the records.
/// Where the last commit left every head the batch needs (`known`), a batch of
/// audit records alone is one autocommit statement, as it would be unchained;
/// otherwise the heads are read with the `BEGIN`. A place that another transaction
/// took meanwhile fails the first try (a unique key), and the batch is tried again
/// reading the heads.
async fn commit_in_one_transaction(
    write: &Pool<Db>,
    batch: &[Queued],
    known: &mut Heads,
) -> Result<Vec<JobResult>, sqlx::Error> {
    let mut conn = write.acquire().await?;
    // Not cancelled midway: the writer's task runs until the store goes. (Were it,
    // the next batch's `BEGIN` would fail, and its ROLLBACK end the orphan.)
    let only_audits = batch
        .iter()
        .all(|(job, _)| matches!(job, WriteJob::Audit(_)));
    let mut first = None;
    if let Some(heads) = known.of(tenants(batch)) {
        match commit_on(&mut conn, batch, Some(heads), only_audits).await {
            Ok(done) => first = Some(done),
            Err(e) => {
                tracing::debug!(error = %e, "a group commit is tried again, reading the audit chains' heads");
                if !only_audits {
                    roll_back(&mut conn).await;
                }
            }
        }
    }
    let outcome = match first {
        Some(done) => Ok(done),
        None => commit_on(&mut conn, batch, None, only_audits).await,
    };
    match outcome {
        Ok((results, heads)) => {
            known.update(heads);
            Ok(results)
        }
        Err(e) => {
            roll_back(&mut conn).await;
            *known = Heads::default();
            Err(e)
        }
    }
}

/// The tenants whose audit chains the jobs of `batch` extend (with repeats).
fn tenants(batch: &[Queued]) -> impl Iterator<Item = &str> {
    batch.iter().map(|(job, _)| job.audit().tenant_id.as_str())
}

/// Ends a failed transaction; a connection whose transaction may still be open is
/// not used again.
async fn roll_back(conn: &mut PoolConnection<Db>) {
    if conn.execute("ROLLBACK").await.is_err() {
        conn.close_on_drop();
    }
}

/// The batch, with the heads `known` (none: read them): one autocommit statement
/// for audit records alone whose heads are known, else one transaction. Its
/// results and the heads after.
async fn commit_on(
    conn: &mut Connection,
    batch: &[Queued],
    known: Option<Heads>,
    only_audits: bool,
) -> Result<(Vec<JobResult>, Heads), sqlx::Error> {
    let (heads, begun) = match known {
        Some(heads) if only_audits => (heads, false),
        Some(heads) => {
            conn.execute("BEGIN IMMEDIATE").await?;
            (heads, true)
        }
        None => (begin_with_heads(conn, tenants(batch)).await?, true),
    };
    let mut results = Vec::with_capacity(batch.len());
    let mut audits = Vec::with_capacity(batch.len());
    for (job, _) in batch {
        let result = commit_job(conn, job).await?;
        if let JobResult::Done(_) = result {
            audits.push(job.audit());
        }
        results.push(result);
    }
    let heads = write_chained(conn, &audits, heads, begun).await?;
    Ok((results, heads))
}

/// PostgreSQL: the audit records, the creates and each login committed on a
/// connection of their own, at the same time; each job hears how its own write went.
async fn commit_side_by_side(
    write: &Pool<Db>,
    batch: &[Queued],
    audits: &[&AuditEntry],
) -> Vec<JobResult> {
    let creates: Vec<&CreateJob> = batch
        .iter()
        .filter_map(|(job, _)| match job {
            WriteJob::Create(create) => Some(&**create),
            _ => None,
        })
        .collect();
    let logins = batch.iter().filter_map(|(job, _)| match job {
        WriteJob::Login(login) => Some(commit_login_alone(write, login)),
        _ => None,
    });
    let write_audits = async {
        if !audits.is_empty() {
            insert_audits_query(audits)?.execute(write).await?;
        }
        Ok::<_, sqlx::Error>(())
    };
    let (audited, created, logged) = tokio::join!(
        write_audits,
        commit_creates(write, &creates),
        join_all(logins)
    );
    let audited = job_result(audited.map(|()| None).map_err(StoreError::from));
    let mut created = created.into_iter();
    let mut logged = logged.into_iter().map(|l| job_result(l.map(|()| None)));
    let missing = || JobResult::Failed("the group commit lost track of a job".into());
    batch
        .iter()
        .map(|(job, _)| match job {
            WriteJob::Audit(_) => audited.clone(),
            WriteJob::Create(_) => created.next().unwrap_or_else(missing),
            WriteJob::Login(_) => logged.next().unwrap_or_else(missing),
        })
        .collect()
}

/// PostgreSQL: `creates` with one statement. If a unique key other than an
/// idempotency key stops it (an email that another user took meanwhile), nothing of
/// it was written, and each create is tried alone so that only the one that
/// conflicts fails. A lone create is one statement of its own.
async fn commit_creates(write: &Pool<Db>, creates: &[&CreateJob]) -> Vec<JobResult> {
    let each_alone = || async {
        let tries = creates.iter().map(|c| create_in_one_statement(write, c));
        join_all(tries).await.into_iter().map(job_result).collect()
    };
    match creates {
        [] => Vec::new(),
        [_] => each_alone().await,
        _ => match creates_in_one_statement(write, creates).await {
            Ok(outcomes) => outcomes.into_iter().map(job_result).collect(),
            Err(e) => match conflict_or(e) {
                StoreError::Conflict => each_alone().await,
                other => vec![job_result(Err(other)); creates.len()],
            },
        },
    }
}

/// A job's outcome as its caller hears it; a failure other than a conflict is
/// logged here, once.
fn job_result(outcome: StoreResult<Option<String>>) -> JobResult {
    match outcome {
        Ok(email) => JobResult::Done(email),
        Err(StoreError::Conflict) => JobResult::Conflict,
        Err(other) => {
            tracing::error!(error = %other, "a batched write failed");
            JobResult::Failed(other.to_string())
        }
    }
}

/// One job of a batch in a savepoint of its own, so that its failure rolls back
/// alone (audit records follow, with the batch's one command).
async fn commit_job(conn: &mut Connection, job: &WriteJob) -> Result<JobResult, sqlx::Error> {
    let outcome = match job {
        WriteJob::Audit(_) => return Ok(JobResult::Done(None)),
        // The savepoint is part of the create's one command.
        WriteJob::Create(create) => create_in_savepoint(conn, create).await,
        WriteJob::Login(login) => login_in_savepoint(conn, login).await,
    };
    if outcome.is_err() {
        conn.execute("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")
            .await?;
    }
    Ok(job_result(outcome.map_err(conflict_or)))
}

/// A login's record in a transaction of its own.
async fn commit_login_alone(write: &Pool<Db>, job: &LoginJob) -> StoreResult<()> {
    let mut tx = write.begin().await?;
    append_audit(&mut tx, &job.audit).await?;
    insert_login_rows(&mut tx, job).await?;
    tx.commit().await?;
    Ok(())
}

async fn login_in_savepoint(
    conn: &mut Connection,
    login: &LoginJob,
) -> Result<Option<String>, sqlx::Error> {
    conn.execute("SAVEPOINT job").await?;
    insert_login_rows(conn, login).await?;
    conn.execute("RELEASE SAVEPOINT job").await?;
    Ok(None)
}
