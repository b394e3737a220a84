//! Deleting a tenant shreds it: its key is destroyed before its rows go, so copies of
//! its rows taken before the deletion and put back afterwards open for no one — except
//! where the copy holds the tenant key's row too (a backup from before the deletion),
//! which is what docs/encryption.md says shredding does not cover.
use credvault::proto::v1 as pb;
use credvault::service::keys::rewrap::{Pace, Rewrap};
use credvault::store::{SealedColumn, SealedValue};
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::support::*;

/// The tables a copy of the tenant is kept from, parents first: the order they are
/// put back in. The tenant key's row is kept apart.
const COPIED: [&str; 7] = [
    "tenants",
    "end_users",
    "service_tokens",
    "credentials",
    "oauth_providers",
    "webhook_endpoints",
    "connect_settings",
];

/// Copies the tenant's rows into `copy_<table>` tables, as a lagging replica or a
/// forgotten export would hold them. Ids are `ten_` and hex: safe to inline.
async fn copy_rows(app: &TestApp, tenant_id: &str) {
    for table in COPIED.iter().chain(&["tenant_keys"]) {
        let key = if *table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        app.execute(
            &format!(
                "CREATE TABLE copy_{table} AS SELECT * FROM {table} WHERE {key} = '{tenant_id}'"
            ),
            &[],
        )
        .await;
    }
}

async fn put_back(app: &TestApp, tables: &[&str]) {
    for table in tables {
        app.execute(
            &format!("INSERT INTO {table} SELECT * FROM copy_{table}"),
            &[],
        )
        .await;
    }
}

/// Every sealed value of the tenant, in every column.
async fn sealed_values(app: &TestApp, tenant_id: &str) -> Vec<(SealedColumn, SealedValue)> {
    let mut values = Vec::new();
    for column in SealedColumn::ALL {
        let batch = app
            .vault
            .store()
            .sealed_batch(column, None, &[0xff], 1000)
            .await
            .unwrap();
        values.extend(
            batch
                .into_iter()
                .filter(|v| v.tenant_id == tenant_id)
                .map(|v| (column, v)),
        );
    }
    values
}

/// A tenant with a value in every column it can fill; returns its credential ids.
async fn fill(app: &TestApp, t: &TestTenant) -> Vec<String> {
    let mut c = app.client(&t.token).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = c
            .create_credential(create("u", api_key(&format!("sk_doomed_{i}"))))
            .await
            .unwrap();
        ids.push(r.into_inner().id);
    }
    app.seal_one_of_each(t).await;
    ids
}

async fn delete_tenant(
    app: &TestApp,
    tenant: &str,
) -> Result<pb::DeleteTenantResponse, tonic::Status> {
    let mut admin = app.admin(&app.admin_token).await;
    admin
        .delete_tenant(pb::DeleteTenantRequest {
            tenant: tenant.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Every table with a `tenant_id` column, read from the schema (so a table added
/// later and forgotten by the deletion fails this test), the test's copies left out.
async fn tenant_tables(app: &TestApp) -> Vec<String> {
    let sql = match app.backend {
        Backend::Sqlite => {
            "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND p.name = 'tenant_id'"
        }
        Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND column_name = 'tenant_id'"
        }
    };
    let tables: Vec<String> = sqlx::query_scalar(sql).fetch_all(app.raw()).await.unwrap();
    let tables: Vec<String> = tables
        .into_iter()
        .filter(|t| !t.starts_with("copy_"))
        .collect();
    assert!(tables.len() >= 17, "{tables:?}");
    tables
}

/// The tenant's rows left in any table, its own row included.
async fn rows_of(app: &TestApp, tenant_id: &str) -> i64 {
    let mut n = app
        .count("SELECT COUNT(*) FROM tenants WHERE id = $1", tenant_id)
        .await;
    for table in tenant_tables(app).await {
        n += app
            .count(
                &format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1"),
                tenant_id,
            )
            .await;
    }
    n
}

both_backends! {
    async fn rows_copied_before_a_tenant_is_deleted_never_open_again(app) {
        let doomed = app.tenant("doomed").await;
        let kept = app.tenant("kept").await;
        let ids = fill(&app, &doomed).await;
        let kept_id = app.client(&kept.token).await
            .create_credential(create("u", api_key("sk_kept"))).await.unwrap().into_inner().id;
        // Two other replicas have used the tenant's key, so hold it in memory; one of
        // them will miss the deletion's announcement.
        let peer = app.spawn_peer().await;
        let deaf = app.spawn_peer().await;
        let mut on_peer = client_at(deaf.addr, &doomed.token).await;
        on_peer.reveal_credential(reveal(&ids[0])).await.unwrap();
        client_at(peer.addr, &doomed.token).await.reveal_credential(reveal(&ids[0])).await.unwrap();
        assert_eq!(peer.vault.tenant_keys().held(), 1);
        deaf.vault.store().deafen(true);

        let job = Rewrap::new(&app.vault, Pace { batch: 100, rate: 0 });
        let copies = sealed_values(&app, &doomed.id).await;
        // The tenant key, 3 credentials, a client secret, a webhook and a connect secret.
        assert!(copies.len() >= 7, "{copies:?}");
        for (column, value) in &copies {
            assert!(job.open_value(*column, value).await.is_ok(), "{column:?} opens before");
        }
        copy_rows(&app, &doomed.id).await;

        // Refused: a tenant:admin token, the caller's own tenant, an unknown tenant.
        let tenant_admin = app.token(&doomed, &["tenant:admin"]).await;
        let err = app.admin(&tenant_admin).await
            .delete_tenant(pb::DeleteTenantRequest { tenant: doomed.id.clone() }).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        // The bootstrap admin token lives in the `default` tenant.
        let own = app.vault.store().find_tenant_by_name("default").await.unwrap().unwrap().id;
        assert_eq!(delete_tenant(&app, "default").await.unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(delete_tenant(&app, "nobody").await.unwrap_err().code(), Code::NotFound);

        let r = delete_tenant(&app, "doomed").await.unwrap();
        assert_eq!(r.tenant.unwrap().id, doomed.id);
        // The replica that heard the deletion dropped the key.
        eventually("the listening replica drops the key", || peer.vault.tenant_keys().held() == 0).await;
        assert!(r.deleted_rows > 10, "{}", r.deleted_rows);
        assert_eq!(rows_of(&app, &doomed.id).await, 0, "every row of the tenant is gone");
        let mut c = app.client(&doomed.token).await;
        assert_eq!(c.reveal_credential(reveal(&ids[0])).await.unwrap_err().code(), Code::Unauthenticated);
        let r = app.client(&kept.token).await.reveal_credential(reveal(&kept_id)).await.unwrap();
        assert_eq!(r.into_inner().secret, Some(api_key("sk_kept")));
        let records = app.audit_rows(&own).await;
        assert!(records.iter().any(|a| a.action == "tenant.delete" && a.credential_id == doomed.id), "{records:?}");

        // The rows come back without the key: no value opens, through any path.
        put_back(&app, &COPIED).await;
        for (column, value) in &copies[1..] {
            let err = job.open_value(*column, value).await.unwrap_err().to_string();
            assert!(err.contains("destroyed"), "{column:?}: {err}");
        }
        let (code, message) = code_of(c.reveal_credential(reveal(&ids[0])).await);
        assert_eq!(code, Code::DataLoss);
        assert!(message.contains("destroyed when the tenant was deleted"), "{message}");
        // A new key made for the restored tenant is not the old one.
        c.create_credential(create("u", api_key("sk_after"))).await.unwrap();
        assert_eq!(code_of(c.reveal_credential(reveal(&ids[1])).await).0, Code::DataLoss);

        // The replica that missed it opens them until its memory of the key runs out.
        assert!(on_peer.reveal_credential(reveal(&ids[0])).await.is_ok());
        // Then the sweep drops it from memory, and that replica refuses too.
        assert_eq!(deaf.vault.tenant_keys().held(), 1);
        deaf.vault.tenant_keys().forget_expired();
        assert_eq!(deaf.vault.tenant_keys().held(), 1, "not yet expired");
        app.clock.advance_ms(credvault::service::tenant_keys::CACHE_MS + 1);
        deaf.vault.tenant_keys().forget_expired();
        assert_eq!(deaf.vault.tenant_keys().held(), 0);
        assert_eq!(code_of(on_peer.reveal_credential(reveal(&ids[0])).await).0, Code::DataLoss);

        // A copy that holds the key's row too opens again: a backup from before the
        // deletion is not shredded.
        app.execute(&format!("DELETE FROM tenant_keys WHERE tenant_id = '{}'", doomed.id), &[]).await;
        put_back(&app, &["tenant_keys"]).await;
        let r = c.reveal_credential(reveal(&ids[0])).await.unwrap();
        assert_eq!(r.into_inner().secret, Some(api_key("sk_doomed_0")));
    }

    async fn an_interrupted_deletion_is_finished_by_asking_again(app) {
        let t = app.tenant("doomed").await;
        let ids = fill(&app, &t).await;
        // The key is destroyed, then the process stops before the rows go.
        assert!(app.vault.tenant_keys().destroy(&t.id).await.unwrap());
        let mut c = app.client(&t.token).await;
        assert_eq!(code_of(c.reveal_credential(reveal(&ids[0])).await).0, Code::DataLoss);
        // No new key is made for a tenant being deleted.
        let (code, message) = code_of(c.create_credential(create("u", api_key("late"))).await);
        assert_eq!(code, Code::NotFound);
        assert!(message.contains("being deleted"), "{message}");
        assert!(app.tenant_key_blob(&t.id).await.is_none());

        let r = delete_tenant(&app, &t.id).await.unwrap();
        assert!(r.deleted_rows > 10);
        assert_eq!(rows_of(&app, &t.id).await, 0);
        assert_eq!(delete_tenant(&app, &t.id).await.unwrap_err().code(), Code::NotFound);
    }
}
