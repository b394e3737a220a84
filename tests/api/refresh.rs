//! Refresh rules found wanting by black-box testing (issue 8): reveal never hands out
//! an expired access token, fixing a provider ends the back-off, and concurrent
//! forced refreshes share one flight, in one process and across replicas.
use credvault::clock::Clock as _;
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::both_backends;
use crate::fake_provider::{CLIENT_SECRET, FakeProvider, Scripted};
use crate::fixtures::*;
use crate::oauth::{MINUTE, access_token, register, seed};
use crate::support::{Client, TestApp, client_at};

async fn reveal_of(
    c: &mut Client,
    id: &str,
) -> Result<pb::RevealCredentialResponse, tonic::Status> {
    c.reveal_credential(reveal(id))
        .await
        .map(|r| r.into_inner())
}

fn token_expiry(r: &pb::RevealCredentialResponse) -> i64 {
    let at = r.credential.as_ref().unwrap().token_expires_at.unwrap();
    at.seconds * 1000 + i64::from(at.nanos / 1_000_000)
}

async fn pass(app: &TestApp) -> credvault::workers::refresher::Pass {
    credvault::workers::refresher::run_pass(&app.vault, 100, 4)
        .await
        .unwrap()
}

both_backends! {
    async fn reveal_refreshes_an_expired_access_token_whatever_the_back_off(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;

        // A forced refresh fails: the credential backs off (30 s and more).
        fake.script(Scripted::Answer(503, "{}".into(), None));
        let (code, message) = code_of(c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await);
        assert_eq!(code, Code::Unavailable, "{message}");
        // The access token runs out while the credential is still backing off.
        app.clock.advance_ms(30 * MINUTE + 1_000);
        let now = app.clock.now_ms();
        let r = reveal_of(&mut c, &id).await.expect("an expired token is refreshed at once");
        assert_ne!(access_token(&r), "seed-access");
        assert!(token_expiry(&r) > now, "never a token past its expiry");
        assert_eq!(fake.refresh_requests(), 2);

        // When that refresh fails, the caller is told why, never given the old token.
        app.clock.advance_ms(61 * MINUTE);
        fake.script(Scripted::Answer(503, "{}".into(), None));
        let (code, message) = code_of(c.reveal_credential(reveal(&id)).await);
        assert_eq!(code, Code::Unavailable, "{message}");
        assert!(message.contains("access token expired") && message.contains("HTTP 503"), "{message}");
        // Again at once, still expired, still backing off: tried again, now misconfigured.
        fake.script(Scripted::Answer(401, r#"{"error":"invalid_client"}"#.into(), None));
        let (code, message) = code_of(c.reveal_credential(reveal(&id)).await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains("access token expired") && message.contains("invalid_client"), "{message}");
        assert_eq!(fake.refresh_requests(), 4);
    }

    async fn fixing_the_provider_ends_the_back_off_of_its_credentials(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        app.clock.advance_ms(21 * MINUTE);
        fake.script(Scripted::Answer(401, r#"{"error":"invalid_client"}"#.into(), None));
        assert_eq!(pass(&app).await.failed, 1);
        assert_eq!(pass(&app).await.claimed, 0, "misconfigured: left alone for an hour");

        // The operator fixes the provider: its credentials are due again at once.
        let mut oauth = app.oauth(&t.token).await;
        let fixed = oauth
            .update_provider(pb::UpdateProviderRequest {
                slug: "crm".into(),
                client_secret: Some(CLIENT_SECRET.into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(fixed.last_error.is_empty());
        let p = pass(&app).await;
        assert_eq!((p.claimed, p.refreshed), (1, 1), "the back-off ended with the fix");
        assert_eq!(fake.refresh_requests(), 2);
        let cred = c.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!(cred.version, 2);
    }

    async fn concurrent_forced_refreshes_across_replicas_make_one_request(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        let peers = [app.spawn_peer().await, app.spawn_peer().await];
        let mut clients = vec![c.clone()];
        for peer in &peers {
            clients.push(client_at(peer.addr, &t.token).await);
        }
        // The provider takes a while, so the calls overlap the one flight.
        fake.script(Scripted::Delay(std::time::Duration::from_millis(300)));
        let calls: Vec<_> = (0..30)
            .map(|i| {
                let mut c = clients[i % clients.len()].clone();
                let id = id.clone();
                tokio::spawn(async move { c.refresh_credential(pb::RefreshCredentialRequest { id }).await })
            })
            .collect();
        for call in calls {
            let cred = call
                .await
                .unwrap()
                .unwrap_or_else(|s| panic!("every caller shares the flight's result: {s:?}"))
                .into_inner();
            assert_eq!(cred.version, 2, "all callers see the one refresh");
        }
        assert_eq!(fake.refresh_requests(), 1, "30 calls on 3 replicas, one request");
        // A call after the flight is a new request: it refreshes again.
        c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await.unwrap();
        assert_eq!(fake.refresh_requests(), 2);
    }

    async fn concurrent_reveals_of_an_expired_token_share_a_failure(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        app.clock.advance_ms(31 * MINUTE);
        fake.script(Scripted::Hang(std::time::Duration::from_millis(1_500)));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let mut c = c.clone();
                let id = id.clone();
                tokio::spawn(async move { c.reveal_credential(reveal(&id)).await })
            })
            .collect();
        for call in calls {
            let (code, message) = code_of(call.await.unwrap());
            assert_eq!(code, Code::Unavailable, "{message}");
        }
        assert_eq!(fake.refresh_requests(), 1, "the waiting reveals shared the failed attempt");
    }
}
