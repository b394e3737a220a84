//! The store's reader connections on PostgreSQL, which the server can end at any
//! time (a restart, a failover, an operator's `pg_terminate_backend`).
use credvault::model::Tenant;
use sqlx::{Connection, Executor};

use crate::support::{Backend, TestDb, postgres_admin_url};

/// Every session of the test's database ends (as the server's restart would end
/// them). A read on the dead reader may fail, as UNAVAILABLE would tell its caller,
/// but the reader is replaced: the next read works.
#[tokio::test]
async fn a_reader_the_server_disconnected_is_replaced() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let TestDb::Postgres { name } = &db else {
        unreachable!("a PostgreSQL database")
    };
    // Two connections: one reader, and the writers' pool.
    let store = credvault::store::open(&db.url(), 2).await.unwrap();
    let tenant = Tenant {
        id: "ten_readers".into(),
        name: "readers".into(),
        created_at: 1,
    };
    store.insert_tenant(&tenant).await.unwrap();
    assert_eq!(
        store.get_tenant(&tenant.id).await.unwrap(),
        Some(tenant.clone())
    );

    let mut admin = sqlx::AnyConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let others = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    );
    admin
        .execute(
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            .as_str(),
        )
        .await
        .unwrap();
    for _ in 0..100 {
        let left: i64 = sqlx::query_scalar(&others)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let first = store.get_tenant(&tenant.id).await;
    if let Err(e) = &first {
        eprintln!("the read on the ended connection failed: {e}");
    }
    let second = store.get_tenant(&tenant.id).await;
    assert_eq!(
        second.unwrap(),
        Some(tenant),
        "the next read has a new connection"
    );
    drop(store);
}
