//! The audit log: what it records (every state-changing call, with caller, source,
//! request id and outcome, never a secret), how it is listed, and that each way of
//! tampering with a chain in the database is detected.
use credvault::clock::Clock;
use credvault::model::AuditRecord;
use credvault::proto::v1 as pb;
use credvault::service::Caller;
use secrecy::SecretString;
use tonic::{Code, Request};

use crate::both_backends;
use crate::fixtures::{api_key, code_of, contains, create, delete, reveal, update};
use crate::support::{TestApp, TestTenant};

const CANARY: &str = "sk_live_audit_canary_7f3a9c";

/// `msg` with `x-request-id: id`.
fn with_id<T>(msg: T, id: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("x-request-id", id.parse().unwrap());
    r
}

async fn records(
    app: &TestApp,
    token: &SecretString,
    req: pb::ListAuditRecordsRequest,
) -> pb::ListAuditRecordsResponse {
    app.audit_client(token)
        .await
        .list_audit_records(req)
        .await
        .unwrap()
        .into_inner()
}

async fn verify(app: &TestApp, tenant: &str) -> pb::ChainVerification {
    let mut a = app.audit_client(&app.admin_token).await;
    let req = pb::VerifyAuditLogRequest {
        tenant_id: tenant.into(),
        all: false,
    };
    let mut chains = a.verify_audit_log(req).await.unwrap().into_inner().chains;
    assert_eq!(chains.len(), 1);
    chains.remove(0)
}

/// Two records more, and a chain pass and a checkpoint after each `every`.
async fn grow(app: &TestApp, t: &TestTenant, tokens: usize) {
    for _ in 0..tokens {
        app.token(t, &["credentials:read"]).await;
    }
    app.audit.chain().await.unwrap();
    app.audit.checkpoint().await.unwrap();
}

/// A tenant whose chain holds 8 records, signed at 4 and at 8.
async fn chain_of_eight(app: &TestApp, name: &str) -> TestTenant {
    let t = app.tenant(name).await; // tenant.create, token.create
    grow(app, &t, 2).await;
    grow(app, &t, 4).await;
    let v = verify(app, &t.id).await;
    assert!(v.intact, "{v:?}");
    assert_eq!((v.records, v.last_seq, v.checkpoints), (8, 8, 2));
    t
}

/// Moves records `from..` of a chain by `by` places (via negative numbers, so the
/// unique index never sees two at once).
async fn renumber(app: &TestApp, tenant: &str, from: i64, by: i64) {
    app.execute(
        &format!("UPDATE audit_log SET seq = -seq WHERE tenant_id = $1 AND seq >= {from}"),
        &[tenant],
    )
    .await;
    app.execute(
        &format!("UPDATE audit_log SET seq = -seq + {by} WHERE tenant_id = $1 AND seq < 0"),
        &[tenant],
    )
    .await;
}

async fn problem(app: &TestApp, tenant: &str) -> (String, i64) {
    let v = verify(app, tenant).await;
    assert!(!v.intact, "tampering went unnoticed: {v:?}");
    let p = v.problem.unwrap();
    assert!(!p.detail.is_empty());
    (p.kind, p.seq)
}

/// Record `seq` of `tenant` as stored.
async fn stored(app: &TestApp, tenant: &str, seq: i64) -> AuditRecord {
    app.audit_rows(tenant)
        .await
        .into_iter()
        .find(|r| r.seq == Some(seq))
        .unwrap()
}

both_backends! {
    async fn every_state_changing_call_is_recorded_with_caller_source_and_request_id(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let mut req = create("u1", api_key(CANARY));
        req.request_id = "idem-1".into();
        let cred = c.create_credential(req).await.unwrap().into_inner();
        c.reveal_credential(with_id(reveal(&cred.id), "trace-reveal")).await.unwrap();
        let mut up = update(&cred.id);
        up.name = Some("renamed".into());
        c.update_credential(with_id(up, "trace-update")).await.unwrap();
        let mut w = app.webhooks(&t.token).await;
        let ep = w.create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: "http://127.0.0.1:9/hook".into(), event_types: vec![],
        }).await.unwrap().into_inner().endpoint.unwrap();
        w.rotate_webhook_secret(pb::RotateWebhookSecretRequest { id: ep.id.clone(), overlap_seconds: Some(0) }).await.unwrap();
        w.delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: ep.id.clone() }).await.unwrap();
        let mut u = app.users(&t.token).await;
        u.register_user(pb::RegisterUserRequest { user_id: "u2".into(), email: "u2@example.com".into(), external_id: String::new() }).await.unwrap();
        c.delete_credential(delete(&cred.id)).await.unwrap();
        let mut admin = app.admin(&app.admin_token).await;
        let minted = admin.create_service_token(pb::CreateServiceTokenRequest {
            tenant: t.id.clone(), scopes: vec!["audit:read".into()], ..Default::default()
        }).await.unwrap().into_inner();
        let reader = SecretString::from(minted.secret.clone());
        let token_id = minted.token.unwrap().id;
        app.audit.chain().await.unwrap();

        let all = records(&app, &reader, pb::ListAuditRecordsRequest::default()).await;
        let actions: Vec<&str> = all.records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, [
            "tenant.create", "token.create", "create", "reveal", "update", "webhook.create",
            "webhook.rotate_secret", "webhook.delete", "user.register", "delete", "token.create",
        ]);
        let by = |action: &str| all.records.iter().find(|r| r.action == action).unwrap();
        let tenant_token = app.vault.list_tokens(&Caller::operator(), &t.id, 10, "").await.unwrap().items[0].id.clone();
        for r in &all.records[2..10] {
            assert_eq!(r.actor, tenant_token, "{r:?}");
            assert!(r.source.starts_with("127.0.0.1:"), "{r:?}");
            assert_eq!(r.outcome, "ok");
            assert!(r.seq > 0 && r.hash.len() == 64, "chained: {r:?}");
        }
        assert_eq!(by("create").request_id, "idem-1");
        assert_eq!((by("create").subject.as_str(), by("create").user_id.as_str()), (cred.id.as_str(), "u1"));
        assert_eq!(by("reveal").request_id, "trace-reveal");
        assert_eq!(by("update").request_id, "trace-update");
        assert_eq!(by("user.register").user_id, "u2");
        assert_eq!(all.records[10].subject, token_id);
        assert_eq!(all.records[0].actor, "operator");
        let seqs: Vec<i64> = all.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
        // Never a secret: not the canary, not a minted token.
        let text = format!("{all:?}");
        assert!(!contains(text.as_bytes(), CANARY.as_bytes()));
        assert!(!contains(text.as_bytes(), minted.secret.as_bytes()));

        // Filters and pages.
        let only = |f: fn(&mut pb::ListAuditRecordsRequest)| {
            let mut r = pb::ListAuditRecordsRequest::default();
            f(&mut r);
            r
        };
        let got = records(&app, &reader, only(|r| r.action = "reveal".into())).await;
        assert_eq!(got.records.len(), 1);
        let mut by_cred = pb::ListAuditRecordsRequest { credential_id: cred.id.clone(), ..Default::default() };
        assert_eq!(records(&app, &reader, by_cred.clone()).await.records.len(), 4);
        by_cred.user_id = "u2".into();
        assert!(records(&app, &reader, by_cred).await.records.is_empty());
        let got = records(&app, &reader, only(|r| r.user_id = "u2".into())).await;
        assert_eq!(got.records.len(), 1);
        let got = records(&app, &reader, pb::ListAuditRecordsRequest { actor: tenant_token.clone(), ..Default::default() }).await;
        assert_eq!(got.records.len(), 8);
        let mut pages = Vec::new();
        let mut token = String::new();
        loop {
            let page = records(&app, &reader, pb::ListAuditRecordsRequest { page_size: 4, page_token: token, ..Default::default() }).await;
            pages.push(page.records.len());
            token = page.next_page_token;
            if token.is_empty() { break; }
        }
        assert_eq!(pages, [4, 4, 3]);
        let later = crate::fixtures::ts(app.clock.now_ms() + 1);
        let got = records(&app, &reader, pb::ListAuditRecordsRequest { since: Some(later), ..Default::default() }).await;
        assert!(got.records.is_empty());

        // Another tenant's log needs admin; bad input is refused clearly.
        let mut a = app.audit_client(&reader).await;
        let other = pb::ListAuditRecordsRequest { tenant_id: "ten_other".into(), ..Default::default() };
        assert_eq!(code_of(a.list_audit_records(other).await).0, Code::PermissionDenied);
        let (code, message) = code_of(a.list_audit_records(pb::ListAuditRecordsRequest { page_token: "junk".into(), ..Default::default() }).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        let mut no_scope = app.audit_client(&t.token).await;
        assert_eq!(code_of(no_scope.list_audit_records(pb::ListAuditRecordsRequest::default()).await).0, Code::PermissionDenied);
        let all_chains = pb::VerifyAuditLogRequest { tenant_id: String::new(), all: true };
        assert_eq!(code_of(a.verify_audit_log(all_chains).await).0, Code::PermissionDenied);

        // The chain verifies, for the tenant and for the operator across all chains.
        let mine = a.verify_audit_log(pb::VerifyAuditLogRequest::default()).await.unwrap().into_inner();
        assert!(mine.chains[0].intact && mine.chains[0].records == 11, "{mine:?}");
        let mut admin_audit = app.audit_client(&app.admin_token).await;
        let every = admin_audit.verify_audit_log(pb::VerifyAuditLogRequest { tenant_id: String::new(), all: true }).await.unwrap().into_inner();
        assert!(every.chains.iter().all(|c| c.intact), "{every:?}");
        assert!(every.chains.iter().any(|c| c.tenant_id == t.id));
    }

    async fn each_way_of_tampering_is_detected(app) {
        // Edit a record in place.
        let t = chain_of_eight(&app, "edit").await;
        app.execute("UPDATE audit_log SET action = 'token.revoke' WHERE tenant_id = $1 AND seq = 3", &[&t.id]).await;
        assert_eq!(problem(&app, &t.id).await, ("changed".into(), 3));

        // Delete one record.
        let t = chain_of_eight(&app, "delete").await;
        app.execute("DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 3", &[&t.id]).await;
        assert_eq!(problem(&app, &t.id).await, ("deleted".into(), 3));

        // Delete one and renumber the rest to close the gap.
        let t = chain_of_eight(&app, "delete-renumber").await;
        app.execute("DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 3", &[&t.id]).await;
        renumber(&app, &t.id, 4, -1).await;
        assert_eq!(problem(&app, &t.id).await, ("deleted".into(), 3));

        // Insert a well-formed record (hash computed, chained from its predecessor).
        let t = chain_of_eight(&app, "insert").await;
        let before = stored(&app, &t.id, 2).await;
        renumber(&app, &t.id, 3, 1).await;
        let forged = AuditRecord { seq: Some(3), action: "token.revoke".into(), ..before.clone() };
        let hash = forged.chain_hash(3, before.hash.as_deref().unwrap());
        app.insert_audit_row(&forged, before.hash.as_deref().unwrap(), &hash).await;
        assert_eq!(problem(&app, &t.id).await, ("inserted".into(), 3));

        // Swap two records.
        let t = chain_of_eight(&app, "reorder").await;
        app.execute("UPDATE audit_log SET seq = -3 WHERE tenant_id = $1 AND seq = 3", &[&t.id]).await;
        app.execute("UPDATE audit_log SET seq = 3 WHERE tenant_id = $1 AND seq = 4", &[&t.id]).await;
        app.execute("UPDATE audit_log SET seq = 4 WHERE tenant_id = $1 AND seq = -3", &[&t.id]).await;
        assert_eq!(problem(&app, &t.id).await, ("reordered".into(), 3));

        // Cut off the tail (the checkpoint at 8 says it existed).
        let t = chain_of_eight(&app, "truncate").await;
        app.execute("DELETE FROM audit_log WHERE tenant_id = $1 AND seq > 6", &[&t.id]).await;
        assert_eq!(problem(&app, &t.id).await, ("truncated".into(), 7));

        // Rewrite record 6 and recompute every hash after it (and the head): only the
        // signed checkpoint at 8 tells.
        let t = chain_of_eight(&app, "recompute").await;
        let mut prev = stored(&app, &t.id, 5).await.hash.unwrap();
        for seq in 6..=8 {
            let mut r = stored(&app, &t.id, seq).await;
            if seq == 6 {
                r.action = "token.revoke".into();
            }
            let hash = r.chain_hash(seq, &prev).to_vec();
            app.rewrite_audit_row(&r, &prev, &hash).await;
            prev = hash;
        }
        let v = verify(&app, &t.id).await;
        let p = v.problem.expect("a recomputed chain is detected");
        assert_eq!((p.kind.as_str(), p.seq), ("rewritten", 5), "{}", p.detail);

        // Forge a checkpoint.
        let t = chain_of_eight(&app, "forge").await;
        app.execute("UPDATE audit_checkpoints SET at = at + 1 WHERE tenant_id = $1 AND seq = 4", &[&t.id]).await;
        assert_eq!(problem(&app, &t.id).await, ("forged_checkpoint".into(), 4));

        // Prune early: records gone before retention would have let them go.
        let t = chain_of_eight(&app, "early-cut").await;
        app.execute("DELETE FROM audit_log WHERE tenant_id = $1 AND seq <= 4", &[&t.id]).await;
        app.execute("DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND seq < 4", &[&t.id]).await;
        assert_eq!(problem(&app, &t.id).await, ("deleted".into(), 1));

        // Untouched chains still verify.
        let t = chain_of_eight(&app, "untouched").await;
        assert!(verify(&app, &t.id).await.intact);
    }
}

both_backends! {
    // SQLite chains each record as it is written; PostgreSQL leaves that to the chain
    // job. A record an earlier version wrote without a place (or any record, on
    // PostgreSQL) is linked by the job after the chain's head, wherever the head
    // came from.
    async fn records_written_unchained_join_the_chain_after_its_head(app) {
        let t = app.tenant("upgraded").await; // tenant.create, token.create
        app.audit.chain().await.unwrap();
        app.execute(
            "INSERT INTO audit_log (tenant_id, at, actor, action, credential_id, request_id) \
             VALUES ($1, 5, 'tok_old', 'token.create', 'tok_x', '')",
            &[&t.id],
        ).await;
        app.token(&t, &["credentials:read"]).await; // token.create, written now
        let sqlite = app.backend == crate::support::Backend::Sqlite;
        let v = verify(&app, &t.id).await;
        assert!(v.intact, "{v:?}");
        assert_eq!((v.records, v.unchained), if sqlite { (3, 1) } else { (2, 2) });
        app.audit.chain().await.unwrap();
        let v = verify(&app, &t.id).await;
        assert!(v.intact, "{v:?}");
        assert_eq!((v.records, v.last_seq, v.unchained), (4, 4, 0));
        let old = app.audit_rows(&t.id).await.into_iter().find(|r| r.actor == "tok_old").unwrap();
        assert_eq!(old.seq, Some(if sqlite { 4 } else { 3 }), "{old:?}");
    }
}

both_backends! {
    tweak = |mut c| { c.audit_retention_days = 1; c };

    async fn retention_prunes_at_a_checkpoint_and_what_remains_verifies(app) {
        let t = chain_of_eight(&app, "old").await;
        app.clock.advance_ms(2 * 24 * 3600 * 1000);
        grow(&app, &t, 3).await;
        let pruned = app.audit.prune().await.unwrap();
        assert!(pruned >= 8, "pruned {pruned}");
        let v = verify(&app, &t.id).await;
        assert!(v.intact, "{v:?}");
        assert_eq!((v.first_seq, v.last_seq, v.records), (9, 11, 3));
        // The records listing no longer has them.
        let got = records(&app, &app.admin_token, pb::ListAuditRecordsRequest { tenant_id: t.id.clone(), ..Default::default() }).await;
        assert_eq!(got.records.len(), 3);
        // A second prune finds nothing more, and the chain continues from its head.
        assert_eq!(app.audit.prune().await.unwrap(), 0);
        grow(&app, &t, 1).await;
        assert!(verify(&app, &t.id).await.intact);
    }
}

both_backends! {
    // Reveals and creates that arrive together are group-committed: creates in
    // savepoints of their own with their records (SQLite), then the reveals' records
    // with one statement (a JSON array the database unpacks). Every call still leaves
    // exactly its own record, with the text it was given (quotes, backslashes,
    // non-ASCII) intact.
    async fn concurrent_reveals_and_creates_each_leave_their_own_record(app) {
        let t = app.tenant("busy").await;
        let c = app.client(&t.token).await;
        let cred = c.clone().create_credential(create("u1", api_key(CANARY))).await.unwrap().into_inner();
        let request_id = |i: usize| format!("r-{i} \"q\" \\ é");
        let reveals = (0..48).map(|i| {
            let (mut c, mut req) = (c.clone(), reveal(&cred.id));
            req.request_id = request_id(i);
            async move { c.reveal_credential(req).await.map(|_| ()) }
        });
        let creates = (0..8).map(|i| {
            let (mut c, mut req) = (c.clone(), create(&format!("v{i}"), api_key(CANARY)));
            req.request_id = format!("idem-{i}");
            async move { c.create_credential(req).await.map(|_| ()) }
        });
        // Four tries of one create (same request id): one goes in, the others conflict
        // in their savepoints and are answered as replays, and only the one that went
        // in leaves a record.
        let retries = (0..4).map(|_| {
            let (mut c, mut req) = (c.clone(), create("w", api_key(CANARY)));
            req.request_id = "idem-same".into();
            async move { c.create_credential(req).await.map(|r| r.into_inner().id) }
        });
        let (revealed, created, retried) = tokio::join!(
            futures::future::join_all(reveals),
            futures::future::join_all(creates),
            futures::future::join_all(retries)
        );
        assert!(revealed.iter().chain(&created).all(Result::is_ok));
        let retried: Vec<String> = retried.into_iter().map(Result::unwrap).collect();
        assert!(retried.iter().all(|id| *id == retried[0]), "{retried:?}");
        app.audit.chain().await.unwrap();

        let of = |action: &str| pb::ListAuditRecordsRequest {
            action: action.into(), page_size: 100, ..Default::default()
        };
        let reader = app.token(&t, &["audit:read"]).await;
        let got = records(&app, &reader, of("reveal")).await;
        let mut ids: Vec<String> = got.records.iter().map(|r| r.request_id.clone()).collect();
        ids.sort();
        let mut want: Vec<String> = (0..48).map(request_id).collect();
        want.sort();
        assert_eq!(ids, want);
        assert!(got.records.iter().all(|r| r.user_id == "u1" && r.subject == cred.id && r.outcome == "ok"));
        let got = records(&app, &reader, of("create")).await;
        assert_eq!(got.records.len(), 10);
        let same: Vec<_> = got.records.iter().filter(|r| r.request_id == "idem-same").collect();
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].subject, retried[0]);
        let v = verify(&app, &t.id).await;
        assert!(v.intact, "{v:?}");
    }
}
