//! SQLite's reader connections, kept in a plain list.
//!
//! sqlx's `Pool` returns each connection through a task it spawns, which pings the
//! connection (a round trip to the connection's worker thread) before putting it
//! back: two thread hand-offs and a task for every query, whatever the query. The
//! ping exists to catch a connection that died or was left mid-transaction. Neither
//! applies here: a reader is a handle on a file in this process, and readers run
//! single statements, never a transaction. So a reader goes straight back onto the
//! list when its guard drops. A query abandoned midway (the caller cancelled) needs
//! no clean-up either: its connection's worker thread finishes or stops that
//! statement before it takes the next command.
//!
//! One point read through this list instead of a `Pool`: about 1.4× the reads per
//! second at 64 in flight (docs/benchmarks.md, "Issue 13").
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Executor};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Up to `max` reader connections, opened as they are first needed.
pub struct Readers {
    options: SqliteConnectOptions,
    /// Run on every new connection.
    pragmas: &'static str,
    /// One permit per connection that may be in use: a caller beyond `max` waits
    /// (in arrival order) for one to come back.
    permits: Semaphore,
    max: u32,
    /// Connections not in use.
    idle: Mutex<Vec<SqliteConnection>>,
}

/// A reader in use; back on the list when dropped.
pub struct Reader<'a> {
    conn: Option<SqliteConnection>,
    readers: &'a Readers,
    _permit: SemaphorePermit<'a>,
}

impl Readers {
    /// Opens the first reader (so that a bad path fails at start, not at the first
    /// query); the rest open when needed.
    pub async fn open(
        options: SqliteConnectOptions,
        pragmas: &'static str,
        max: u32,
    ) -> Result<Self, sqlx::Error> {
        let max = max.max(1);
        let readers = Self {
            options,
            pragmas,
            permits: Semaphore::new(max as usize),
            max,
            idle: Mutex::new(Vec::with_capacity(max as usize)),
        };
        let first = readers.connect().await?;
        readers.idle().push(first);
        Ok(readers)
    }

    /// A reader: an idle one, or a new one while fewer than `max` are open.
    pub async fn acquire(&self) -> Result<Reader<'_>, sqlx::Error> {
        // `permits` is never closed; if it were, this is what sqlx says of a pool.
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        Ok(Reader {
            conn: Some(conn),
            readers: self,
            _permit: permit,
        })
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

    async fn connect(&self) -> Result<SqliteConnection, sqlx::Error> {
        let mut conn = self.options.connect().await?;
        conn.execute(self.pragmas).await?;
        Ok(conn)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        // The list is only pushed and popped: a panic elsewhere cannot leave it torn.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.idle().push(conn);
        }
    }
}

impl Deref for Reader<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.conn
            .as_ref()
            .expect("a reader holds its connection until dropped")
    }
}

impl DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_mut()
            .expect("a reader holds its connection until dropped")
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use futures::FutureExt;
    use sqlx::Row;

    use super::*;

    async fn readers(max: u32) -> (tempfile::TempDir, Readers) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap();
        let readers = Readers::open(options, "PRAGMA journal_mode = WAL;", max)
            .await
            .unwrap();
        (dir, readers)
    }

    /// At most `max` connections are open; a caller beyond them waits until one
    /// comes back, and gets that one rather than a new one.
    #[tokio::test]
    async fn readers_are_reused_and_never_more_than_max() {
        let (_dir, readers) = readers(2).await;
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
        let (_dir, readers) = readers(1).await;
        const MANY: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                            WHERE i < 100000) SELECT i FROM n";
        {
            let mut conn = readers.acquire().await.unwrap();
            let mut rows = sqlx::query(MANY).fetch(&mut *conn);
            let first = futures::StreamExt::next(&mut rows).await.unwrap().unwrap();
            assert_eq!(first.get::<i64, _>(0), 1);
        }
        let mut conn = readers.acquire().await.unwrap();
        let got: i64 = sqlx::query_scalar("SELECT 42")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(got, 42);
        assert_eq!(readers.size(), 1);
    }
}
