//! SQLite, the embedded default: WAL mode, durable commits, one writer connection.
//!
//! SQLite allows one writer at a time. A pool of one write connection serialises
//! writers inside the process (no `SQLITE_BUSY` upgrade deadlocks between deferred
//! transactions), while WAL lets a separate pool of readers run alongside it.
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Connection, Executor};

use super::{Backend, SqlStore, StoreResult};

/// Settings for every connection. `synchronous = FULL` makes an acknowledged commit
/// survive power loss; `secure_delete` overwrites deleted rows' bytes in the file.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
                       PRAGMA synchronous = FULL; \
                       PRAGMA busy_timeout = 5000; \
                       PRAGMA foreign_keys = ON; \
                       PRAGMA secure_delete = ON;";

pub async fn connect(url: &str, max_readers: u32) -> StoreResult<SqlStore> {
    install_default_drivers();
    let url = with_create_mode(url);
    let pool = |max: u32| {
        // A connection is a handle on a file in this process: it cannot die idle, so
        // it is not pinged (a round trip to its worker thread) before each use.
        AnyPoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(PRAGMAS).await?;
                    Ok(())
                })
            })
    };
    let write = pool(1).connect(&url).await?;
    sqlx::migrate!("./migrations/sqlite").run(&write).await?;
    let read = pool(max_readers.max(1)).connect(&url).await?;
    let changes = super::changes::Changes::in_process(&url);
    Ok(SqlStore::new(Backend::Sqlite, read, write, changes))
}

/// Writes an online, consistent copy of the database at `url` to the new file `to`
/// (`VACUUM INTO`): one read transaction's snapshot, taken while writers carry on,
/// compacted and with the WAL folded in. Fails if `to` exists.
pub async fn backup(url: &str, to: &std::path::Path) -> StoreResult<()> {
    install_default_drivers();
    let to = to.to_str().ok_or_else(|| {
        super::StoreError::UnsupportedUrl("the backup path is not valid UTF-8".into())
    })?;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    conn.execute("PRAGMA busy_timeout = 5000").await?;
    sqlx::query("VACUUM INTO $1")
        .bind(to)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Adds `mode=rwc` so the database file is created on first start.
fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn create_mode_is_added_once() {
        assert_eq!(
            super::with_create_mode("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            super::with_create_mode("sqlite://a.db?x=1"),
            "sqlite://a.db?x=1&mode=rwc"
        );
        assert_eq!(
            super::with_create_mode("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
    }
}
