//! Shutdown and long-lived streams (issue 8): SIGTERM completes with streams open,
//! within the drain deadline; WatchEvents notices a revoked token; reflection speaks
//! v1 and v1alpha.
use std::time::Duration;

use credvault::proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::both_backends;
use crate::fake_provider::{FakeProvider, Scripted};
use crate::oauth::{MINUTE, register, seed};
use crate::support::{Backend, spawn_app_with};

/// Long enough that only a hang would reach it.
const PATIENCE: Duration = Duration::from_secs(30);

both_backends! {
    async fn shutdown_ends_open_streams_and_completes(app) {
        let t = app.tenant("acme").await;
        let mut health = app.health().await;
        let mut statuses = health
            .watch(HealthCheckRequest { service: String::new() })
            .await
            .unwrap()
            .into_inner();
        let first = statuses.next().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32);
        let mut w = app.webhooks(&t.token).await;
        let mut events = w.watch_events(pb::WatchEventsRequest::default()).await.unwrap().into_inner();

        let took = tokio::time::timeout(PATIENCE, app.shutdown()).await.expect("shutdown completes");
        assert!(took < Duration::from_secs(5), "the streams ended; the drain did not wait out its grace ({took:?})");
        // Health watchers hear NOT_SERVING, then the stream ends cleanly.
        let mut last = None;
        while let Some(item) = statuses.next().await {
            last = Some(item.expect("a clean end, not a cut connection").status);
        }
        assert_eq!(last, Some(ServingStatus::NotServing as i32));
        // Event watchers get UNAVAILABLE, with what to do.
        let end = events.next().await.unwrap().unwrap_err();
        assert_eq!(end.code(), Code::Unavailable, "{end:?}");
        assert!(end.message().contains("shutting down"), "{}", end.message());
    }

    async fn watch_events_ends_when_its_token_is_revoked(app) {
        let t = app.tenant("acme").await;
        let watcher = app.token(&t, &["webhooks:read"]).await;
        let mut w = app.webhooks(&watcher).await;
        let mut events = w.watch_events(pb::WatchEventsRequest::default()).await.unwrap().into_inner();
        let mut admin = app.admin(&app.admin_token).await;
        let id = admin
            .list_service_tokens(pb::ListServiceTokensRequest { tenant: "acme".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .tokens
            .into_iter()
            .find(|t| t.scopes == ["webhooks:read"])
            .unwrap()
            .id;
        admin.revoke_service_token(pb::RevokeServiceTokenRequest { id }).await.unwrap();
        // The stream re-checks its token every 30 s of the vault's clock.
        app.clock.advance_ms(31_000);
        let end = tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("the stream ends")
            .unwrap()
            .unwrap_err();
        assert_eq!(end.code(), Code::Unauthenticated, "{end:?}");
        assert!(events.next().await.is_none());
    }

    async fn reflection_serves_v1_and_v1alpha(app) {
        use tonic_reflection::pb::{v1, v1alpha};
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let list = v1alpha::ServerReflectionRequest {
            message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
            ..Default::default()
        };
        let mut old = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let mut answers = old.server_reflection_info(tokio_stream::once(list)).await.unwrap().into_inner();
        let answer = format!("{:?}", answers.next().await.unwrap().unwrap());
        assert!(answer.contains("credvault.v1.CredentialService"), "{answer}");
        let list = v1::ServerReflectionRequest {
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
            ..Default::default()
        };
        let mut new = v1::server_reflection_client::ServerReflectionClient::new(channel);
        let mut answers = new.server_reflection_info(tokio_stream::once(list)).await.unwrap().into_inner();
        let answer = format!("{:?}", answers.next().await.unwrap().unwrap());
        assert!(answer.contains("credvault.v1.WebhookService"), "{answer}");
    }
}

/// A request that would hold the drain open past the deadline does not hold shutdown:
/// `App::run` returns at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_bounds_shutdown() {
    let mut app = spawn_app_with(Backend::Sqlite, |c| credvault::Config {
        shutdown_grace_secs: 1,
        provider_timeout_secs: 60,
        ..c
    })
    .await
    .unwrap();
    let fake = FakeProvider::start().await;
    let t = app.tenant("acme").await;
    register(&app, &t, &fake, "crm").await;
    let mut c = app.client(&t.token).await;
    let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
    fake.script(Scripted::Hang(Duration::from_secs(50)));
    let stuck = tokio::spawn(async move {
        c.refresh_credential(pb::RefreshCredentialRequest { id })
            .await
    });
    while fake.refresh_requests() == 0 {
        tokio::task::yield_now().await;
    }
    let took = tokio::time::timeout(PATIENCE, app.shutdown())
        .await
        .expect("shutdown completes");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // `run` has returned: in `credvault serve` the process exits here, ending the call.
    stuck.abort();
}

/// A webhook attempt in flight when shutdown begins is finished and recorded (its
/// lease released), not aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_finish_the_item_in_hand() {
    use crate::receiver::{Answer, Gate, Receiver};
    let mut app = spawn_app_with(Backend::Sqlite, |c| credvault::Config {
        deliver_interval_ms: 20,
        webhook_timeout_secs: 120,
        shutdown_grace_secs: 60,
        ..c
    })
    .await
    .unwrap();
    let receiver = Receiver::start().await;
    let release = Gate::closed();
    receiver.otherwise(Answer::Hold(release.clone()));
    let t = app.tenant("acme").await;
    app.webhooks(&t.token)
        .await
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: receiver.url(),
            event_types: vec![],
        })
        .await
        .unwrap();
    let mut c = app.client(&t.token).await;
    let mut req = crate::fixtures::create("ada", crate::fixtures::api_key("k"));
    req.expires_at = Some(crate::fixtures::ts(
        credvault::clock::Clock::now_ms(&app.clock) + 1_000,
    ));
    c.create_credential(req).await.unwrap();
    app.clock.advance_ms(2_000);
    let arrived = receiver.arrived.notified();
    app.vault.scan_expiries(100).await.unwrap();
    tokio::time::timeout(PATIENCE, arrived)
        .await
        .expect("the deliverer sent the event");

    // Shutdown begins while the attempt is held open; it waits for that attempt.
    let mut shutdown = tokio::spawn(async move {
        app.shutdown().await;
        app
    });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut shutdown).await;
    assert!(early.is_err(), "shutdown waits for the attempt in hand");
    release.open();
    let app = tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("then completes")
        .unwrap();
    let recorded = "SELECT COUNT(*) FROM deliveries \
                    WHERE attempts = 1 AND lease_owner IS NULL AND last_status = 500 AND id <> $1";
    assert_eq!(
        app.count(recorded, "").await,
        1,
        "the attempt was recorded and its lease released"
    );
}
