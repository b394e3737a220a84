//! OAuth: provider registry, the connect flow with PKCE, refresh with single flight
//! (one process and three replicas), fencing, error classes, the background
//! refresher, revocation — all against a real authorization server in-process.
use credvault::model::RefreshState;
use credvault::proto::v1 as pb;
use credvault::store::CredentialWrite;
use tonic::Code;

use crate::both_backends;
use crate::fake_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider, Scripted};
use crate::fixtures::*;
use crate::support::{Client, T0, TestApp, TestTenant, browse, client_at, logs};

const APP_URL: &str = "http://app.test/integrations/";
pub const MINUTE: i64 = 60_000;

pub async fn register(
    app: &TestApp,
    t: &TestTenant,
    fake: &FakeProvider,
    slug: &str,
) -> pb::Provider {
    let mut oauth = app.oauth(&t.token).await;
    oauth
        .create_provider(pb::CreateProviderRequest {
            slug: slug.into(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            authorization_url: fake.url("/authorize"),
            token_url: fake.url("/token"),
            revocation_url: fake.url("/revoke"),
            default_scopes: vec!["crm.read".into(), "crm.write".into()],
            allowed_redirect_urls: vec![APP_URL.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// An OAuth credential whose refresh token the provider knows, expiring in `expires_in_ms`.
pub async fn seed(
    app: &TestApp,
    c: &mut Client,
    fake: &FakeProvider,
    slug: &str,
    expires_in_ms: i64,
) -> (String, String) {
    let refresh = fake.issue_refresh_token();
    let mut req = create(
        "u-oauth",
        oauth2("seed-access", &refresh, app.clock.now() + expires_in_ms),
    );
    req.provider = slug.into();
    (
        c.create_credential(req).await.unwrap().into_inner().id,
        refresh,
    )
}

pub fn access_token(r: &pb::RevealCredentialResponse) -> String {
    match r.secret.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::secret::Kind::Oauth2(o)) => o.access_token.clone(),
        other => panic!("not an OAuth secret: {other:?}"),
    }
}

fn refresh_token_of(r: &pb::RevealCredentialResponse) -> String {
    match r.secret.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::secret::Kind::Oauth2(o)) => o.refresh_token.clone(),
        other => panic!("not an OAuth secret: {other:?}"),
    }
}

async fn events_of(app: &TestApp, tenant: &str) -> Vec<credvault::model::Event> {
    app.vault
        .store()
        .list_events(tenant, None, 100)
        .await
        .unwrap()
}

trait Now {
    fn now(&self) -> i64;
}

impl Now for credvault::clock::ManualClock {
    fn now(&self) -> i64 {
        credvault::clock::Clock::now_ms(self)
    }
}

both_backends! {
    async fn the_connect_flow_stores_a_token_and_states_are_single_use(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        let provider = register(&app, &t, &fake, "crm").await;
        assert!(provider.has_client_secret && provider.pkce);
        assert!(!format!("{provider:?}").contains(CLIENT_SECRET));
        let mut oauth = app.oauth(&t.token).await;
        let started = oauth
            .start_o_auth(pb::StartOAuthRequest {
                user_id: "user-7".into(),
                user_email: "ada@example.com".into(),
                provider: "crm".into(),
                name: "Ada's CRM".into(),
                success_redirect_url: format!("{APP_URL}done"),
                failure_redirect_url: format!("{APP_URL}failed"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(started.expires_at, Some(ts(T0 + 10 * MINUTE)));
        let url = url::Url::parse(&started.authorization_url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["scope"], "crm.read crm.write");
        assert_eq!(q["redirect_uri"], format!("http://{}/oauth/callback", app.http_addr));
        assert!(q["state"].len() >= 43, "state carries 256 bits");
        // Only the hash of the state is stored.
        assert_eq!(app.count("SELECT COUNT(*) FROM oauth_states WHERE request LIKE $1", &format!("%{}%", q["state"])).await, 0);

        // The browser: provider consent, then back to the vault's callback.
        let (_, callback) = browse(&started.authorization_url).await;
        let callback = callback.unwrap();
        let (status, landing) = browse(&callback).await;
        assert_eq!(status, 303);
        let landing = landing.unwrap();
        assert!(landing.starts_with(&format!("{APP_URL}done?credential_id=cred_")), "{landing}");
        let id = landing.rsplit('=').next().unwrap().to_owned();
        assert_eq!(fake.with(|i| (i.code_requests, i.pkce_verified)), (1, 1));

        let mut c = app.client(&t.token).await;
        let r = c.reveal_credential(reveal(&id)).await.unwrap().into_inner();
        assert!(access_token(&r).contains("-at-"));
        assert!(refresh_token_of(&r).contains("-rt-"));
        let cred = r.credential.unwrap();
        assert_eq!((cred.user_id.as_str(), cred.user_email.as_str(), cred.name.as_str()), ("user-7", "ada@example.com", "Ada's CRM"));
        assert_eq!(cred.kind, pb::CredentialKind::Oauth2 as i32);
        assert_eq!(cred.scopes, vec!["crm.read", "crm.write"]);
        assert_eq!(cred.token_expires_at, Some(ts(T0 + 3_600_000)));

        // Replaying the callback makes no token request.
        let (_, replay) = browse(&callback).await;
        assert_eq!(replay.unwrap(), format!("{APP_URL}failed?error=state_already_used"));
        assert_eq!(fake.with(|i| i.code_requests), 1);
    }

    async fn bad_callbacks_make_no_token_request(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut oauth = app.oauth(&t.token).await;
        let start = |hint: &str| pb::StartOAuthRequest {
            user_id: "u".into(),
            provider: "crm".into(),
            name: "CRM".into(),
            success_redirect_url: format!("{APP_URL}done"),
            failure_redirect_url: format!("{APP_URL}failed"),
            labels: [("hint".to_owned(), hint.to_owned())].into(),
            ..Default::default()
        };
        let callback = format!("http://{}/oauth/callback", app.http_addr);

        assert_eq!(browse(&callback).await, (400, None), "missing state");
        assert_eq!(browse(&format!("{callback}?state=nope&code=x")).await, (400, None), "unknown state");

        let started = oauth.start_o_auth(start("expired")).await.unwrap().into_inner();
        let (_, back) = browse(&started.authorization_url).await;
        app.clock.advance_ms(10 * MINUTE + 1);
        let (_, landing) = browse(&back.unwrap()).await;
        assert_eq!(landing.unwrap(), format!("{APP_URL}failed?error=expired_state"));

        let started = oauth.start_o_auth(start("denied")).await.unwrap().into_inner();
        let (_, back) = browse(&format!("{}&deny=1", started.authorization_url)).await;
        let (_, landing) = browse(&back.unwrap()).await;
        assert_eq!(landing.unwrap(), format!("{APP_URL}failed?error=access_denied"));

        assert_eq!(fake.with(|i| i.code_requests), 0, "no token request for any of them");
        assert_eq!(app.rows("credentials").await, 0);

        // Redirect URLs off the allow-list are refused up front (no open redirect).
        for bad in ["http://evil.test/integrations/", "http://app.test.evil.test/integrations/", "http://app.test/elsewhere", "/relative"] {
            let mut req = start("evil");
            req.success_redirect_url = bad.into();
            let (code, message) = code_of(oauth.start_o_auth(req).await);
            assert_eq!(code, Code::InvalidArgument, "{bad}");
            assert!(message.starts_with("success_redirect_url:"), "{message}");
        }
        let mut req = start("evil");
        req.provider = "unregistered".into();
        assert_eq!(code_of(oauth.start_o_auth(req).await).0, Code::NotFound);
    }

    async fn fifty_concurrent_reveals_refresh_once(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        // Expires in 5 minutes: inside the 10-minute margin.
        let (id, _) = seed(&app, &mut c, &fake, "crm", 5 * MINUTE).await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let mut c = c.clone();
                let id = id.clone();
                tokio::spawn(async move { c.reveal_credential(reveal(&id)).await.map(|r| r.into_inner()) })
            })
            .collect();
        let mut tokens = std::collections::HashSet::new();
        for task in tasks {
            tokens.insert(access_token(&task.await.unwrap().unwrap()));
        }
        assert_eq!(fake.refresh_requests(), 1, "exactly one refresh at the provider");
        assert_eq!(tokens.len(), 1, "every caller got the same token");
        assert!(!tokens.contains("seed-access"), "and it is the new one");
        let cred = c.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!(cred.status, pb::CredentialStatus::Active as i32);
        assert_eq!(cred.version, 2);
    }

    async fn three_replicas_refresh_once(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 5 * MINUTE).await;
        let peers = [app.spawn_peer().await, app.spawn_peer().await];
        let mut clients = vec![c.clone()];
        for peer in &peers {
            clients.push(client_at(peer.addr, &t.token).await);
        }
        let tasks: Vec<_> = (0..48)
            .map(|n| {
                let mut c = clients[n % 3].clone();
                let id = id.clone();
                tokio::spawn(async move { c.reveal_credential(reveal(&id)).await.map(|r| r.into_inner()) })
            })
            .collect();
        let mut tokens = std::collections::HashSet::new();
        for task in tasks {
            tokens.insert(access_token(&task.await.unwrap().expect("every reveal succeeds")));
        }
        assert_eq!(fake.refresh_requests(), 1, "one refresh across three replicas");
        assert_eq!(tokens.len(), 1);
        let cred = c.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!((cred.status, cred.version), (pb::CredentialStatus::Active as i32, 2));
    }

    async fn a_worker_whose_lease_lapsed_cannot_overwrite_a_newer_token(app) {
        let fake = FakeProvider::start().await;
        fake.with(|i| i.no_reuse_detection = true);
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 5 * MINUTE).await;
        let store = app.vault.store().clone();

        // Worker A takes the lease, then stalls past it.
        let now = app.clock.now();
        assert!(store.acquire_refresh_lease(&t.id, &id, 1, "worker-a", now, now + MINUTE).await.unwrap());
        let stale = store.get_sealed(&t.id, &id).await.unwrap().unwrap();
        // While A's lease is live nobody else may take it.
        assert!(!store.acquire_refresh_lease(&t.id, &id, 1, "worker-b", now, now + MINUTE).await.unwrap());
        app.clock.advance_ms(MINUTE + 1);

        // B refreshes through the API once A's lease has lapsed.
        let fresh = c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await.unwrap().into_inner();
        assert_eq!(fresh.version, 2);
        let newest = access_token(&c.reveal_credential(reveal(&id)).await.unwrap().into_inner());

        // A finally writes what it got, fenced by the version it leased: refused.
        let mut late = stale.meta.clone();
        late.version = 2;
        late.refresh = RefreshState::default();
        let write = CredentialWrite { meta: late, blob: Some(stale.blob.clone()), expected_version: 1 };
        assert!(!store.update_credential(&write, None, &[]).await.unwrap());
        let after = c.reveal_credential(reveal(&id)).await.unwrap().into_inner();
        assert_eq!(access_token(&after), newest, "the newer token survives");

        // A caller that read the row before B's refresh cannot lease it now (it would
        // hold a lease it never uses, stalling the next refresh for the lease's length).
        let now = app.clock.now();
        assert!(!store.acquire_refresh_lease(&t.id, &id, 1, "worker-c", now, now + MINUTE).await.unwrap());
        assert!(store.acquire_refresh_lease(&t.id, &id, 2, "worker-d", now, now + MINUTE).await.unwrap());
    }

    async fn invalid_grant_needs_reauth_once_and_emits_an_event(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, refresh) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        fake.revoke_family_of(&refresh);

        let (code, message) = code_of(c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await);
        assert_eq!(code, Code::FailedPrecondition);
        assert!(message.contains("re-authorization"), "{message}");
        let cred = c.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!(cred.status, pb::CredentialStatus::NeedsReauth as i32);
        let (code, _) = code_of(c.reveal_credential(reveal(&id)).await);
        assert_eq!(code, Code::FailedPrecondition);

        let events = events_of(&app, &t.id).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "credential.needs_reauth");
        let payload: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(payload["type"], "credential.needs_reauth");
        assert_eq!(payload["id"], events[0].id.as_str());
        let data = &payload["data"];
        assert_eq!(data["userId"], "u-oauth");
        assert_eq!(data["userEmail"], "u-oauth@example.com");
        assert_eq!(data["credentialId"], id.as_str());
        assert_eq!(data["credentialName"], "u-oauth's Salesforce");
        assert_eq!(data["status"], "needs_reauth");
        assert!(!events[0].payload.contains(&refresh));

        // The background refresher leaves it alone from now on.
        app.clock.advance_ms(60 * MINUTE);
        let before = fake.refresh_requests();
        let pass = credvault::workers::refresher::run_pass(&app.vault, 100, 4).await.unwrap();
        assert_eq!(pass.claimed, 0);
        assert_eq!(fake.refresh_requests(), before);
    }

    async fn a_rejected_client_marks_the_provider_once_and_keeps_credentials_active(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (a, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        let (b, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        for _ in 0..2 {
            fake.script(Scripted::Answer(401, r#"{"error":"invalid_client"}"#.into(), None));
        }
        for id in [&a, &b] {
            let (code, message) = code_of(c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await);
            assert_eq!(code, Code::FailedPrecondition);
            assert!(message.contains("invalid_client"), "{message}");
            let cred = c.get_credential(get(id)).await.unwrap().into_inner();
            assert_eq!(cred.status, pb::CredentialStatus::Active as i32);
        }
        let mut oauth = app.oauth(&t.token).await;
        let provider = oauth.get_provider(pb::GetProviderRequest { slug: "crm".into() }).await.unwrap().into_inner();
        assert_eq!(provider.last_error, "invalid_client");
        assert!(provider.last_error_at.is_some());
        let events = events_of(&app, &t.id).await;
        assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), vec!["provider.misconfigured"]);
        // The still-valid token is served meanwhile.
        let r = c.reveal_credential(reveal(&a)).await.unwrap().into_inner();
        assert_eq!(access_token(&r), "seed-access");
        // An operator's update clears the error.
        let fixed = oauth
            .update_provider(pb::UpdateProviderRequest { slug: "crm".into(), client_secret: Some(CLIENT_SECRET.into()), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((fixed.last_error.as_str(), fixed.version), ("", 2));
    }

    async fn transient_failures_back_off_and_honour_retry_after(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        let refresh = |c: &mut Client| {
            let mut c = c.clone();
            let id = id.clone();
            async move { c.refresh_credential(pb::RefreshCredentialRequest { id }).await }
        };

        let pass = |app: &TestApp| {
            let vault = app.vault.clone();
            async move { credvault::workers::refresher::run_pass(&vault, 100, 4).await.unwrap() }
        };
        // 5xx in the background refresher: still ACTIVE, and it waits for the backoff.
        app.clock.advance_ms(21 * MINUTE);
        fake.script(Scripted::Answer(503, "<html>down</html>".into(), None));
        assert_eq!(pass(&app).await.failed, 1);
        assert_eq!(pass(&app).await.claimed, 0, "backing off");
        assert_eq!(fake.refresh_requests(), 1, "no request while backing off");
        // RefreshCredential means now: it does not wait out the back-off.
        assert_eq!(refresh(&mut c).await.unwrap().into_inner().version, 2);
        assert_eq!(fake.refresh_requests(), 2);

        // 429 with Retry-After: 600 s, longer than the backoff: the refresher waits it out.
        fake.script(Scripted::Answer(429, "{}".into(), Some("600")));
        let (code, message) = code_of(refresh(&mut c).await);
        assert_eq!(code, Code::Unavailable, "{message}");
        assert!(message.contains("HTTP 429") && message.contains("next attempt after"), "{message}");
        app.clock.advance_ms(5 * MINUTE);
        assert_eq!(pass(&app).await.claimed, 0, "Retry-After not over yet");
        assert_eq!(fake.refresh_requests(), 3);
        app.clock.advance_ms(5 * MINUTE + 1_000);
        assert_eq!(pass(&app).await.refreshed, 1);
        assert_eq!(c.get_credential(get(&id)).await.unwrap().into_inner().version, 3);

        // A hang past the timeout, then an unparseable 200: both transient.
        app.clock.advance_ms(MINUTE);
        fake.script(Scripted::Hang(std::time::Duration::from_secs(3)));
        let (code, message) = code_of(refresh(&mut c).await);
        assert_eq!(code, Code::Unavailable);
        assert!(message.contains("timed out") || message.contains("reached"), "{message}");
        app.clock.advance_ms(10 * MINUTE);
        fake.script(Scripted::Answer(200, "not json at all".into(), None));
        let (code, message) = code_of(refresh(&mut c).await);
        assert_eq!(code, Code::Unavailable);
        assert!(message.contains("unparseable"), "{message}");
        let cred = c.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!(cred.status, pb::CredentialStatus::Active as i32, "transient errors never change status");
        assert!(events_of(&app, &t.id).await.is_empty());
    }

    async fn a_refresh_without_a_new_refresh_token_keeps_the_old_one_and_stores_new_scopes(app) {
        let fake = FakeProvider::start().await;
        fake.with(|i| {
            i.omit_refresh_token = true;
            i.scope_override = Some("crm.read reports.read".into());
        });
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, refresh) = seed(&app, &mut c, &fake, "crm", 5 * MINUTE).await;
        let r = c.reveal_credential(reveal(&id)).await.unwrap().into_inner();
        assert_ne!(access_token(&r), "seed-access");
        assert_eq!(refresh_token_of(&r), refresh, "the old refresh token is kept");
        let cred = r.credential.unwrap();
        assert_eq!(cred.scopes, vec!["crm.read", "reports.read"]);
        assert_eq!(cred.token_expires_at, Some(ts(T0 + 3_600_000)));
    }

    async fn the_background_refresher_works_ahead_of_the_margin(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (soon, _) = seed(&app, &mut c, &fake, "crm", 60 * MINUTE).await;
        let (later, _) = seed(&app, &mut c, &fake, "crm", 5 * 60 * MINUTE).await;
        let (broken, rt) = seed(&app, &mut c, &fake, "crm", 60 * MINUTE).await;
        fake.revoke_family_of(&rt);
        assert_eq!(c.refresh_credential(pb::RefreshCredentialRequest { id: broken.clone() }).await.unwrap_err().code(), Code::FailedPrecondition);
        let requests = fake.refresh_requests();

        // 45 minutes in: nothing is inside its margin yet.
        app.clock.advance_ms(45 * MINUTE);
        let pass = credvault::workers::refresher::run_pass(&app.vault, 100, 4).await.unwrap();
        assert_eq!(pass.claimed, 0);
        // 50 minutes in: `soon` is 10 minutes from expiry, inside its margin.
        app.clock.advance_ms(5 * MINUTE);
        let pass = credvault::workers::refresher::run_pass(&app.vault, 100, 4).await.unwrap();
        assert_eq!((pass.claimed, pass.refreshed, pass.failed), (1, 1, 0));
        assert_eq!(fake.refresh_requests(), requests + 1);
        let refreshed = c.get_credential(get(&soon)).await.unwrap().into_inner();
        assert_eq!(refreshed.version, 2);
        assert_eq!(refreshed.token_expires_at, Some(ts(T0 + 50 * MINUTE + 3_600_000)));
        assert_eq!(c.get_credential(get(&later)).await.unwrap().into_inner().version, 1);
        let broken = c.get_credential(get(&broken)).await.unwrap().into_inner();
        assert_eq!(broken.status, pb::CredentialStatus::NeedsReauth as i32);
        // Nothing else is due: a second pass does nothing.
        assert_eq!(credvault::workers::refresher::run_pass(&app.vault, 100, 4).await.unwrap().claimed, 0);
    }

    async fn deleting_revokes_at_the_provider_and_a_failed_revocation_does_not_block(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, refresh) = seed(&app, &mut c, &fake, "crm", 60 * MINUTE).await;
        let r = c.delete_credential(delete(&id)).await.unwrap().into_inner();
        let revocation = r.revocation.unwrap();
        assert!(revocation.attempted && revocation.revoked, "{revocation:?}");
        assert_eq!(fake.with(|i| i.revoked.clone()), vec![refresh]);

        fake.with(|i| i.revoke_fails = true);
        let (id, _) = seed(&app, &mut c, &fake, "crm", 60 * MINUTE).await;
        let r = c.delete_credential(delete(&id)).await.unwrap().into_inner();
        let revocation = r.revocation.unwrap();
        assert!(revocation.attempted && !revocation.revoked);
        assert!(revocation.error.contains("503"), "{}", revocation.error);
        assert_eq!(app.blob(&id).await, None, "deleted all the same");

        // API keys have nothing to revoke.
        let key = c.create_credential(create("u", api_key("k"))).await.unwrap().into_inner().id;
        assert_eq!(c.delete_credential(delete(&key)).await.unwrap().into_inner().revocation, None);
    }

    async fn tokens_never_reach_the_logs_even_when_the_provider_echoes_them(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, refresh) = seed(&app, &mut c, &fake, "crm", 5 * MINUTE).await;
        let echo = |status: u16| Scripted::Answer(status, format!(r#"{{"error":"invalid_request","error_description":"bad token {refresh}"}}"#), None);
        fake.script(echo(400));
        let _ = c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await;
        let mut oauth = app.oauth(&t.token).await;
        oauth.update_provider(pb::UpdateProviderRequest { slug: "crm".into(), ..Default::default() }).await.unwrap();
        app.clock.advance_ms(2 * 60 * MINUTE);
        fake.script(echo(500));
        let _ = c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await;
        app.clock.advance_ms(2 * 60 * MINUTE);
        let fresh = c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await;
        assert!(fresh.is_ok(), "{fresh:?}");
        let new = c.reveal_credential(reveal(&id)).await.unwrap().into_inner();
        let logs = logs().contents();
        for token in [refresh.as_str(), &access_token(&new), &refresh_token_of(&new), CLIENT_SECRET] {
            assert!(!contains(&logs, token.as_bytes()), "{token} was logged");
        }
        let stored = app.count("SELECT COUNT(*) FROM credentials WHERE last_refresh_error LIKE $1", &format!("%{refresh}%")).await;
        assert_eq!(stored, 0, "stored errors never contain tokens");
    }
}
