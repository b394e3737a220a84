//! The authenticated-token cache (issue 13): a revocation or a tenant's deletion on one
//! replica is refused on another at its very next call; a replica that misses the
//! announcement accepts the token for at most `token_cache_ttl_ms`; a listener that
//! loses its connection forgets everything and listens again; an announcement returns
//! only once every listening replica has acted on it, and a replica listens before it
//! serves.
use credvault::proto::v1 as pb;
use secrecy::SecretString;
use tonic::Code;

use crate::both_backends;
use crate::support::*;

/// `token_cache_ttl_ms` as the tests run it: the default.
const TTL_MS: i64 = 1000;

/// A `credentials:read` token of tenant `acme`: its id and secret.
async fn minted(app: &TestApp) -> (String, SecretString) {
    let minted = app
        .admin(&app.admin_token)
        .await
        .create_service_token(pb::CreateServiceTokenRequest {
            tenant: "acme".into(),
            scopes: vec!["credentials:read".into()],
            description: "cached".into(),
            expires_at: None,
            constraints: None,
        })
        .await
        .unwrap()
        .into_inner();
    (minted.token.unwrap().id, SecretString::from(minted.secret))
}

async fn list(addr: std::net::SocketAddr, token: &SecretString) -> Code {
    let r = client_at(addr, token)
        .await
        .list_credentials(pb::ListCredentialsRequest::default())
        .await;
    match r {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn revoke(app: &TestApp, id: &str) {
    app.admin(&app.admin_token)
        .await
        .revoke_service_token(pb::RevokeServiceTokenRequest { id: id.to_owned() })
        .await
        .unwrap();
}

/// How many tokens `vault` authenticated from its cache, and how many it read.
fn lookups(vault: &credvault::service::Vault) -> (u64, u64) {
    let text = vault.metrics().encode(&Default::default());
    let count = |outcome: &str| {
        let line = format!("credvault_token_cache_lookups_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.parse().unwrap())
    };
    (count("hit"), count("miss"))
}

both_backends! {
    async fn a_token_revoked_on_one_replica_is_refused_on_another_at_the_next_call(app) {
        app.tenant("acme").await;
        let (id, token) = minted(&app).await;
        let peer = app.spawn_peer().await;
        // The peer authenticates the token once from the database, then from memory.
        assert_eq!(list(peer.addr, &token).await, Code::Ok);
        assert_eq!(list(peer.addr, &token).await, Code::Ok);
        assert_eq!(lookups(&peer.vault), (1, 1));
        assert_eq!(peer.vault.token_cache().held(), 1);

        revoke(&app, &id).await;
        assert_eq!(peer.vault.token_cache().held(), 0, "dropped before the revocation returned");
        assert_eq!(list(peer.addr, &token).await, Code::Unauthenticated);
        assert_eq!(list(app.addr, &token).await, Code::Unauthenticated);
        // Other tokens stay cached.
        let other = app.token(&app.tenant("initech").await, &["credentials:read"]).await;
        assert_eq!(list(peer.addr, &other).await, Code::Ok);
        assert_eq!(list(peer.addr, &other).await, Code::Ok);
        assert_eq!(lookups(&peer.vault).0, 2);
    }

    async fn a_replica_that_misses_the_announcement_accepts_the_token_for_at_most_the_ttl(app) {
        app.tenant("acme").await;
        let (id, token) = minted(&app).await;
        let peer = app.spawn_peer().await;
        assert_eq!(list(peer.addr, &token).await, Code::Ok);
        peer.vault.store().deafen(true);

        revoke(&app, &id).await;
        assert_eq!(list(app.addr, &token).await, Code::Unauthenticated, "the revoking replica");
        // The bound: the peer accepts it until its entry's time is over, not after.
        assert_eq!(list(peer.addr, &token).await, Code::Ok, "stale, within the TTL");
        app.clock.advance_ms(TTL_MS - 1);
        assert_eq!(list(peer.addr, &token).await, Code::Ok, "stale, within the TTL");
        app.clock.advance_ms(1);
        assert_eq!(list(peer.addr, &token).await, Code::Unauthenticated);
    }

    async fn deleting_a_tenant_drops_its_tokens_on_every_replica(app) {
        let doomed = app.tenant("doomed").await;
        let kept = app.tenant("kept").await;
        let peer = app.spawn_peer().await;
        for t in [&doomed, &kept] {
            assert_eq!(list(peer.addr, &t.token).await, Code::Ok);
        }
        app.admin(&app.admin_token).await
            .delete_tenant(pb::DeleteTenantRequest { tenant: doomed.id.clone() })
            .await
            .unwrap();
        assert_eq!(list(peer.addr, &doomed.token).await, Code::Unauthenticated);
        assert_eq!(list(peer.addr, &kept.token).await, Code::Ok);
        assert_eq!(peer.vault.token_cache().held(), 1);
    }
}

both_backends! {
    tweak = |c| credvault::config::Config { token_cache_ttl_ms: 0, ..c };

    async fn a_zero_ttl_reads_the_token_on_every_call(app) {
        let t = app.tenant("acme").await;
        for _ in 0..3 {
            assert_eq!(list(app.addr, &t.token).await, Code::Ok);
        }
        assert_eq!(lookups(&app.vault), (0, 3));
        assert_eq!(app.vault.token_cache().held(), 0);
    }
}

/// An announcement returns only once every other listening replica has acted on it,
/// not when it comes back to the announcing one: the peer's hearer here takes 300 ms
/// (a busy replica), and the announcement must still find it done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_waits_until_every_replica_has_acted_on_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use credvault::store::Change;
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let peer = app.spawn_peer().await;
    listeners(&app, 2).await;
    let acted = Arc::new(AtomicBool::new(false));
    let done = acted.clone();
    peer.vault.store().hear(Box::new(move |change| {
        if *change == Change::Token("tok_slow".into()) {
            std::thread::sleep(std::time::Duration::from_millis(300));
            done.store(true, Ordering::SeqCst);
        }
        true
    }));
    app.vault
        .store()
        .announce(&Change::Token("tok_slow".into()))
        .await
        .unwrap();
    assert!(
        acted.load(Ordering::SeqCst),
        "the announcement returned before the peer had acted on it"
    );
}

/// A PostgreSQL store listens for changes before it is handed out: a replica that
/// served first would miss what others announce until its listener connected.
#[tokio::test]
async fn a_store_listens_before_it_is_handed_out() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let watcher = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let count = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'credvault-changes'",
    );
    let store = credvault::store::open(&db.url(), 2).await.unwrap();
    let listening = count.fetch_one(&watcher).await.unwrap();
    assert_eq!(listening, 1);
    drop(store);
}

/// The connections listening for changes on the test's database, once there are `n`.
async fn listeners(app: &TestApp, n: usize) -> Vec<i32> {
    let sql = format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE 'LISTEN%{}%'",
        credvault::store::CHANNEL
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = sqlx::query_scalar(&sql).fetch_all(app.raw()).await.unwrap();
        if pids.len() == n {
            return pids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} listeners, not {pids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_loses_its_connection_forgets_everything_and_listens_again() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    app.tenant("acme").await;
    let (id, token) = minted(&app).await;
    let peer = app.spawn_peer().await;
    let cut = listeners(&app, 2).await;
    assert_eq!(list(peer.addr, &token).await, Code::Ok);
    assert_eq!(peer.vault.token_cache().held(), 1);

    // Cut every listening connection: whatever is announced meanwhile is lost, so
    // what the peer cached is dropped.
    for pid in &cut {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(*pid)
            .execute(app.raw())
            .await
            .unwrap();
    }
    eventually("the peer forgets what it cached", || {
        peer.vault.token_cache().held() == 0
    })
    .await;

    // Both listen again, on new connections, and hear the next revocation.
    let again = listeners(&app, 2).await;
    assert!(
        again.iter().all(|pid| !cut.contains(pid)),
        "{cut:?} {again:?}"
    );
    assert_eq!(list(peer.addr, &token).await, Code::Ok);
    assert_eq!(peer.vault.token_cache().held(), 1);
    revoke(&app, &id).await;
    assert_eq!(list(peer.addr, &token).await, Code::Unauthenticated);
}
