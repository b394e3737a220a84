//! SQLite, the embedded default: WAL mode, durable commits, one writer connection.
//!
//! SQLite allows one writer at a time. A pool of one write connection serialises
//! writers inside the process (no `SQLITE_BUSY` upgrade deadlocks between deferred
//! transactions), while WAL lets a separate pool of readers run alongside it.
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePoolOptions};
use sqlx::{Connection, Executor};

use super::StoreResult;
use super::changes::Changes;

mod caller_reads;

/// What the shared implementation is compiled against here.
mod engine {
    pub type DbRow = sqlx::sqlite::SqliteRow;
    pub type Db = sqlx::Sqlite;
    pub const BACKEND: crate::store::Backend = crate::store::Backend::Sqlite;
    pub type Connection = sqlx::sqlite::SqliteConnection;
    /// Run on every new reader connection.
    pub const READER_SETUP: &str = super::PRAGMAS;
    /// A connection is a handle on a file in this process: it cannot die idle.
    pub const PING_IDLE_READERS_AFTER: Option<std::time::Duration> = None;
    /// The reveal's read is made on the calling thread (`caller_reads.rs`).
    pub type CallerReads = super::caller_reads::CallerReads;
}

// The shared implementation, compiled here against this engine's driver (and in
// `store::postgres` against the other's): see `sql/mod.rs`.
#[allow(clippy::duplicate_mod, reason = "one source, compiled once per engine")]
#[path = "../sql/mod.rs"]
mod sql;

/// The store on SQLite.
pub use sql::SqlStore as SqliteStore;

/// Settings for every connection. `synchronous = FULL` makes an acknowledged commit
/// survive power loss; `secure_delete` overwrites deleted rows' bytes in the file.
/// `temp_store = MEMORY` keeps SQLite's temporary files in memory, among them the
/// sub-journal of a group commit's savepoints: a batch's creates changed more than
/// the 64 KiB SQLite keeps in memory before it spills that journal to a new file in
/// `/var/tmp` (one per batch), so each create paid extra writes of the pages it
/// touched, and copies of those pages were left in deleted files.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
                       PRAGMA synchronous = FULL; \
                       PRAGMA busy_timeout = 5000; \
                       PRAGMA foreign_keys = ON; \
                       PRAGMA secure_delete = ON; \
                       PRAGMA temp_store = MEMORY;";

/// Rows a query's worker thread may hand over before the reader takes them. sqlx's
/// default of 50 is less than one default page (51 rows read for 50 shown): the
/// worker would stop and wait for the reader midway through every listing.
const ROWS_IN_FLIGHT: usize = 256;

pub async fn connect(url: &str, max_readers: u32) -> StoreResult<SqliteStore> {
    let url = with_create_mode(url);
    let options = options(&url)?;
    let write = write_pool(options.clone()).await?;
    sqlx::migrate!("./migrations/sqlite").run(&write).await?;
    let on_caller = caller_reads(&url, &options);
    let read = sql::readers::Readers::open(options, max_readers).await?;
    Ok(SqliteStore::new(
        read,
        on_caller,
        write,
        Changes::in_process(&url),
    ))
}

/// Connections for reads on the calling thread, one per thread of the runtime; none
/// for a database in memory (only sqlx's connections share it), or if they do not
/// open, and then every read goes to the readers.
fn caller_reads(url: &str, options: &SqliteConnectOptions) -> caller_reads::CallerReads {
    let path = options.get_filename();
    if url.contains("mode=memory") || !path.is_file() {
        return caller_reads::CallerReads::none();
    }
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    caller_reads::CallerReads::open(path, threads).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reads on the calling thread are off: their connections did not open");
        caller_reads::CallerReads::none()
    })
}

fn options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str(url)?.row_buffer_size(ROWS_IN_FLIGHT))
}

/// The one write connection, with [`PRAGMAS`] set. It is a handle on a file in this
/// process: it cannot die idle, so it is not pinged (a round trip to its worker
/// thread) before each use.
async fn write_pool(options: SqliteConnectOptions) -> Result<sqlx::SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(PRAGMAS).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
}

/// Writes an online, consistent copy of the database at `url` to the new file `to`
/// (`VACUUM INTO`): one read transaction's snapshot, taken while writers carry on,
/// compacted and with the WAL folded in. Fails if `to` exists.
pub async fn backup(url: &str, to: &std::path::Path) -> StoreResult<()> {
    let to = to.to_str().ok_or_else(|| {
        super::StoreError::UnsupportedUrl("the backup path is not valid UTF-8".into())
    })?;
    let mut conn = SqliteConnection::connect(url).await?;
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
    use crate::model::AuditEntry;
    use crate::store::Store;

    fn entry(n: usize, text: &str) -> AuditEntry {
        AuditEntry {
            tenant_id: "ten_1".into(),
            at: 1_000 + n as i64,
            actor: format!("tok_{n}"),
            action: "reveal",
            credential_id: format!("cred_{n}"),
            user_id: format!("u{n}"),
            request_id: format!("{text}{n}"),
            source: "127.0.0.1:9".into(),
            outcome: "ok",
            detail: if n == 1 {
                r#"{"k":"v"}"#.into()
            } else {
                String::new()
            },
        }
    }

    /// Audit records queued together travel to SQLite as one JSON array: every field
    /// of every record (quotes, backslashes and non-ASCII text included) reads back as
    /// written, in the order they were queued.
    #[tokio::test]
    async fn audit_records_queued_together_are_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("vault.db").display());
        let store = super::connect(&url, 1).await.unwrap();
        let audits: Vec<AuditEntry> = (0..3).map(|n| entry(n, "q\"'\\ é ")).collect();
        let writes = audits.iter().map(|a| store.insert_audit(a));
        for written in futures::future::join_all(writes).await {
            written.unwrap();
        }
        type Columns = (
            String,
            i64,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
        );
        let read: Vec<Columns> = sqlx::query_as(
            "SELECT tenant_id, at, actor, action, credential_id, request_id, detail, user_id, \
             source, outcome FROM audit_log ORDER BY id",
        )
        .fetch_all(&sqlx::SqlitePool::connect(&url).await.unwrap())
        .await
        .unwrap();
        let written: Vec<Columns> = audits
            .into_iter()
            .map(|a| {
                let (action, outcome) = (a.action.to_owned(), a.outcome.to_owned());
                let (tenant, actor, cred, request) =
                    (a.tenant_id, a.actor, a.credential_id, a.request_id);
                (
                    tenant, a.at, actor, action, cred, request, a.detail, a.user_id, a.source,
                    outcome,
                )
            })
            .collect();
        assert_eq!(read, written);
    }

    /// Both kinds of connection run with [`super::PRAGMAS`]: commits durable, foreign
    /// keys checked, deleted bytes overwritten, and temporary files (a group commit's
    /// savepoint journal among them) kept in memory, never written to `/var/tmp`.
    #[tokio::test]
    async fn every_connection_is_durable_and_keeps_temporary_files_in_memory() {
        use sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("vault.db").display()
        );
        let options = super::options(&url).unwrap();
        let write = super::write_pool(options.clone()).await.unwrap();
        let read = super::sql::readers::Readers::open(options, 1)
            .await
            .unwrap();
        let settings = "SELECT journal_mode, synchronous, foreign_keys, secure_delete, \
             temp_store FROM pragma_journal_mode, pragma_synchronous, pragma_foreign_keys, \
             pragma_secure_delete, pragma_temp_store";
        let expected = ("wal".to_owned(), 2, 1, 1, 2); // FULL, on, on, MEMORY
        let of = |row: sqlx::sqlite::SqliteRow| {
            let setting = |i| row.get::<i64, _>(i);
            (
                row.get::<String, _>(0),
                setting(1),
                setting(2),
                setting(3),
                setting(4),
            )
        };
        let on_writer = sqlx::query(settings).fetch_one(&write).await.unwrap();
        assert_eq!(of(on_writer), expected);
        let mut reader = read.acquire().await.unwrap();
        let on_reader = sqlx::query(settings).fetch_one(&mut reader).await.unwrap();
        assert_eq!(of(on_reader), expected);
    }

    /// The reveal's read and short listings are made on the calling thread
    /// (`caller_reads.rs`): with the one reader in use, a credential is still read,
    /// whole, at once, and listed (filtered on its labels: SQLite's JSON functions
    /// there too). Were they sent to the readers, they would wait for that reader.
    #[tokio::test]
    async fn the_reveals_read_and_short_listings_need_no_reader() {
        use crate::model::{Constraints, CredentialMeta, Kind, SealedCredential, Status, Tenant};
        use crate::store::ListFilter;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("vault.db").display());
        let store = super::connect(&url, 1).await.unwrap();
        let tenant = Tenant {
            id: "ten_1".into(),
            name: "one".into(),
            created_at: 1,
        };
        store.insert_tenant(&tenant).await.unwrap();
        let meta = CredentialMeta {
            tenant_id: "ten_1".into(),
            id: "cred_1".into(),
            user_id: "u1".into(),
            user_email: Some("u1@example.com".into()),
            name: "name \"quoted\" é".into(),
            provider: "stripe".into(),
            kind: Kind::ApiKey,
            status: Status::Active,
            labels: [("team".to_owned(), "t".to_owned())].into(),
            scopes: vec!["read".into()],
            expires_at: Some(9_000),
            token_expires_at: None,
            version: 1,
            created_at: 1_000,
            updated_at: 1_000,
            refresh: Default::default(),
            expiry_warned_ms: None,
        };
        let sealed = SealedCredential {
            meta,
            blob: vec![0, 255, b'"'],
        };
        let created = AuditEntry {
            action: "create",
            credential_id: "cred_1".into(),
            ..entry(0, "")
        };
        store
            .insert_credential(&sealed, None, &created)
            .await
            .unwrap();
        let _held = store.readers().acquire().await.unwrap();
        let read = std::time::Duration::from_secs(2);
        let read = tokio::time::timeout(read, store.get_sealed("ten_1", "cred_1"))
            .await
            .expect("read without waiting for the reader")
            .unwrap()
            .unwrap();
        assert_eq!(read.meta, sealed.meta);
        assert_eq!(read.blob, sealed.blob);
        let none = store.get_sealed("ten_1", "cred_2").await.unwrap();
        assert!(none.is_none());
        let within = |labels: [(&str, &str); 1]| ListFilter {
            within: std::sync::Arc::new(Constraints {
                labels: labels.map(|(k, v)| (k.to_owned(), v.to_owned())).into(),
                ..Constraints::default()
            }),
            ..ListFilter::default()
        };
        let team = within([("team", "t")]);
        let listing = store.list_credentials("ten_1", &team, None, 51);
        let listed = tokio::time::timeout(std::time::Duration::from_secs(2), listing)
            .await
            .expect("listed without waiting for the reader")
            .unwrap();
        assert_eq!(listed, vec![sealed.meta.clone().into()]);
        let elsewhere = within([("team", "u")]);
        let other = store.list_credentials("ten_1", &elsewhere, None, 51);
        assert!(other.await.unwrap().is_empty());
    }

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
