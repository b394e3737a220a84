//! PostgreSQL over TLS: `sslmode=require` encrypts, `verify-full` checks the server's
//! certificate against `sslrootcert` and its name. Runs against the local server's
//! own certificate (Debian's snakeoil, issued to `localhost`).
use sqlx::Connection;

use crate::support::{Backend, TestDb, on_ci, postgres_admin_url};

const SERVER_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The test database's URL with `host` and these query parameters, or `None` (with a
/// note) when PostgreSQL or its TLS is not there outside CI.
async fn tls_database(host: &str, params: &str) -> Option<(TestDb, String)> {
    let db = TestDb::create(Backend::Postgres).await?;
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if ssl != "on" || !std::path::Path::new(SERVER_CERT).exists() {
        assert!(
            !on_ci(),
            "CI needs PostgreSQL with ssl = on and {SERVER_CERT}"
        );
        eprintln!("skipping: the local PostgreSQL does not offer TLS");
        return None;
    }
    let url = db.url().replacen("127.0.0.1", host, 1);
    Some((db, format!("{url}?{params}")))
}

/// How many of the database's connections (other than ours) are encrypted, and how many not.
async fn connections_by_tls(database: &str) -> (i64, i64) {
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let sql = "SELECT COUNT(*) FILTER (WHERE s.ssl), COUNT(*) FILTER (WHERE NOT s.ssl) \
               FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1";
    sqlx::query_as(sql)
        .bind(database)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn sslmode_require_encrypts_every_connection() {
    let Some((_db, url)) = tls_database("127.0.0.1", "sslmode=require").await else {
        return;
    };
    let store = credvault::store::open(&url, 2)
        .await
        .expect("sslmode=require connects");
    store.ping().await.unwrap();
    let (encrypted, plain) = connections_by_tls(&database_name(&url)).await;
    assert!(encrypted >= 1, "the vault's connections use TLS");
    assert_eq!(plain, 0, "no plaintext connection");
}

#[tokio::test]
async fn verify_full_checks_the_certificate_and_the_host_name() {
    let good = format!("sslmode=verify-full&sslrootcert={SERVER_CERT}");
    let Some((_db, url)) = tls_database("localhost", &good).await else {
        return;
    };
    let store = credvault::store::open(&url, 2)
        .await
        .expect("the right root and name");
    store.ping().await.unwrap();

    // The right root but another name: refused.
    let wrong_name = url.replacen("localhost", "127.0.0.1", 1);
    assert!(
        credvault::store::open(&wrong_name, 2).await.is_err(),
        "name mismatch"
    );
    // A root that did not issue the server's certificate: refused.
    let wrong_root = url.replace(SERVER_CERT, "/etc/ssl/certs/ca-certificates.crt");
    assert!(
        credvault::store::open(&wrong_root, 2).await.is_err(),
        "untrusted certificate"
    );
}
