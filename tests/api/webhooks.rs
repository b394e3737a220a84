//! Expiry scanning and webhook delivery: signed Standard Webhooks, retries with the
//! same webhook-id, 410, dead letters and replay, many replicas, restarts, SSRF, the
//! event stream.
use std::collections::HashSet;

use credvault::proto::v1 as pb;
use credvault::service::{Caller, NewCredential};
use credvault::webhooks::signing;
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::receiver::{Answer, Gate, Received, Receiver};
use crate::support::{Backend, TestApp, TestTenant, logs, spawn_app_with};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

async fn endpoint(
    app: &TestApp,
    t: &TestTenant,
    url: &str,
    types: &[&str],
) -> (pb::WebhookEndpoint, String) {
    let mut w = app.webhooks(&t.token).await;
    let r = w
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: url.into(),
            event_types: types.iter().map(|s| (*s).to_owned()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    (r.endpoint.unwrap(), r.secret)
}

async fn expiring_key(app: &TestApp, t: &TestTenant, user: &str, in_ms: i64) -> String {
    let mut c = app.client(&t.token).await;
    let mut req = create(user, api_key("k"));
    req.expires_at = Some(ts(now(app) + in_ms));
    c.create_credential(req).await.unwrap().into_inner().id
}

fn now(app: &TestApp) -> i64 {
    credvault::clock::Clock::now_ms(&app.clock)
}

async fn scan(app: &TestApp) -> credvault::service::ScanPass {
    app.vault.scan_expiries(500).await.unwrap()
}

async fn deliver(app: &TestApp) -> credvault::service::DeliveryPass {
    credvault::workers::deliverer::run_pass(&app.vault, 100, 8)
        .await
        .unwrap()
}

fn payload(r: &Received) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap()
}

fn assert_signed(r: &Received, secret: &str) {
    assert!(
        signing::verify(secret, &r.id, r.timestamp, r.body.as_bytes(), &r.signature),
        "bad signature on {r:?}"
    );
}

both_backends! {
    async fn an_expired_credential_sends_one_signed_event_with_who_it_belongs_to(app) {
        let receiver = Receiver::start().await;
        let t = app.tenant("acme").await;
        let (_, secret) = endpoint(&app, &t, &receiver.url(), &[]).await;
        assert!(secret.starts_with("whsec_"));
        let id = expiring_key(&app, &t, "ada", HOUR).await;

        // An hour before expiry it is inside the 1-day horizon: one warning first.
        let early = scan(&app).await;
        assert_eq!((early.expired, early.warned), (0, 1));
        assert_eq!(deliver(&app).await.delivered, 1);
        let warning = payload(&receiver.received()[0]);
        assert_eq!((warning["type"].as_str(), warning["data"]["horizonSeconds"].as_i64()), (Some("credential.expiring"), Some(86_400)));
        app.clock.advance_ms(HOUR);
        assert_eq!(scan(&app).await.expired, 1);
        assert_eq!(scan(&app).await.expired, 0, "exactly once");
        let mut c = app.client(&t.token).await;
        let cred = c.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!(cred.status, pb::CredentialStatus::Expired as i32);

        let pass = deliver(&app).await;
        assert_eq!((pass.dispatched, pass.claimed, pass.delivered), (1, 1, 1));
        let got = receiver.received()[1..].to_vec();
        assert_eq!(got.len(), 1);
        assert_signed(&got[0], &secret);
        assert_eq!(got[0].timestamp, now(&app) / 1000);
        let body = payload(&got[0]);
        assert_eq!(body["type"], "credential.expired");
        assert_eq!(body["id"], got[0].id.as_str(), "webhook-id is the event id");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        let data = &body["data"];
        assert_eq!(data["userId"], "ada");
        assert_eq!(data["userEmail"], "ada@example.com");
        assert_eq!(data["credentialId"], id.as_str());
        assert_eq!(data["credentialName"], "ada's Salesforce");
        assert_eq!(data["tenantId"], t.id.as_str());
        assert_eq!(data["provider"], "salesforce");
        assert_eq!(data["status"], "expired");
        assert!(data["expiresAt"].is_string());
        assert_eq!(deliver(&app).await.claimed, 0, "nothing left to send");
        assert!(!contains(&logs().contents(), secret.as_bytes()), "the signing secret was logged");
    }

    async fn expiring_warnings_fire_once_per_horizon_and_only_for_what_will_not_refresh(app) {
        let receiver = Receiver::start().await;
        let t = app.tenant("acme").await;
        endpoint(&app, &t, &receiver.url(), &["credential.expiring"]).await;
        let key = expiring_key(&app, &t, "keyholder", 10 * DAY).await;
        let mut c = app.client(&t.token).await;
        // An OAuth token that will be refreshed is not announced; one that cannot be is.
        let mut refreshable = create("oauth-ok", oauth2("at", "rt", now(&app) + 10 * DAY));
        refreshable.provider = "crm".into();
        c.create_credential(refreshable).await.unwrap();
        let no_refresh = c
            .create_credential(create("oauth-dead-end", oauth2("at", "", now(&app) + 10 * DAY)))
            .await
            .unwrap()
            .into_inner()
            .id;

        assert_eq!(scan(&app).await.warned, 0);
        app.clock.advance_ms(3 * DAY);
        assert_eq!(scan(&app).await.warned, 2, "7-day horizon: the key and the token that cannot refresh");
        assert_eq!(scan(&app).await.warned, 0, "once per horizon");
        app.clock.advance_ms(6 * DAY);
        assert_eq!(scan(&app).await.warned, 2, "1-day horizon");
        assert_eq!(scan(&app).await.warned, 0);
        app.clock.advance_ms(DAY);
        assert_eq!(scan(&app).await.expired, 2);

        deliver(&app).await;
        let got = receiver.received();
        let horizons: Vec<(String, i64)> = got
            .iter()
            .map(|r| {
                let b = payload(r);
                (b["data"]["credentialId"].as_str().unwrap().to_owned(), b["data"]["horizonSeconds"].as_i64().unwrap())
            })
            .collect();
        assert_eq!(horizons.len(), 4, "only credential.expiring was subscribed: {horizons:?}");
        for id in [&key, &no_refresh] {
            // Deliveries run concurrently, so arrival order is not event order.
            let mut mine: Vec<i64> = horizons.iter().filter(|(c, _)| c == id).map(|(_, h)| *h).collect();
            mine.sort_unstable();
            assert_eq!(mine, vec![86_400, 7 * 86_400]);
        }

        // Renewing resets the warnings: a new expiry gets its own announcements.
        let fresh = expiring_key(&app, &t, "renewer", 30 * DAY).await;
        app.clock.advance_ms(24 * DAY);
        assert_eq!(scan(&app).await.warned, 1);
        let mut renew = update(&fresh);
        renew.expires_at = Some(ts(now(&app) + 5 * DAY));
        c.update_credential(renew).await.unwrap();
        assert_eq!(scan(&app).await.warned, 1, "the new expiry is announced again");
    }

    async fn a_failing_receiver_gets_retries_with_the_same_id_and_fresh_signatures(app) {
        let receiver = Receiver::start().await;
        receiver.script([
            Answer::RetryAfter(429, "600"),
            Answer::Status(500),
            Answer::Hang(std::time::Duration::from_secs(3)),
        ]);
        let t = app.tenant("acme").await;
        let (_, secret) = endpoint(&app, &t, &receiver.url(), &[]).await;
        expiring_key(&app, &t, "u", HOUR).await;
        app.clock.advance_ms(HOUR);
        scan(&app).await;

        let first = deliver(&app).await;
        assert_eq!((first.claimed, first.failed), (1, 1));
        // The schedule says 5 s; the receiver said Retry-After: 600.
        app.clock.advance_ms(6_000);
        assert_eq!(deliver(&app).await.claimed, 0, "Retry-After is honoured");
        app.clock.advance_ms(600_000);
        assert_eq!(deliver(&app).await.failed, 1, "500");
        app.clock.advance_ms(70_000);
        assert_eq!(deliver(&app).await.failed, 1, "the hang times out");
        app.clock.advance_ms(70_000);
        assert_eq!(deliver(&app).await.delivered, 1);

        let got = receiver.received();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|r| r.id == got[0].id), "webhook-id is stable across retries");
        assert_eq!(got.iter().map(|r| r.timestamp).collect::<HashSet<_>>().len(), 4, "each attempt has its own timestamp");
        for r in &got {
            assert_signed(r, &secret);
        }
        let mut w = app.webhooks(&t.token).await;
        let deliveries = w.list_deliveries(pb::ListDeliveriesRequest::default()).await.unwrap().into_inner().deliveries;
        assert_eq!(deliveries.len(), 1);
        assert_eq!((deliveries[0].status, deliveries[0].attempts), (pb::DeliveryStatus::Delivered as i32, 4));
    }

    async fn gone_disables_exhaustion_dead_letters_and_replay_delivers(app) {
        let gone = Receiver::start().await;
        gone.otherwise(Answer::Status(410));
        let flaky = Receiver::start().await;
        flaky.otherwise(Answer::Status(503));
        let redirecting = Receiver::start().await;
        redirecting.otherwise(Answer::Redirect);
        let t = app.tenant("acme").await;
        let (gone_ep, _) = endpoint(&app, &t, &gone.url(), &[]).await;
        let (flaky_ep, secret) = endpoint(&app, &t, &flaky.url(), &[]).await;
        let (redirect_ep, _) = endpoint(&app, &t, &redirecting.url(), &[]).await;
        expiring_key(&app, &t, "u", HOUR).await;
        app.clock.advance_ms(HOUR);
        scan(&app).await;

        for _ in 0..4 {
            deliver(&app).await;
            app.clock.advance_ms(2 * 60_000);
        }
        assert_eq!(gone.received().len(), 1, "410 is not retried");
        assert_eq!(flaky.received().len(), 4, "the whole (test) schedule");
        assert_eq!(redirecting.received().len(), 4, "3xx is a failure, not followed");
        let mut w = app.webhooks(&t.token).await;
        let endpoints = w.list_webhook_endpoints(pb::ListWebhookEndpointsRequest::default()).await.unwrap().into_inner().endpoints;
        let g = endpoints.iter().find(|e| e.id == gone_ep.id).unwrap();
        assert!(!g.enabled && g.disabled_reason.contains("410"), "{g:?}");
        let dead = w
            .list_deliveries(pb::ListDeliveriesRequest { status: pb::DeliveryStatus::Dead as i32, ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        let dead_endpoints: HashSet<_> = dead.iter().map(|d| d.endpoint_id.clone()).collect();
        assert_eq!(dead_endpoints, [gone_ep.id.clone(), flaky_ep.id.clone(), redirect_ep.id.clone()].into());

        // The flaky receiver recovers; its dead letters are replayed and arrive.
        flaky.otherwise(Answer::Status(200));
        let replayed = w
            .replay_dead_letters(pb::ReplayDeadLettersRequest { endpoint_id: flaky_ep.id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(replayed.requeued, 1);
        assert_eq!(deliver(&app).await.delivered, 1);
        let last = flaky.received().pop().unwrap();
        assert_signed(&last, &secret);
        assert_eq!(last.id, dead[0].event_id);

        // Redelivering one event sends it again with the same id.
        let again = w.redeliver_event(pb::RedeliverEventRequest { event_id: last.id.clone() }).await.unwrap().into_inner();
        assert_eq!(again.requeued, 3);
        deliver(&app).await;
        assert_eq!(flaky.received().last().unwrap().id, last.id);
        assert_eq!(gone.received().len(), 1, "a disabled endpoint gets nothing");
        let (code, _) = code_of(w.redeliver_event(pb::RedeliverEventRequest { event_id: "evt_nope".into() }).await);
        assert_eq!(code, Code::InvalidArgument);
    }


    async fn a_restart_in_the_middle_of_delivering_loses_nothing(app) {
        let receiver = Receiver::start().await;
        receiver.script([Answer::Hang(std::time::Duration::from_secs(30))]);
        let t = app.tenant("acme").await;
        let (_, secret) = endpoint(&app, &t, &receiver.url(), &[]).await;
        expiring_key(&app, &t, "u", HOUR).await;
        app.clock.advance_ms(HOUR);
        scan(&app).await;

        // The request is in flight when the process "dies".
        let arrived = receiver.arrived.notified();
        let vault = app.vault.clone();
        let pass = tokio::spawn(async move { credvault::workers::deliverer::run_pass(&vault, 100, 8).await });
        arrived.await;
        pass.abort();
        let keys = app.keys.clone();
        app.restart_with_keys(&keys).await;

        // Its lease runs out and the new process sends it again, same webhook-id.
        assert_eq!(deliver(&app).await.claimed, 0, "still leased to the dead process");
        app.clock.advance_ms(2 * 60_000);
        assert_eq!(deliver(&app).await.delivered, 1);
        let got = receiver.received();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, got[1].id);
        assert_signed(&got[1], &secret);
    }

    async fn rotating_a_secret_signs_with_both_during_the_overlap(app) {
        let receiver = Receiver::start().await;
        let t = app.tenant("acme").await;
        let (ep, old) = endpoint(&app, &t, &receiver.url(), &[]).await;
        let mut w = app.webhooks(&t.token).await;
        let rotated = w
            .rotate_webhook_secret(pb::RotateWebhookSecretRequest { id: ep.id.clone(), overlap_seconds: Some(3600) })
            .await
            .unwrap()
            .into_inner();
        assert!(!format!("{rotated:?}").contains(&rotated.secret));
        let new = rotated.secret.clone();
        assert_ne!(new, old);
        expiring_key(&app, &t, "u", 30 * 60_000).await;
        expiring_key(&app, &t, "v", 2 * HOUR).await;
        app.clock.advance_ms(30 * 60_000);
        scan(&app).await;
        deliver(&app).await;
        let during = receiver.received().pop().unwrap();
        assert_eq!(during.signature.split(' ').count(), 2);
        assert_signed(&during, &old);
        assert_signed(&during, &new);

        app.clock.advance_ms(2 * HOUR);
        scan(&app).await;
        deliver(&app).await;
        let after = receiver.received().pop().unwrap();
        assert_eq!(after.signature.split(' ').count(), 1);
        assert_signed(&after, &new);
        assert!(!signing::verify(&old, &after.id, after.timestamp, after.body.as_bytes(), &after.signature));
    }

    async fn three_replicas_expire_a_thousand_credentials_exactly_once(app) {
        let receiver = Receiver::start().await;
        let t = app.tenant("acme").await;
        endpoint(&app, &t, &receiver.url(), &["credential.expired"]).await;
        let caller = Caller { tenant_id: t.id.clone(), token_id: "seed".into(), ..Caller::default() };
        let expires = now(&app) + HOUR;
        for i in 0..1000 {
            let new = NewCredential {
                user_id: format!("user-{i}"),
                name: format!("key {i}"),
                provider: "stripe".into(),
                secret: Some(credvault::model::SecretPayload::ApiKey { key: format!("k{i}") }),
                expires_at: Some(expires),
                ..NewCredential::default()
            };
            app.vault.create_credential(&caller, new).await.unwrap();
        }
        let peers = [app.spawn_peer().await, app.spawn_peer().await];
        let vaults = [app.vault.clone(), peers[0].vault.clone(), peers[1].vault.clone()];
        app.clock.advance_ms(HOUR);

        let scans = vaults.iter().map(|v| {
            let v = v.clone();
            tokio::spawn(async move { v.scan_expiries(100).await.unwrap().expired })
        });
        let mut expired = 0;
        for s in scans {
            expired += s.await.unwrap();
        }
        assert_eq!(expired, 1000, "each credential expired by exactly one replica");
        let events = app.vault.store().list_events(&t.id, None, 2000).await.unwrap();
        assert_eq!(events.len(), 1000);
        let credentials: HashSet<_> = events.iter().map(|e| e.credential_id.clone().unwrap()).collect();
        assert_eq!(credentials.len(), 1000, "no duplicates");

        loop {
            let passes = vaults.iter().map(|v| {
                let v = v.clone();
                tokio::spawn(async move { credvault::workers::deliverer::run_pass(&v, 100, 16).await.unwrap().claimed })
            });
            let mut claimed = 0;
            for p in passes {
                claimed += p.await.unwrap();
            }
            if claimed == 0 {
                break;
            }
        }
        let got = receiver.received();
        let ids: HashSet<_> = got.iter().map(|r| r.id.clone()).collect();
        assert_eq!((got.len(), ids.len()), (1000, 1000), "each delivered exactly once");
    }

    async fn the_event_stream_resumes_from_a_cursor(app) {
        let t = app.tenant("acme").await;
        let mut w = app.webhooks(&t.token).await;
        let mut stream = w.watch_events(pb::WatchEventsRequest::default()).await.unwrap().into_inner();
        expiring_key(&app, &t, "first", HOUR).await;
        expiring_key(&app, &t, "second", 2 * HOUR).await;
        app.clock.advance_ms(HOUR);
        scan(&app).await;
        // This scan expires "first" and warns about "second" (due within a day).
        let first = stream.message().await.unwrap().unwrap();
        assert_eq!(first.r#type, "credential.expired");
        let warning = stream.message().await.unwrap().unwrap();
        assert_eq!(warning.r#type, "credential.expiring");
        app.clock.advance_ms(HOUR);
        scan(&app).await;
        let second = stream.message().await.unwrap().unwrap();
        assert_eq!(second.r#type, "credential.expired");
        assert!(first.id < warning.id && warning.id < second.id);
        drop(stream);

        // A new watch from the first event's id sees only what came after it.
        let mut resumed = w
            .watch_events(pb::WatchEventsRequest { after_event_id: first.id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resumed.message().await.unwrap().unwrap().id, warning.id);
        assert_eq!(resumed.message().await.unwrap().unwrap().id, second.id);
        let (code, _) = code_of(w.watch_events(pb::WatchEventsRequest { after_event_id: "bogus".into() }).await);
        assert_eq!(code, Code::InvalidArgument);
        let listed = w.list_events(pb::ListEventsRequest { page_size: 2, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(listed.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![first.id, warning.id]);
        let rest = w
            .list_events(pb::ListEventsRequest { page_size: 2, page_token: listed.next_page_token })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((rest.events.len(), rest.next_page_token.as_str()), (1, ""));
    }
}

/// With default settings, metadata and loopback addresses are refused at registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_by_default() {
    let app = spawn_app_with(Backend::Sqlite, |c| credvault::Config {
        webhook_allow_private_addresses: false,
        ..c
    })
    .await
    .unwrap();
    let t = app.tenant("acme").await;
    let mut w = app.webhooks(&t.token).await;
    for url in [
        "http://169.254.169.254/",
        "http://127.0.0.1/",
        "http://[::1]/hook",
        "http://10.0.0.8/",
    ] {
        let (code, message) = code_of(
            w.create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
                url: url.into(),
                event_types: vec![],
            })
            .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{url}");
        assert!(
            message.starts_with("url:") && message.contains("private"),
            "{message}"
        );
    }
    let (code, message) = code_of(
        w.create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: "https://93.184.216.34/hook".into(),
            event_types: vec!["credential.exploded".into()],
        })
        .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("event_types:"), "{message}");
}

both_backends! {
    // The slow endpoint answers only when the test releases it, well inside the
    // webhook timeout: nothing here depends on how fast anything runs.
    tweak = |c| credvault::Config { webhook_timeout_secs: 120, ..c };

    async fn a_slow_endpoint_never_delays_the_others(app) {
        let slow = Receiver::start().await;
        let release = Gate::closed();
        slow.otherwise(Answer::Hold(release.clone()));
        let fast = Receiver::start().await;
        let t = app.tenant("acme").await;
        endpoint(&app, &t, &slow.url(), &[]).await;
        let (fast_ep, _) = endpoint(&app, &t, &fast.url(), &[]).await;
        expiring_key(&app, &t, "u", HOUR).await;
        app.clock.advance_ms(HOUR);
        scan(&app).await;

        let vault = app.vault.clone();
        let pass = tokio::spawn(async move { credvault::workers::deliverer::run_pass(&vault, 100, 8).await.unwrap() });
        // The fast delivery is recorded while the slow request, which has
        // arrived, is held open.
        let mut w = app.webhooks(&t.token).await;
        let recorded = async {
            loop {
                let fast_deliveries = w
                    .list_deliveries(pb::ListDeliveriesRequest { endpoint_id: fast_ep.id.clone(), ..Default::default() })
                    .await
                    .unwrap()
                    .into_inner()
                    .deliveries;
                let fast_delivered = fast_deliveries.first().is_some_and(|d| d.status == pb::DeliveryStatus::Delivered as i32);
                if fast_delivered && !slow.received().is_empty() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), recorded)
            .await
            .expect("the fast endpoint's delivery was recorded while the slow one was held");
        assert!(!pass.is_finished(), "the slow attempt is still in flight");
        assert_eq!(slow.received().len(), 1);
        release.open();
        let pass = pass.await.unwrap();
        assert_eq!((pass.delivered, pass.failed), (1, 1));
    }
}

both_backends! {
    // Retention: finished deliveries and then their events go after
    // `event_retention_days`; pending work and young rows stay; one replica at a
    // time runs the pass (the lease), and the other takes over once it runs out.
    async fn retention_prunes_old_events_and_finished_deliveries_under_a_lease(app) {
        use credvault::service::retention::Retention;
        let hour = std::time::Duration::from_secs(3600);
        let (ok, failing) = (Receiver::start().await, Receiver::start().await);
        failing.otherwise(Answer::Status(500));
        let t = app.tenant("acme").await;
        endpoint(&app, &t, &ok.url(), &[]).await;
        endpoint(&app, &t, &failing.url(), &[]).await;
        expiring_key(&app, &t, "ada", 1_000).await;
        app.clock.advance_ms(2_000);
        assert_eq!(scan(&app).await.expired, 1);
        let pass = deliver(&app).await;
        assert_eq!((pass.delivered, pass.failed), (1, 1), "one delivered, one still pending");

        // 31 days on, a young event joins the old one.
        app.clock.advance_ms(31 * DAY);
        expiring_key(&app, &t, "bob", 1_000).await;
        app.clock.advance_ms(2_000);
        scan(&app).await;
        deliver(&app).await;
        assert_eq!((app.rows("events").await, app.rows("deliveries").await), (2, 4));

        let mine = Retention::new(&app.vault, hour);
        let pruned = mine.pass().await.unwrap().expect("nobody else holds the lease");
        assert_eq!((pruned.deliveries, pruned.events), (1, 0), "the old event still has a pending delivery");
        let peer = app.spawn_peer().await;
        let theirs = Retention::new(&peer.vault, hour);
        assert!(theirs.pass().await.unwrap().is_none(), "the lease is the first replica's for an hour");

        // The old pending delivery gave up long ago (as its row now says); once the
        // lease runs out the peer prunes it
        // and then its event, and leaves the young ones.
        let old = format!(
            "UPDATE deliveries SET status = 'dead', updated_at = created_at \
             WHERE status = 'pending' AND created_at < {}",
            now(&app) - 30 * DAY
        );
        assert_eq!(app.execute(&old, &[]).await, 1);
        app.clock.advance_ms(HOUR + 1);
        let pruned = theirs.pass().await.unwrap().expect("the lease ran out");
        assert_eq!((pruned.deliveries, pruned.events), (1, 1));
        assert!(mine.pass().await.unwrap().is_none(), "now the peer holds it");
        assert_eq!((app.rows("events").await, app.rows("deliveries").await), (1, 2));
        let mut w = app.webhooks(&t.token).await;
        let events = w.list_events(pb::ListEventsRequest::default()).await.unwrap().into_inner().events;
        assert_eq!(events.len(), 1, "the young event is still listed");
        let text = scrape_text(app.http_addr).await;
        // This replica's own counts: the first pass, which deleted one delivery.
        assert!(text.contains("credvault_retention_pruned_total{kind=\"deliveries\"} 1"), "{text}");
        assert!(text.contains("credvault_retention_pruned_total{kind=\"events\"} 0"), "{text}");
    }
}

both_backends! {
    tweak = |c| credvault::Config { event_retention_days: 0, ..c };
    async fn retention_zero_keeps_events_forever(app) {
        let t = app.tenant("acme").await;
        let ok = Receiver::start().await;
        endpoint(&app, &t, &ok.url(), &[]).await;
        expiring_key(&app, &t, "ada", 1_000).await;
        app.clock.advance_ms(2_000);
        scan(&app).await;
        deliver(&app).await;
        app.clock.advance_ms(3650 * DAY);
        let retention = credvault::service::retention::Retention::new(&app.vault, std::time::Duration::from_secs(60));
        let pruned = retention.pass().await.unwrap().unwrap();
        assert_eq!((pruned.deliveries, pruned.events), (0, 0));
        assert_eq!((app.rows("events").await, app.rows("deliveries").await), (1, 1));
    }
}

async fn scrape_text(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
