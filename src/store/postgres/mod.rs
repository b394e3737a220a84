//! PostgreSQL, for several replicas sharing one database. Default durable settings;
//! reads on a list of connections of their own, writes through sqlx's pool.
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreResult;
use super::changes::Changes;

/// What the shared implementation is compiled against here.
mod engine {
    pub type DbRow = sqlx::postgres::PgRow;
    pub type Db = sqlx::Postgres;
    pub const BACKEND: crate::store::Backend = crate::store::Backend::Postgres;
    pub type Connection = sqlx::postgres::PgConnection;
    pub const READER_SETUP: &str = "";
    pub const PING_IDLE_READERS_AFTER: Option<std::time::Duration> =
        Some(super::ALIVE_WITHOUT_PING);
    pub type CallerReads = super::NoCallerReads;
}

// The shared implementation, compiled here against this engine's driver (and in
// `store::sqlite` against the other's): see `sql/mod.rs`.
#[allow(clippy::duplicate_mod, reason = "one source, compiled once per engine")]
#[path = "../sql/mod.rs"]
mod sql;

/// The store on PostgreSQL.
pub use sql::SqlStore as PgStore;

/// PostgreSQL is a network away, and a read waits for its answer: no read is made
/// on the calling thread, every one goes to the readers (SQLite's counterpart is
/// `sqlite/caller_reads.rs`).
pub struct NoCallerReads;

impl NoCallerReads {
    /// Never made here: `None`.
    pub fn fetch<T>(
        &self,
        _sql: &str,
        _params: &[&str],
        _at_most: u32,
        _decode: fn(&dyn super::credential_row::Columns) -> StoreResult<T>,
    ) -> Option<Vec<T>> {
        None
    }
}

/// A connection used this recently is handed out without a ping first (HikariCP's
/// "alive bypass window"). sqlx's default pings before every acquire: one extra round
/// trip per query, to guard against a connection that died while it sat idle. A
/// connection that was fine a moment ago has almost never died since; if it has, its
/// query fails (UNAVAILABLE, retryable) and it is replaced. sqlx's pool also checks
/// each connection as it comes back; the readers' list instead watches each query's
/// result (`sql/readers.rs`).
const ALIVE_WITHOUT_PING: Duration = Duration::from_millis(500);

/// `max_connections` split between reads (half, rounded down, at least one) and
/// writes (the rest, at least two: a group commit's creates and audit records go
/// side by side).
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<PgStore> {
    let options = PgConnectOptions::from_str(url)?;
    let readers = (max_connections / 2).max(1);
    let writers = max_connections.saturating_sub(readers).max(2);
    let pool = PgPoolOptions::new()
        .max_connections(writers)
        .acquire_timeout(sql::readers::ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(
                async move { Ok(meta.idle_for < ALIVE_WITHOUT_PING || conn.ping().await.is_ok()) },
            )
        })
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    let read = sql::readers::Readers::open(options.clone(), readers).await?;
    let changes = Changes::notify(options, pool.clone()).await;
    Ok(PgStore::new(read, NoCallerReads, pool, changes))
}
