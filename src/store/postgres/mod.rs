//! PostgreSQL, for several replicas sharing one database. Default durable settings;
//! one pool serves reads and writes.
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;

use super::StoreResult;
use super::changes::Changes;

/// What the shared implementation is compiled against here.
mod engine {
    pub type DbRow = sqlx::postgres::PgRow;
    pub type Db = sqlx::Postgres;
    pub const BACKEND: crate::store::Backend = crate::store::Backend::Postgres;
    /// sqlx's pool, which readers and writers share here.
    pub type ReadPool = sqlx::PgPool;
}

// The shared implementation, compiled here against this engine's driver (and in
// `store::sqlite` against the other's): see `sql/mod.rs`.
#[allow(clippy::duplicate_mod, reason = "one source, compiled once per engine")]
#[path = "../sql/mod.rs"]
mod sql;

/// The store on PostgreSQL.
pub use sql::SqlStore as PgStore;

/// A connection used this recently is handed out without a ping first (HikariCP's
/// "alive bypass window"). sqlx's default pings before every acquire: one extra round
/// trip per query, to guard against a connection that died while it sat idle. sqlx
/// also checks each connection as it is returned to the pool, so one that was
/// released healthy a moment ago has almost never died since; if it has, its query
/// fails (UNAVAILABLE, retryable) and the pool replaces it.
const ALIVE_WITHOUT_PING: Duration = Duration::from_millis(500);

pub async fn connect(url: &str, max_connections: u32) -> StoreResult<PgStore> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(
                async move { Ok(meta.idle_for < ALIVE_WITHOUT_PING || conn.ping().await.is_ok()) },
            )
        })
        .connect(url)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    let changes = Changes::notify(url, pool.clone());
    Ok(PgStore::new(pool.clone(), pool, changes))
}
