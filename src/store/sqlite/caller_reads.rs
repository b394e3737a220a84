//! The reveal's read and short listings, made on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own: a query is a command sent
//! to that thread, which sleeps between commands, and its rows come back the same way.
//! On a small machine those two thread wake-ups cost more than the read: a point read
//! of a cached page takes a few microseconds, the hand-off tens (docs/benchmarks.md,
//! "Issue 13"). The reveal's read, and listings of up to a page, are made here
//! instead, with rusqlite on the thread that serves the call: the same SQLite library
//! (rusqlite links sqlx's `libsqlite3-sys`), the same file, the same statements and
//! the same decoder ([`crate::store::credential_row`]).
//!
//! Nothing here ever waits:
//! - each connection is used by one caller at a time, and a caller finding none free
//!   does not queue;
//! - `busy_timeout` is 0, so a read that would wait for a lock (rare in WAL mode: a
//!   reader meets a WAL index being rebuilt) fails at once;
//! - and any read that does not succeed here (no free connection, busy, an error, a
//!   row that does not decode) is answered `None`, and the caller makes it again on
//!   the readers, which wait as they always have and report errors as they always
//!   have. What blocks the calling thread is the read itself: microseconds when its
//!   pages are in the operating system's cache, a disk read when they are not.
//!
//! The connections only read (`query_only`) and see what a reader on the readers'
//! list would: each statement reads the last committed state of the database, and
//! its read ends when the statement is reset, as its rows are dropped.
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, Row};

use crate::store::credential_row::Columns;
use crate::store::{StoreError, StoreResult};

/// The most rows read here at once: a default page of credentials (50, and one to
/// see if there is more) and up to twice that. A longer read goes to the readers
/// rather than hold the calling thread while every row is decoded.
pub const MAX_ROWS: u32 = 101;

/// Set on each connection: only reads, never a wait for a lock, temporary data
/// in memory as on every other connection.
const SETUP: &str = "PRAGMA query_only = ON; PRAGMA busy_timeout = 0; PRAGMA temp_store = MEMORY;";

/// Up to one connection per thread that may read at once.
pub struct CallerReads {
    conns: Vec<Mutex<Connection>>,
}

impl CallerReads {
    /// `n` connections to the database file at `path` (which the writer made).
    pub fn open(path: &Path, n: usize) -> rusqlite::Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conns = (0..n)
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags)?;
                conn.execute_batch(SETUP)?;
                Ok(Mutex::new(conn))
            })
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self { conns })
    }

    /// No connections: every read goes to the readers.
    pub fn none() -> Self {
        Self { conns: Vec::new() }
    }

    /// The first `at_most` rows `sql` selects with the text parameters `params`
    /// (`$1` is the first), decoded; `None` if the read was not made here (see the
    /// module's text), and for more than [`MAX_ROWS`] rows.
    pub fn fetch<T>(
        &self,
        sql: &str,
        params: &[&str],
        at_most: u32,
        decode: fn(&dyn Columns) -> StoreResult<T>,
    ) -> Option<Vec<T>> {
        if at_most > MAX_ROWS {
            return None;
        }
        let conn = self.conns.iter().find_map(|c| c.try_lock().ok())?;
        match read(&conn, sql, params, decode, at_most as usize) {
            Ok(rows) => Some(rows),
            Err(e) => {
                tracing::debug!(error = %e, "a read on the calling thread goes to the readers");
                None
            }
        }
    }
}

/// Why a read was not made here. rusqlite's errors name columns and codes, never
/// the values read or bound.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The first `at_most` rows of `sql` with `params`, decoded.
fn read<T>(
    conn: &Connection,
    sql: &str,
    params: &[&str],
    decode: fn(&dyn Columns) -> StoreResult<T>,
    at_most: usize,
) -> Result<Vec<T>, Failure> {
    let mut statement = conn.prepare_cached(sql)?;
    for index in 1..=statement.parameter_count() {
        // `$n` names the n-th value, wherever it first appears in the text.
        let value = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok())
            .and_then(|n| params.get(n.checked_sub(1)?))
            .ok_or_else(|| format!("no value for the statement's parameter {index}"))?;
        statement.raw_bind_parameter(index, *value)?;
    }
    let mut rows = statement.raw_query();
    let mut decoded = Vec::new();
    while decoded.len() < at_most {
        let Some(row) = rows.next()? else { break };
        decoded.push(decode(&NamedColumns(row))?);
    }
    Ok(decoded)
}

/// A column that does not read as its type: the stored row is not what it should be.
fn corrupt(e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A rusqlite row's columns by name.
struct NamedColumns<'a, 'r>(&'a Row<'r>);

impl Columns for NamedColumns<'_, '_> {
    fn text(&self, name: &str) -> StoreResult<String> {
        self.0.get(name).map_err(corrupt)
    }
    fn text_or_null(&self, name: &str) -> StoreResult<Option<String>> {
        self.0.get(name).map_err(corrupt)
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        self.0.get(name).map_err(corrupt)
    }
    fn int_or_null(&self, name: &str) -> StoreResult<Option<i64>> {
        self.0.get(name).map_err(corrupt)
    }
    fn bytes(&self, name: &str) -> StoreResult<Vec<u8>> {
        self.0.get(name).map_err(corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tests' decoder reads: every kind of column a credential has.
    #[derive(Debug, PartialEq)]
    struct Thing {
        name: String,
        note: Option<String>,
        n: i64,
        gone: Option<i64>,
        blob: Vec<u8>,
    }

    fn thing(row: &dyn Columns) -> StoreResult<Thing> {
        Ok(Thing {
            name: row.text("name")?,
            note: row.text_or_null("note")?,
            n: row.int("n")?,
            gone: row.int_or_null("gone")?,
            blob: row.bytes("blob")?,
        })
    }

    const READ: &str = "SELECT name, note, n, gone, blob FROM things WHERE id = $2 AND tenant = $1";

    /// A database file with two rows, and `n` connections to it.
    fn reads(n: usize) -> (tempfile::TempDir, CallerReads) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("things.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE things (tenant TEXT, id TEXT, name TEXT, note TEXT, n INTEGER,
                                  gone INTEGER, blob BLOB);
             INSERT INTO things VALUES ('t1', 'a', 'first', 'x', 7, NULL, x'00ff');
             INSERT INTO things VALUES ('t2', 'a', 'other', NULL, 8, 9, x'');",
        )
        .unwrap();
        (dir, CallerReads::open(&path, n).unwrap())
    }

    #[test]
    fn a_row_is_read_and_decoded_with_each_value_at_its_numbered_parameter() {
        let (_dir, reads) = reads(1);
        let first = Thing {
            name: "first".into(),
            note: Some("x".into()),
            n: 7,
            gone: None,
            blob: vec![0, 255],
        };
        assert_eq!(reads.fetch(READ, &["t1", "a"], 1, thing), Some(vec![first]));
        let other = reads.fetch(READ, &["t2", "a"], 1, thing).unwrap();
        assert_eq!(other[0].gone, Some(9));
        assert_eq!(reads.fetch(READ, &["t3", "a"], 1, thing), Some(vec![]));
    }

    #[test]
    fn a_read_not_made_here_is_none_for_the_readers_to_make() {
        let (_dir, reads) = reads(2);
        // Every connection in use: no waiting for one.
        let held: Vec<_> = reads.conns.iter().map(|c| c.lock().unwrap()).collect();
        assert_eq!(reads.fetch(READ, &["t1", "a"], 1, thing), None);
        drop(held);
        assert!(reads.fetch(READ, &["t1", "a"], 1, thing).is_some());
        // A statement that fails, a parameter without a value, a row that does not
        // decode (`note` is NULL in t2's row, which this decoder does not allow).
        let missing = "SELECT name FROM nothing WHERE id = $1";
        assert_eq!(reads.fetch(missing, &["a"], 1, thing), None);
        assert_eq!(reads.fetch(READ, &["t1"], 1, thing), None);
        let strict = |row: &dyn Columns| row.text("note");
        assert_eq!(reads.fetch(READ, &["t2", "a"], 1, strict), None);
        // No connections at all.
        assert_eq!(
            CallerReads::none().fetch(READ, &["t1", "a"], 1, thing),
            None
        );
    }

    #[test]
    fn a_listing_is_every_row_in_order() {
        let (_dir, reads) = reads(1);
        let all = "SELECT name, note, n, gone, blob FROM things WHERE id = $1 ORDER BY n";
        let names = |row: &dyn Columns| row.text("name");
        let listed = reads.fetch(all, &["a"], 9, names);
        assert_eq!(listed, Some(vec!["first".to_owned(), "other".to_owned()]));
        assert_eq!(
            reads.fetch(all, &["a"], 1, names),
            Some(vec!["first".to_owned()])
        );
        assert_eq!(reads.fetch(all, &["b"], 9, names), Some(vec![]));
        // Longer than MAX_ROWS: left to the readers, whatever it would return.
        assert_eq!(reads.fetch(all, &["a"], MAX_ROWS + 1, names), None);
        // One row that does not decode (t2's `note` is NULL): the whole listing goes
        // to the readers.
        let notes = |row: &dyn Columns| row.text("note");
        assert_eq!(reads.fetch(all, &["a"], 9, notes), None);
    }

    /// A read stopped after its first row still ends its snapshot, so checkpoints
    /// can reset the WAL; a statement left open on the same connection would not.
    #[test]
    fn a_read_leaves_no_snapshot_open() {
        let (dir, reads) = reads(1);
        let all = "SELECT name, note, n, gone, blob FROM things WHERE id = $1";
        let names = |row: &dyn Columns| row.text("name");
        assert_eq!(reads.fetch(all, &["a"], 1, names).unwrap().len(), 1);
        let writer = Connection::open(dir.path().join("things.db")).unwrap();
        writer.busy_timeout(std::time::Duration::ZERO).unwrap();
        let checkpoint_busy = || {
            writer
                .execute("INSERT INTO things (id) VALUES ('w')", [])
                .unwrap();
            writer
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
        };
        assert_eq!(checkpoint_busy(), 0);
        let conn = reads.conns[0].lock().unwrap();
        let mut open = conn.prepare("SELECT name FROM things").unwrap();
        let mut rows = open.query([]).unwrap();
        rows.next().unwrap();
        assert_eq!(checkpoint_busy(), 1);
    }

    #[test]
    fn the_connections_only_read() {
        let (_dir, reads) = reads(1);
        let conn = reads.conns[0].lock().unwrap();
        assert!(conn.execute_batch("DELETE FROM things").is_err());
        let left: i64 = conn
            .query_row("SELECT count(*) FROM things", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2);
    }
}
