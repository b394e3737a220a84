//! The key lifecycle end to end: a cluster-wide active version, activation only when
//! every live replica holds it, rewrap (fenced, resumable), retirement, and the
//! formats side by side.
use std::sync::Arc;

use credvault::crypto::{AadContext, Keyring};
use credvault::proto::v1 as pb;
use credvault::service::keys::rewrap::{Pace, Rewrap};
use credvault::store::{Resealed, SealedColumn};
use secrecy::SecretString;
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::support::*;

const UNTHROTTLED: Pace = Pace { batch: 7, rate: 0 };

fn header(format: u8, version: u32) -> Vec<u8> {
    let mut h = vec![format];
    h.extend_from_slice(&version.to_be_bytes());
    h
}

async fn status(app: &TestApp) -> pb::KeyStatus {
    let mut admin = app.admin(&app.admin_token).await;
    admin
        .get_key_status(pb::GetKeyStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn activate(app: &TestApp, version: u32) -> Result<pb::KeyStatus, tonic::Status> {
    let mut admin = app.admin(&app.admin_token).await;
    admin
        .activate_key(pb::ActivateKeyRequest { version })
        .await
        .map(tonic::Response::into_inner)
}

async fn retire(app: &TestApp, version: u32) -> Result<pb::KeyStatus, tonic::Status> {
    let mut admin = app.admin(&app.admin_token).await;
    admin
        .retire_key(pb::RetireKeyRequest { version })
        .await
        .map(tonic::Response::into_inner)
}

async fn rewrap(app: &TestApp) -> pb::RewrapSecretsResponse {
    let mut admin = app.admin(&app.admin_token).await;
    admin
        .rewrap_secrets(pb::RewrapSecretsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Values sealed under master key `version`, per `status`.
fn values_under(s: &pb::KeyStatus, version: u32) -> u64 {
    s.sealed
        .iter()
        .filter(|c| c.key_version == version)
        .map(|c| c.values)
        .sum()
}

/// Values sealed under their tenant's key (format 3), per `status`.
fn under_tenant_keys(s: &pb::KeyStatus) -> u64 {
    s.sealed
        .iter()
        .filter(|c| c.format == 3)
        .map(|c| c.values)
        .sum()
}

/// Every value of every column re-sealed directly under the active master key, as
/// versions before tenant keys left them (an upgraded database).
async fn as_before_tenant_keys(app: &TestApp) -> u64 {
    let job = Rewrap::new(&app.vault, UNTHROTTLED);
    let mut n = 0;
    for column in SealedColumn::ALL
        .into_iter()
        .filter(|c| *c != SealedColumn::TenantKey)
    {
        n += job.seal_as_before_tenant_keys(column).await.unwrap();
    }
    n
}

/// One value in every sealed column a tenant can fill, all sealed directly under
/// master key 1 as before tenant keys: credentials (one of them in format 1), a
/// provider client secret, a webhook secret (rotated, so its previous one too) and
/// the connect signing secret.
async fn fill_every_column(app: &TestApp, t: &TestTenant) -> Vec<(String, String)> {
    let mut c = app.client(&t.token).await;
    let mut secrets = Vec::new();
    for i in 0..20 {
        let key = format!("sk_live_{i}");
        let id = c
            .create_credential(create("u", api_key(&key)))
            .await
            .unwrap()
            .into_inner()
            .id;
        secrets.push((id, key));
    }
    app.seal_one_of_each(t).await;
    // 20 credentials, the provider's secret, the webhook secrets, the connect secret(s).
    let moved = as_before_tenant_keys(app).await;
    assert!(moved >= 23, "{moved}");
    // As a version before format 2 sealed it.
    let (id, key) = &secrets[0];
    let ring = Keyring::parse(&app.keys, None).unwrap();
    let plaintext = format!(r#"{{"api_key":{{"key":"{key}"}}}}"#);
    let aad = AadContext {
        tenant_id: &t.id,
        user_id: "u",
        credential_id: id,
    };
    app.set_blob(id, &ring.seal_legacy_format(&aad, plaintext.as_bytes()))
        .await;
    secrets
}

async fn assert_reveal_all(app: &TestApp, token: &SecretString, secrets: &[(String, String)]) {
    let mut c = app.client(token).await;
    for (id, key) in secrets {
        let r = c.reveal_credential(reveal(id)).await.unwrap().into_inner();
        assert_eq!(r.secret, Some(api_key(key)), "credential {id}");
    }
}

both_backends! {
    async fn add_activate_rewrap_retire(app) {
        let t = app.tenant("acme").await;
        let secrets = fill_every_column(&app, &t).await;
        let before = status(&app).await;
        assert_eq!(before.active_version, 1);
        for column in ["tenant_keys.sealed", "credentials.secret", "oauth_providers.client_secret",
            "webhook_endpoints.secret", "webhook_endpoints.previous_secret",
            "connect_settings.secret"] {
            assert!(before.sealed.iter().any(|c| c.column == column), "{column} counted: {before:?}");
        }
        assert!(before.sealed.iter().any(|c| c.format == 1 && c.values == 1));
        // A database from before the key lifecycle: its first start counts the
        // format-1 values under each version as that version's legacy seals.
        app.execute("DELETE FROM key_versions", &[]).await;
        app.restart_with_keys(KEY_V1).await;
        let s = status(&app).await;
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        assert_eq!((v1.state.as_str(), v1.legacy_seals), ("active", 1), "{s:?}");

        // New values are sealed under the tenant's key (format 3), itself sealed
        // under the active master key. Adding v2 to the keyring changes nothing until
        // it is activated, and activating it changes only what seals the tenant keys.
        app.restart_with_keys(&format!("{KEY_V1},{KEY_V2}")).await;
        let mut c = app.client(&t.token).await;
        let id = c.create_credential(create("u", api_key("still-v1"))).await.unwrap().into_inner().id;
        assert_eq!(app.blob(&id).await.unwrap()[..5], header(3, 0));
        assert_eq!(app.tenant_key_blob(&t.id).await.unwrap()[..5], header(2, 1));

        let s = activate(&app, 2).await.unwrap();
        assert_eq!(s.active_version, 2);
        let id = c.create_credential(create("u", api_key("now-v2"))).await.unwrap().into_inner().id;
        assert_eq!(app.blob(&id).await.unwrap()[..5], header(3, 0));

        // v1 still seals values: it cannot be retired yet.
        let err = retire(&app, 1).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("still sealed under key version 1"), "{}", err.message());
        let err = retire(&app, 2).await.unwrap_err();
        assert!(err.message().contains("is active"), "{}", err.message());

        let done = rewrap(&app).await;
        assert!(done.rewrapped >= 25, "{done:?}");
        assert_eq!((done.failed, done.remaining, done.running_elsewhere), (0, 0, false));
        let after = status(&app).await;
        assert_eq!(values_under(&after, 1), 0);
        assert!(after.sealed.iter().all(|c| match c.column.as_str() {
            "tenant_keys.sealed" => (c.format, c.key_version) == (2, 2),
            _ => (c.format, c.key_version) == (3, 0),
        }), "{after:?}");
        assert_eq!(app.tenant_key_blob(&t.id).await.unwrap()[..5], header(2, 2));
        // Rotating the master key again now re-seals one value per tenant.
        assert_eq!(rewrap(&app).await.rewrapped, 0);
        activate(&app, 1).await.unwrap();
        let done = rewrap(&app).await;
        assert_eq!((done.rewrapped, done.remaining), (1, 0), "{done:?}");
        activate(&app, 2).await.unwrap();
        assert_eq!(rewrap(&app).await.rewrapped, 1);
        assert_reveal_all(&app, &t.token, &secrets).await;
        // The rewrapped webhook and connect secrets still open where they are used.
        assert!(app.webhooks(&t.token).await.list_webhook_endpoints(pb::ListWebhookEndpointsRequest::default()).await.is_ok());
        let tenant_admin = app.token(&t, &["tenant:admin"]).await;
        assert!(app.connect(&tenant_admin).await.rotate_connect_secret(pb::RotateConnectSecretRequest { overlap_seconds: Some(60) }).await.is_ok());
        // A second pass finds nothing left.
        assert_eq!(rewrap(&app).await.rewrapped, 0);

        let s = retire(&app, 1).await.unwrap();
        assert!(s.versions.iter().any(|v| v.version == 1 && v.state == "retired"), "{s:?}");
        assert_eq!(activate(&app, 1).await.unwrap_err().code(), Code::FailedPrecondition);

        // v1 can leave the keyring; a replica without v2 refuses to start.
        app.restart_with_keys(KEY_V2).await;
        assert_reveal_all(&app, &t.token, &secrets).await;
        let config = test_config(&app.db, KEY_V1, |c| c);
        let err = credvault::App::build_with_clock(&config, Arc::new(app.clock.clone())).await.err().expect("refused");
        let message = err.to_string();
        assert!(message.contains("active master key version is 2"), "{message}");
    }

    async fn activation_waits_for_every_live_replica(app) {
        let both = format!("{KEY_V1},{KEY_V2}");
        app.restart_with_keys(&both).await;
        let old = app.spawn_peer_with_keys(KEY_V1).await;
        let err = activate(&app, 2).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let s = status(&app).await;
        let lacking: Vec<_> = s.replicas.iter().filter(|r| !r.key_versions.contains(&2)).collect();
        assert_eq!(lacking.len(), 1, "{s:?}");
        assert!(err.message().contains(&lacking[0].id), "{}", err.message());
        assert_eq!(s.active_version, 1);

        // The old replica is replaced by one holding both (a rolling restart); a
        // replica leaves the list as it stops.
        old.keys.leave().await.unwrap();
        drop(old);
        let upgraded = app.spawn_peer_with_keys(&both).await;
        activate(&app, 2).await.unwrap();
        // The peer follows the cluster at its next heartbeat.
        assert_eq!(upgraded.vault.keyring().active_version(), 1);
        upgraded.keys.beat().await.unwrap();
        assert_eq!(upgraded.vault.keyring().active_version(), 2);

        // A replica that died without leaving stops counting after three heartbeats.
        let crashed = app.spawn_peer_with_keys(KEY_V2).await;
        crashed.keys.beat().await.unwrap();
        std::mem::forget(crashed);
        assert!(status(&app).await.replicas.iter().any(|r| r.key_versions == [2]));
        app.clock.advance_ms(31_000);
        app.key_lifecycle.beat().await.unwrap();
        upgraded.keys.beat().await.unwrap();
        assert_eq!(status(&app).await.replicas.len(), 2);
        assert!(activate(&app, 1).await.is_ok());
    }

    async fn rewrap_never_overwrites_a_concurrent_update(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let id = c.create_credential(create("u", api_key("first"))).await.unwrap().into_inner().id;
        app.restart_with_keys(&format!("{KEY_V1},{KEY_V2}")).await;
        activate(&app, 2).await.unwrap();
        let store = app.vault.store().clone();
        let read = store.sealed_batch(SealedColumn::CredentialSecret, None, &header(2, 2), 100).await.unwrap();
        assert_eq!(read.len(), 1);

        // Between the job's read and its write, the secret is replaced.
        let mut c = app.client(&t.token).await;
        let mut req = update(&id);
        req.secret = Some(api_key("second"));
        c.update_credential(req).await.unwrap();

        let stale = Resealed { tenant_id: &read[0].tenant_id, id: &read[0].id, old: &read[0].blob, new: read[0].blob.clone() };
        assert_eq!(store.replace_sealed(SealedColumn::CredentialSecret, &[stale]).await.unwrap(), 0);
        let r = c.reveal_credential(reveal(&id)).await.unwrap().into_inner();
        assert_eq!(r.secret, Some(api_key("second")));
    }

    async fn rewrap_under_concurrent_updates_loses_nothing(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let mut ids = Vec::new();
        for i in 0..120 {
            ids.push(c.create_credential(create("u", api_key(&format!("v-{i}-0")))).await.unwrap().into_inner().id);
        }
        assert_eq!(as_before_tenant_keys(&app).await, 120);
        app.restart_with_keys(&format!("{KEY_V1},{KEY_V2}")).await;
        activate(&app, 2).await.unwrap();
        let job = Rewrap::new(&app.vault, UNTHROTTLED);
        let mut c = app.client(&t.token).await;
        let updates = {
            let ids = ids.clone();
            async move {
                let mut last = vec![0; ids.len()];
                for round in 1..=3 {
                    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == round % 3) {
                        let mut req = update(id);
                        req.secret = Some(api_key(&format!("v-{i}-{round}")));
                        c.update_credential(req).await.unwrap();
                        last[i] = round;
                    }
                }
                last
            }
        };
        let (pass, last) = tokio::join!(job.pass(), updates);
        let pass = pass.unwrap().unwrap();
        assert_eq!(pass.failed, 0);
        let expected: Vec<_> = ids.iter().enumerate().map(|(i, id)| (id.clone(), format!("v-{i}-{}", last[i]))).collect();
        assert_reveal_all(&app, &t.token, &expected).await;
        job.pass().await.unwrap().unwrap();
        assert_eq!(values_under(&status(&app).await, 1), 0);
    }

    async fn a_rewrap_killed_midway_leaves_all_readable_and_the_next_finishes(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let mut secrets = Vec::new();
        for i in 0..200 {
            let key = format!("k-{i}");
            secrets.push((c.create_credential(create("u", api_key(&key))).await.unwrap().into_inner().id, key));
        }
        assert_eq!(as_before_tenant_keys(&app).await, 200);
        app.restart_with_keys(&format!("{KEY_V1},{KEY_V2}")).await;
        activate(&app, 2).await.unwrap();
        // Paced at 500 values/s in batches of 10: the pass takes ~0.4 s.
        let job = Rewrap::new(&app.vault, Pace { batch: 10, rate: 500 });
        let running = tokio::spawn(async move { job.pass().await });
        while under_tenant_keys(&status(&app).await) < 30 {
            assert!(!running.is_finished(), "the pass ended early: {:?}", running.await);
        }
        running.abort();
        let left = values_under(&status(&app).await, 1);
        assert!(left > 0, "the pass finished before it was killed");
        assert_reveal_all(&app, &t.token, &secrets).await;

        // A new process takes over once the dead one's lease runs out.
        app.restart_with_keys(&format!("{KEY_V1},{KEY_V2}")).await;
        let job = Rewrap::new(&app.vault, UNTHROTTLED);
        assert!(job.pass().await.unwrap().is_none(), "the dead pass still holds the lease");
        app.clock.advance_ms(61_000);
        let done = job.pass().await.unwrap().unwrap();
        assert!(done.rewrapped >= left, "{done:?} < {left}; now {:?}", status(&app).await.sealed);
        assert_eq!(values_under(&status(&app).await, 1), 0);
        assert_reveal_all(&app, &t.token, &secrets).await;
    }

    async fn a_value_under_a_missing_key_is_reported_and_left_alone(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let id = c.create_credential(create("u", api_key("orphan"))).await.unwrap().into_inner().id;
        let ring = Keyring::parse("9:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=", None).unwrap();
        let aad = AadContext { tenant_id: &t.id, user_id: "u", credential_id: &id };
        let orphan = ring.seal(&aad, br#"{"api_key":{"key":"orphan"}}"#);
        app.set_blob(&id, &orphan).await;
        let done = rewrap(&app).await;
        assert_eq!((done.failed, done.remaining), (1, 1), "{done:?}");
        assert_eq!(app.blob(&id).await.unwrap(), orphan, "untouched");
        let (code, message) = code_of(c.reveal_credential(reveal(&id)).await);
        assert_eq!(code, Code::Unavailable);
        assert!(message.contains("master key version 9"), "{message}");
    }
}
