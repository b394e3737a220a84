//! PostgreSQL, for several replicas sharing one database. Default durable settings;
//! one pool serves reads and writes.
use sqlx::any::{AnyPoolOptions, install_default_drivers};

use super::{Backend, SqlStore, StoreResult};

pub async fn connect(url: &str, max_connections: u32) -> StoreResult<SqlStore> {
    install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    let changes = super::changes::Changes::notify(url);
    Ok(SqlStore::new(
        Backend::Postgres,
        pool.clone(),
        pool,
        changes,
    ))
}
