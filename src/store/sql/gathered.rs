//! Reveals' reads gathered into one statement while the database is busy.
//!
//! A point read costs PostgreSQL far more for the statement than for the row: the
//! messages, a snapshot, the executor's start and end, a wake-up on each side. At 64
//! reveals in flight that work is most of the database's. So the reads of sealed
//! credentials wait their turn here rather than at the readers: at most
//! [`AT_ONCE`] statements run, and whoever starts the next one takes every read that
//! is waiting by then, one statement per tenant (`c.id` in a JSON list). A read that
//! finds a turn free is alone in its statement and waits for nothing new; the busier
//! the database, the more reads share one.
//!
//! A read here is answered, or told to read for itself ([`Gathered::get`] gives
//! `None`): when the statement failed (its caller then gets its own error from its
//! own read), when its row did not decode, or when the caller that took it was
//! cancelled midway. So nothing is lost by gathering, and the answer a caller gets is
//! what its own read would have given.
//!
//! A leaf: it knows the readers and the credential's row, not the store.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use tokio::sync::{Semaphore, oneshot};

use super::readers::Readers;
use super::rows;
use super::statements::DIALECT;
use crate::model::SealedCredential;
use crate::store::StoreResult;
use crate::store::credential_row::{CREDENTIAL_COLUMNS, CREDENTIALS_OF_TENANT};

/// Gathered statements running at once. Fewer turns than readers is what makes
/// reads gather: with two cores and the database on them, two statements at a time
/// keep it busy (docs/benchmarks.md, "Issue 13").
pub const AT_ONCE: usize = 2;

/// Ids in one statement at most; more waiting take more statements.
const MOST_IDS: usize = 100;

/// A read waiting for its turn: which row, and where its answer goes.
struct Wanted {
    tenant: String,
    id: String,
    answer: oneshot::Sender<Option<SealedCredential>>,
}

/// Reads waiting, and the turns to run them.
pub struct Gathered {
    waiting: Mutex<Vec<Wanted>>,
    turns: Semaphore,
    /// Reads answered by a statement that answered others too, since the start.
    shared: AtomicU64,
}

impl Default for Gathered {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            turns: Semaphore::new(AT_ONCE),
            shared: AtomicU64::new(0),
        }
    }
}

impl Gathered {
    /// Tenant `tenant`'s credential `id` with its sealed secret, read on `readers`
    /// with whatever else is waiting: `Some(None)` if there is none, `None` if this
    /// read was not answered and the caller should make it itself.
    pub async fn get(
        &self,
        readers: &Readers,
        tenant: &str,
        id: &str,
    ) -> Option<Option<SealedCredential>> {
        let (answer, mut answered) = oneshot::channel();
        self.waiting().push(Wanted {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
            answer,
        });
        tokio::select! {
            biased;
            got = &mut answered => return got.ok(),
            turn = self.turns.acquire() => {
                // `turns` is never closed.
                let _turn = turn.ok()?;
                let taken = std::mem::take(&mut *self.waiting());
                if !taken.is_empty() {
                    let shared = read_all(readers, taken).await;
                    self.shared.fetch_add(shared, Ordering::Relaxed);
                }
            }
        }
        // Answered by this turn, or by one already running when it began.
        answered.await.ok()
    }

    /// Reads answered by a statement that answered others too, since the start.
    pub fn shared(&self) -> u64 {
        self.shared.load(Ordering::Relaxed)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Wanted>> {
        // Only pushed and taken whole: a panic elsewhere cannot leave it torn.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Answers every read of `taken` whose statement worked; the rest are dropped
/// unanswered, and read for themselves. Returns how many were answered by a statement
/// with others.
async fn read_all(readers: &Readers, taken: Vec<Wanted>) -> u64 {
    let mut by_tenant: HashMap<String, Vec<Wanted>> = HashMap::new();
    for wanted in taken {
        by_tenant
            .entry(wanted.tenant.clone())
            .or_default()
            .push(wanted);
    }
    let mut shared = 0;
    for (tenant, wanted) in by_tenant {
        let mut wanted = wanted.into_iter().peekable();
        while wanted.peek().is_some() {
            let chunk: Vec<Wanted> = wanted.by_ref().take(MOST_IDS).collect();
            let reads = chunk.len() as u64;
            if read_chunk(readers, &tenant, chunk).await && reads > 1 {
                shared += reads;
            }
        }
    }
    shared
}

/// One statement for `chunk`, all of tenant `tenant` (a point read for one), and
/// whether it answered them. If any row fails to decode, none is answered: each
/// reads again, and the one whose row is bad gets the error.
async fn read_chunk(readers: &Readers, tenant: &str, chunk: Vec<Wanted>) -> bool {
    let (statement, ids) = match chunk.as_slice() {
        [one] => (&*SEALED_BY_ID, one.id.clone()),
        _ => {
            let ids: Vec<&str> = chunk.iter().map(|w| w.id.as_str()).collect();
            (&*SEALED_BY_IDS, rows::json_text(&ids))
        }
    };
    let found = match fetch(readers, statement, tenant, ids).await {
        Ok(found) => found,
        Err(e) => {
            let reads = chunk.len();
            tracing::debug!(error = %e, reads, "a gathered read failed; each reads for itself");
            return false;
        }
    };
    let by_id: HashMap<&str, &SealedCredential> =
        found.iter().map(|s| (s.meta.id.as_str(), s)).collect();
    for wanted in chunk {
        let row = by_id.get(wanted.id.as_str()).map(|s| (*s).clone());
        // A caller that stopped waiting needs no answer.
        let _ = wanted.answer.send(row);
    }
    true
}

/// The sealed credentials `statement` selects for tenant `tenant` and `ids`.
async fn fetch(
    readers: &Readers,
    statement: &str,
    tenant: &str,
    ids: String,
) -> StoreResult<Vec<SealedCredential>> {
    let query = sqlx::query(statement).bind(tenant).bind(ids);
    let found = query.fetch_all(&mut readers.acquire().await?).await?;
    found.iter().map(rows::sealed_credential).collect()
}

/// Tenant `$1`'s credential `$2`, with its sealed secret: the store's own read, and
/// a turn's when it has one read.
pub static SEALED_BY_ID: LazyLock<String> = LazyLock::new(|| sealed_where("c.id = $2"));

/// Tenant `$1`'s credentials whose ids are in the JSON list `$2`, with their sealed
/// secrets.
static SEALED_BY_IDS: LazyLock<String> = LazyLock::new(|| sealed_where(DIALECT.id_in_json));

/// Credentials with their sealed secrets, of tenant `$1` and meeting `condition`.
fn sealed_where(condition: &str) -> String {
    format!("SELECT {CREDENTIAL_COLUMNS}, c.secret {CREDENTIALS_OF_TENANT} AND {condition}")
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::str::FromStr;

    use futures::FutureExt;

    use super::super::engine::BACKEND;
    use super::*;
    use crate::model::{AuditEntry, CredentialMeta, Kind, Status, Tenant};
    use crate::store::{Backend, Store};

    type Options = <super::super::engine::Connection as sqlx::Connection>::Options;

    fn sealed(tenant: &str, id: &str) -> SealedCredential {
        SealedCredential {
            meta: CredentialMeta {
                tenant_id: tenant.into(),
                id: id.into(),
                user_id: "u1".into(),
                user_email: None,
                name: format!("{id} \"quoted\" é"),
                provider: "stripe".into(),
                kind: Kind::ApiKey,
                status: Status::Active,
                labels: Default::default(),
                scopes: vec![],
                expires_at: None,
                token_expires_at: None,
                version: 1,
                created_at: 1,
                updated_at: 1,
                refresh: Default::default(),
                expiry_warned_ms: None,
            },
            blob: id.as_bytes().to_vec(),
        }
    }

    /// A SQLite database holding `cred_1` and `cred_2` of tenant `ten_1` and `cred_3`
    /// of `ten_2`, and `readers` reader connections on it; `None` in the PostgreSQL
    /// copy of the store, whose gathered reads the storage tests exercise
    /// (`tests/api/group_commit.rs`).
    async fn seeded(readers: u32) -> Option<(tempfile::TempDir, Readers)> {
        if BACKEND != Backend::Sqlite {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("g.db").display());
        let store = crate::store::sqlite::connect(&url, 1).await.unwrap();
        for (tenant, ids) in [("ten_1", &["cred_1", "cred_2"][..]), ("ten_2", &["cred_3"])] {
            let row = Tenant {
                id: tenant.into(),
                name: tenant.into(),
                created_at: 1,
            };
            store.insert_tenant(&row).await.unwrap();
            for id in ids {
                let audit = AuditEntry {
                    tenant_id: tenant.into(),
                    at: 1,
                    actor: "tok_1".into(),
                    action: "create",
                    credential_id: (*id).into(),
                    user_id: "u1".into(),
                    request_id: String::new(),
                    source: String::new(),
                    outcome: "ok",
                    detail: String::new(),
                };
                let credential = sealed(tenant, id);
                store
                    .insert_credential(&credential, None, &audit)
                    .await
                    .unwrap();
            }
        }
        let readers = Readers::open(Options::from_str(&url).unwrap(), readers);
        Some((dir, readers.await.unwrap()))
    }

    fn found(read: Option<Option<SealedCredential>>) -> Option<(String, String, Vec<u8>)> {
        let read = read.expect("answered");
        read.map(|s| (s.meta.tenant_id, s.meta.id, s.blob))
    }

    fn row(tenant: &str, id: &str) -> Option<(String, String, Vec<u8>)> {
        Some((tenant.into(), id.into(), id.as_bytes().to_vec()))
    }

    /// Reads that wait while every turn is taken are all answered by the next turn:
    /// when the first of them has its answer, so have the rest, each its own row
    /// (none for an id that is not there, or is another tenant's).
    #[tokio::test]
    async fn reads_waiting_for_a_turn_share_the_next_statement() {
        let Some((_dir, readers)) = seeded(1).await else {
            return;
        };
        let gathered = Gathered::default();
        let turns = gathered.turns.acquire_many(AT_ONCE as u32).await.unwrap();
        let wanted = [
            ("ten_1", "cred_1"),
            ("ten_1", "cred_2"),
            ("ten_1", "cred_1"),
            ("ten_2", "cred_3"),
            ("ten_1", "cred_3"),
            ("ten_1", "cred_9"),
        ];
        let mut reads: Vec<_> = wanted
            .iter()
            .map(|(t, id)| Box::pin(gathered.get(&readers, t, id)))
            .collect();
        for read in &mut reads {
            assert!(
                read.as_mut().now_or_never().is_none(),
                "read without a turn"
            );
        }
        assert_eq!(gathered.waiting().len(), wanted.len());
        drop(turns);
        let mut rest = reads.split_off(1);
        let first = reads.pop().unwrap().await;
        assert_eq!(found(first), row("ten_1", "cred_1"));
        let rest: Vec<_> = rest
            .iter_mut()
            .map(|read| {
                read.as_mut()
                    .now_or_never()
                    .expect("answered with the first")
            })
            .map(found)
            .collect();
        let expected = [
            row("ten_1", "cred_2"),
            row("ten_1", "cred_1"),
            row("ten_2", "cred_3"),
            None,
            None,
        ];
        assert_eq!(rest, expected);
        assert_eq!(gathered.turns.available_permits(), AT_ONCE);
    }

    /// A read whose turn was taken by a caller that then gave up is not lost: it is
    /// told to read for itself, at once. So is every read of a statement that failed.
    #[tokio::test]
    async fn reads_not_answered_are_told_to_read_for_themselves() {
        let Some((_dir, readers)) = seeded(1).await else {
            return;
        };
        let gathered = Gathered::default();
        let turns = gathered.turns.acquire_many(AT_ONCE as u32).await.unwrap();
        let mut taker = Box::pin(gathered.get(&readers, "ten_1", "cred_1"));
        let mut other = pin!(gathered.get(&readers, "ten_1", "cred_2"));
        assert!(taker.as_mut().now_or_never().is_none());
        assert!(other.as_mut().now_or_never().is_none());
        // The one reader is held: the taker takes both reads, then waits for it.
        let held = readers.acquire().await.unwrap();
        drop(turns);
        assert!(taker.as_mut().now_or_never().is_none());
        assert!(gathered.waiting().is_empty(), "the taker took both");
        drop(taker);
        let told = other.as_mut().now_or_never().expect("told at once");
        assert!(told.is_none(), "answered by a read that never ran");
        drop(held);

        // A statement that fails (no such table on this connection's database).
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("empty.db").display()
        );
        let empty = Readers::open(Options::from_str(&url).unwrap(), 1)
            .await
            .unwrap();
        assert!(gathered.get(&empty, "ten_1", "cred_1").await.is_none());
        let answered = gathered.get(&readers, "ten_1", "cred_1").await;
        assert_eq!(found(answered), row("ten_1", "cred_1"));
    }
}
