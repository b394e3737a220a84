//! Reader connections, kept in a plain list.
//!
//! sqlx's `Pool` returns each connection through a task it spawns, which pings the
//! connection (on SQLite a round trip to the connection's worker thread, on
//! PostgreSQL one to the server) before putting it back: two thread hand-offs and a
//! task for every query, whatever the query. The ping exists to catch a connection
//! that died or was left mid-transaction. Readers run single statements, never a
//! transaction, and the list catches a dead connection by other means:
//! - every query's result passes through the reader ([`Executor`] for `&mut
//!   Reader`), and a connection whose query failed as only a broken connection
//!   fails (I/O, TLS, protocol, or the server ending the session) is closed instead
//!   of going back on the list;
//! - where a connection can die while idle (PostgreSQL, a network away), one idle
//!   longer than the engine's `PING_IDLE_READERS_AFTER` is pinged before it is
//!   handed out (HikariCP's "alive bypass window"), and replaced if that fails.
//!
//! A query abandoned midway (the caller cancelled) needs no clean-up: sqlx finishes
//! reading its answer before the connection's next statement.
//!
//! One point read through this list instead of a `Pool`: about 1.4× the reads per
//! second on SQLite at 64 in flight, and about 1.3× the reveals on PostgreSQL
//! (docs/benchmarks.md, "Issue 13").
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, TryStreamExt};
use sqlx::{ConnectOptions, Connection as _, Database, Describe, Either, Execute, Executor};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::engine::{Connection, Db, PING_IDLE_READERS_AFTER, READER_SETUP};

type Options = <Connection as sqlx::Connection>::Options;

/// How long a caller waits for a connection (a free one, a new one, or an idle one's
/// ping) before the read fails with [`sqlx::Error::PoolTimedOut`]; the writers' pool
/// waits as long.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Up to `max` reader connections, opened as they are first needed.
pub struct Readers {
    options: Options,
    /// One permit per connection that may be in use: a caller beyond `max` waits
    /// (in arrival order) for one to come back.
    permits: Semaphore,
    max: u32,
    /// Connections not in use, and since when.
    idle: Mutex<Vec<(Connection, Instant)>>,
}

/// A reader in use; back on the list when dropped, unless a query on it showed the
/// connection broken. Queries run on `&mut Reader`.
pub struct Reader<'a> {
    conn: Option<Connection>,
    broken: bool,
    readers: &'a Readers,
    _permit: SemaphorePermit<'a>,
}

impl Readers {
    /// Opens the first reader (so that a bad address fails at start, not at the first
    /// query); the rest open when needed.
    pub async fn open(options: Options, max: u32) -> Result<Self, sqlx::Error> {
        let max = max.max(1);
        let readers = Self {
            options,
            permits: Semaphore::new(max as usize),
            max,
            idle: Mutex::new(Vec::with_capacity(max as usize)),
        };
        let first = readers.connect().await?;
        readers.idle().push((first, Instant::now()));
        Ok(readers)
    }

    /// A reader: an idle one (pinged first if it idled long), or a new one while
    /// fewer than `max` are open; within [`ACQUIRE_TIMEOUT`].
    pub async fn acquire(&self) -> Result<Reader<'_>, sqlx::Error> {
        tokio::time::timeout(ACQUIRE_TIMEOUT, self.acquire_untimed())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn acquire_untimed(&self) -> Result<Reader<'_>, sqlx::Error> {
        // `permits` is never closed; if it were, this is what sqlx says of a pool.
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let conn = match self.idle_connection().await {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        Ok(Reader {
            conn: Some(conn),
            broken: false,
            readers: self,
            _permit: permit,
        })
    }

    /// The most recently used idle connection that is still alive, if any.
    async fn idle_connection(&self) -> Option<Connection> {
        loop {
            let (mut conn, since) = self.idle().pop()?;
            let fresh = PING_IDLE_READERS_AFTER.is_none_or(|after| since.elapsed() < after);
            if fresh || conn.ping().await.is_ok() {
                return Some(conn);
            }
            tracing::debug!("an idle reader connection failed its ping; replacing it");
            // Dropped without a goodbye: it is dead.
        }
    }

    /// Connections open, in use or idle.
    pub fn size(&self) -> u32 {
        let in_use = self.max as usize - self.permits.available_permits();
        u32::try_from(in_use + self.num_idle()).unwrap_or(u32::MAX)
    }

    /// Connections open and not in use.
    pub fn num_idle(&self) -> usize {
        self.idle().len()
    }

    async fn connect(&self) -> Result<Connection, sqlx::Error> {
        let mut conn = self.options.connect().await?;
        if !READER_SETUP.is_empty() {
            conn.execute(READER_SETUP).await?;
        }
        Ok(conn)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(Connection, Instant)>> {
        // The list is only pushed and popped: a panic elsewhere cannot leave it torn.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `error` means the connection it came from is unusable: the transport
/// failed, the protocol was broken, or the server ended the session (SQLSTATE class
/// 08, connection exception, and 57P, operator intervention such as a shutdown).
fn breaks_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

impl Reader<'_> {
    fn parts(&mut self) -> (&mut Connection, &mut bool) {
        let conn = self
            .conn
            .as_mut()
            .expect("a reader holds its connection until dropped");
        (conn, &mut self.broken)
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        match self.conn.take() {
            Some(conn) if !self.broken => self.readers.idle().push((conn, Instant::now())),
            // A broken connection is dropped; its permit lets the next caller open a
            // new one.
            _ => {}
        }
    }
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

type Step = Either<<Db as Database>::QueryResult, <Db as Database>::Row>;

/// The connection's own executor, with every failure checked by [`breaks_connection`].
impl<'c> Executor<'c> for &'c mut Reader<'_> {
    type Database = Db;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Db>,
    {
        let (conn, broken) = self.parts();
        Box::pin(conn.fetch_many(query).inspect_err(move |e| {
            *broken |= breaks_connection(e);
        }))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<<Db as Database>::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Db>,
    {
        let (conn, broken) = self.parts();
        conn.fetch_optional(query)
            .inspect(move |r| {
                if let Err(e) = r {
                    *broken |= breaks_connection(e);
                }
            })
            .boxed()
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [<Db as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Db as Database>::Statement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.parts().0.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Db>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.parts().0.describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use futures::FutureExt;
    use sqlx::Row;

    use super::super::engine::BACKEND;
    use super::*;
    use crate::store::Backend;

    /// Readers on a new SQLite database; `None` in the PostgreSQL copy of the store,
    /// whose readers the API tests exercise (`tests/api/drills.rs`).
    async fn readers(max: u32) -> Option<(tempfile::TempDir, Readers)> {
        if BACKEND != Backend::Sqlite {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        let options = Options::from_str(&url).unwrap();
        Some((dir, Readers::open(options, max).await.unwrap()))
    }

    /// At most `max` connections are open; a caller beyond them waits until one
    /// comes back, and gets that one rather than a new one.
    #[tokio::test]
    async fn readers_are_reused_and_never_more_than_max() {
        let Some((_dir, readers)) = readers(2).await else {
            return;
        };
        let a = readers.acquire().await.unwrap();
        let b = readers.acquire().await.unwrap();
        assert_eq!((readers.size(), readers.num_idle()), (2, 0));
        let mut third = Box::pin(readers.acquire());
        assert!(
            (&mut third).now_or_never().is_none(),
            "a third reader opened"
        );
        drop(a);
        let c = third.now_or_never().expect("the returned reader").unwrap();
        assert_eq!(readers.size(), 2);
        drop((b, c));
        assert_eq!((readers.size(), readers.num_idle()), (2, 2));
    }

    /// A read abandoned midway (its caller cancelled) leaves its connection fit for
    /// the next caller, who gets its own statement's rows, not the abandoned ones.
    #[tokio::test]
    async fn a_read_abandoned_midway_leaves_its_reader_usable() {
        let Some((_dir, readers)) = readers(1).await else {
            return;
        };
        const MANY: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                            WHERE i < 100000) SELECT i FROM n";
        {
            let mut conn = readers.acquire().await.unwrap();
            let mut rows = sqlx::query(MANY).fetch(&mut conn);
            let first = futures::StreamExt::next(&mut rows).await.unwrap().unwrap();
            assert_eq!(first.get::<i64, _>(0), 1);
        }
        let mut conn = readers.acquire().await.unwrap();
        let got: i64 = sqlx::query_scalar("SELECT 42")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(got, 42);
        assert_eq!(readers.size(), 1);
    }
}
