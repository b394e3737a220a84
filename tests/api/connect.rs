//! Hosted connect over plain HTTP: links over gRPC, the page's forms, verification,
//! OAuth bound to the browser, results by redirect, event and signed notification,
//! and what the page refuses. (tests/api/browser.rs drives the same page in Chromium.)
use credvault::proto::v1 as pb;
use credvault::webhooks::signing;
use tonic::Code;

use crate::both_backends;
use crate::connect_kit::*;
use crate::fake_provider::FakeProvider;
use crate::fixtures::*;
use crate::receiver::Receiver;
use crate::support::{TestApp, TestTenant, logs};

pub async fn deliver(app: &TestApp) {
    credvault::workers::deliverer::run_pass(&app.vault, 100, 8)
        .await
        .unwrap();
}

fn now(app: &TestApp) -> i64 {
    credvault::clock::Clock::now_ms(&app.clock)
}

struct Setup {
    t: TestTenant,
    api: KeyApi,
    landing: Landing,
    receiver: Receiver,
}

async fn setup(app: &TestApp) -> Setup {
    let t = app.tenant("acme").await;
    let api = KeyApi::start().await;
    let landing = Landing::start().await;
    let receiver = Receiver::start().await;
    settings(app, &t, &landing, false).await;
    key_provider(app, &t, "stripe-test", "Stripe <b>Test</b>", &api).await;
    Setup {
        t,
        api,
        landing,
        receiver,
    }
}

async fn mint(
    app: &TestApp,
    s: &Setup,
    req: pb::CreateConnectLinkRequest,
) -> pb::CreateConnectLinkResponse {
    let mut c = app.connect(&s.t.token).await;
    c.create_connect_link(req).await.unwrap().into_inner()
}

both_backends! {
    async fn an_api_key_is_verified_stored_redirected_and_notified(app) {
        let s = setup(&app).await;
        // A registered endpoint that subscribes to connect events gets them too.
        let subscriber = Receiver::start().await;
        app.webhooks(&s.t.token).await.create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: subscriber.url(),
            event_types: vec!["connect.succeeded".into()],
        }).await.unwrap();
        let minted = mint(&app, &s, link_request("u1", &["stripe-test"], &s.landing, &s.receiver.url())).await;
        assert!(minted.signing_secret.starts_with("whsec_"), "the first notify link shows the secret");
        let link = minted.link.unwrap();
        assert_eq!(link.status(), pb::ConnectLinkStatus::Pending);
        let token = token_of(&minted.url);
        assert!(token.len() >= 43, "256-bit token");
        let path = format!("/connect/{token}");

        let mut page = Page::new(&app);
        let shown = page.get(&minted.url).await;
        assert_eq!(shown.status, 200);
        assert!(shown.body.contains("Secret key"), "the only provider's form is shown");
        assert!(!shown.body.contains("<b>Test") && shown.body.contains("Stripe &#60;b&#62;Test"), "display names are escaped");
        assert!(page.cookie.as_deref().unwrap().starts_with("cv_browser="));
        let csp = shown.headers["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(shown.headers["cache-control"], "no-store");
        assert_eq!(shown.headers["referrer-policy"], "no-referrer");
        assert_eq!(shown.headers["x-content-type-options"], "nosniff");
        let csrf = csrf(&shown.body);

        // Reloading does not consume the link.
        assert_eq!(page.get(&minted.url).await.status, 200);

        let wrong = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", BAD_KEY)]).await;
        assert_eq!(wrong.status, 422);
        assert!(wrong.body.contains("rejected"), "{}", wrong.body);
        assert!(!wrong.body.contains(BAD_KEY), "a typed secret is never echoed");
        assert_eq!(app.rows("credentials").await, 0);

        let pattern = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", "nope")]).await;
        assert_eq!(pattern.status, 422);
        assert!(pattern.body.contains("aria-invalid=\"true\"") && pattern.body.contains("f-api_key-error"));
        assert_eq!(s.api.requests(), 1, "a malformed key is not sent to the provider");

        let right = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", GOOD_KEY), ("account", "acme-eu")]).await;
        assert_eq!(right.status, 303, "{}", right.body);
        let location = url::Url::parse(right.location.as_deref().unwrap()).unwrap();
        assert!(location.as_str().starts_with(&s.landing.url("/done")));
        let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(query["name"], "app-user-u1");
        let id = query["credential_id"].clone();

        let mut c = app.client(&s.t.token).await;
        let revealed = c.reveal_credential(reveal(&id)).await.unwrap().into_inner();
        assert_eq!(revealed.secret, Some(api_key(GOOD_KEY)));
        let credential = revealed.credential.unwrap();
        assert_eq!(credential.user_id, "u1");
        assert_eq!(credential.name, "Billing key");
        assert_eq!(credential.provider, "stripe-test");
        assert_eq!(credential.labels["account"], "acme-eu", "non-secret fields become labels");

        let again = page.get(&minted.url).await;
        assert_eq!(again.status, 410);
        assert!(again.body.contains("already used") && !again.body.contains("<form"));

        let mut connect = app.connect(&s.t.token).await;
        let done = connect.get_connect_link(pb::GetConnectLinkRequest { id: link.id.clone() }).await.unwrap().into_inner();
        assert_eq!(done.status(), pb::ConnectLinkStatus::Completed);
        assert_eq!(done.credential_id, id);
        assert_eq!(done.failed_attempts, 1);

        deliver(&app).await;
        let received = s.receiver.received();
        assert_eq!(received.len(), 1);
        assert!(signing::verify(&minted.signing_secret, &received[0].id, received[0].timestamp, received[0].body.as_bytes(), &received[0].signature));
        let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
        assert_eq!(body["type"], "connect.succeeded");
        let data = &body["data"];
        assert_eq!(data["status"], "CREATION_SUCCESS");
        assert_eq!(data["name"], "app-user-u1");
        assert_eq!(data["linkId"], link.id.as_str());
        assert_eq!(data["credentialId"], id.as_str());
        assert_eq!(data["credentialName"], "Billing key");
        assert_eq!(data["userId"], "u1");
        assert_eq!(data["userEmail"], "u1@example.com");
        assert_eq!(data["provider"], "stripe-test");
        let subscribed = subscriber.received();
        assert_eq!(subscribed.len(), 1);
        assert_eq!(subscribed[0].id, received[0].id, "the same event");
        let audited = app.count("SELECT COUNT(*) FROM audit_log WHERE credential_id = $1", &link.id).await;
        assert_eq!(audited, 2, "link creation and completion are audited");

        // What the user typed is nowhere but in the sealed row and the reveal.
        let dump = app.database_dump().await;
        for canary in [GOOD_KEY.as_bytes(), BAD_KEY.as_bytes()] {
            assert!(memchr::memmem::find(&dump, canary).is_none(), "typed key in the database in clear");
            assert!(memchr::memmem::find(&logs().contents(), canary).is_none(), "typed key in the logs");
        }
        assert!(!received[0].body.contains(GOOD_KEY));
        assert!(!location.as_str().contains(GOOD_KEY));
    }

    async fn links_are_validated_before_anything_is_stored(app) {
        let s = setup(&app).await;
        let mut c = app.connect(&s.t.token).await;
        let base = link_request("u1", &["stripe-test"], &s.landing, "");
        let cases: Vec<(pb::CreateConnectLinkRequest, Code, &str)> = vec![
            (pb::CreateConnectLinkRequest { expires_at: Some(ts(now(&app) + 30_000)), ..base.clone() }, Code::InvalidArgument, "expires_at"),
            (pb::CreateConnectLinkRequest { expires_at: Some(ts(now(&app) + 25 * 3_600_000)), ..base.clone() }, Code::InvalidArgument, "expires_at"),
            (pb::CreateConnectLinkRequest { success_redirect_url: "https://evil.example/done".into(), ..base.clone() }, Code::InvalidArgument, "success_redirect_url"),
            (pb::CreateConnectLinkRequest { failure_redirect_url: format!("{}.evil.example/x", s.landing.origin()), ..base.clone() }, Code::InvalidArgument, "failure_redirect_url"),
            (pb::CreateConnectLinkRequest { notify_url: "ftp://hooks.example/x".into(), ..base.clone() }, Code::InvalidArgument, "notify_url"),
            (pb::CreateConnectLinkRequest { providers: vec!["nope".into()], ..base.clone() }, Code::FailedPrecondition, "nope"),
            (pb::CreateConnectLinkRequest { providers: vec![], ..base.clone() }, Code::InvalidArgument, "providers"),
            (pb::CreateConnectLinkRequest { name: "x".repeat(256), ..base.clone() }, Code::InvalidArgument, "name"),
            (pb::CreateConnectLinkRequest { r#type: pb::ConnectLinkType::Reconnect.into(), ..base.clone() }, Code::InvalidArgument, "reconnect_credential_id"),
            (pb::CreateConnectLinkRequest { user_id: String::new(), ..base.clone() }, Code::InvalidArgument, "user_id"),
        ];
        for (req, code, field) in cases {
            let err = c.create_connect_link(req).await.unwrap_err();
            assert_eq!(err.code(), code, "{field}: {err:?}");
            assert!(err.message().contains(field), "{field}: {}", err.message());
        }
        assert_eq!(app.rows("connect_links").await, 0);

        // A reveal-less token can mint links but not read secrets.
        let writer = app.token(&s.t, &["connect:write"]).await;
        let minted = app.connect(&writer).await.create_connect_link(base).await.unwrap().into_inner();
        let expires = minted.expires_at.unwrap().seconds * 1000;
        assert_eq!(expires, (now(&app) + 30 * 60_000) / 1000 * 1000, "default 30 minutes");
        let err = app.client(&writer).await.list_credentials(pb::ListCredentialsRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);

        // Under a custom domain, links are minted there.
        let admin = app.token(&s.t, &["tenant:admin"]).await;
        let mut settings = app.connect(&admin).await.get_connect_settings(pb::GetConnectSettingsRequest {}).await.unwrap().into_inner();
        settings.custom_base_url = "https://connect.acme.example".into();
        let version = settings.version;
        app.connect(&admin).await.set_connect_settings(pb::SetConnectSettingsRequest { settings: Some(settings.clone()), expected_version: Some(version) }).await.unwrap();
        let stale = app.connect(&admin).await.set_connect_settings(pb::SetConnectSettingsRequest { settings: Some(settings.clone()), expected_version: Some(version) }).await.unwrap_err();
        assert_eq!(stale.code(), Code::Aborted);
        settings.primary_color = "red;}body{display:none".into();
        let bad = app.connect(&admin).await.set_connect_settings(pb::SetConnectSettingsRequest { settings: Some(settings), expected_version: None }).await.unwrap_err();
        assert!(bad.message().starts_with("primary_color"), "{}", bad.message());
        let minted = c.create_connect_link(link_request("u3", &["stripe-test"], &s.landing, "")).await.unwrap().into_inner();
        assert!(minted.url.starts_with("https://connect.acme.example/connect/"), "{}", minted.url);
    }

    async fn expired_and_revoked_links_show_a_page_never_the_form(app) {
        let s = setup(&app).await;
        let expiring = mint(&app, &s, link_request("u1", &["stripe-test"], &s.landing, "")).await;
        let revoked = mint(&app, &s, link_request("u2", &["*"], &s.landing, "")).await;
        let mut c = app.connect(&s.t.token).await;
        let r = c.revoke_connect_link(pb::RevokeConnectLinkRequest { id: revoked.link.unwrap().id }).await.unwrap().into_inner();
        assert_eq!(r.status(), pb::ConnectLinkStatus::Revoked);

        let mut page = Page::new(&app);
        let before = page.get(&expiring.url).await;
        let csrf = csrf(&before.body);
        app.clock.advance_ms(31 * 60_000);
        for (url, text) in [(&expiring.url, "expired"), (&revoked.url, "cancelled")] {
            let shown = page.get(url).await;
            assert_eq!(shown.status, 410);
            assert!(shown.body.contains(text), "{}", shown.body);
            assert!(!shown.body.contains("<form"));
        }
        let posted = page.post(&format!("/connect/{}", token_of(&expiring.url)), &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(posted.status, 410);
        assert_eq!(s.api.requests(), 0);
        assert_eq!(app.rows("credentials").await, 0);
        let unknown = page.get(&format!("http://{}/connect/not-a-token", app.http_addr)).await;
        assert_eq!(unknown.status, 404);

        let listed = c.list_connect_links(pb::ListConnectLinksRequest { status: pb::ConnectLinkStatus::Expired.into(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(listed.links.len(), 1);
        assert_eq!(listed.links[0].user_id, "u1");
    }

    async fn reconnect_replaces_the_secret_in_place(app) {
        let s = setup(&app).await;
        let mut c = app.client(&s.t.token).await;
        let mut req = create("u1", api_key("sk_test_old"));
        req.provider = "stripe-test".into();
        let old = c.create_credential(req).await.unwrap().into_inner();
        app.execute("UPDATE credentials SET status = 'needs_reauth' WHERE id = $1", &[&old.id]).await;

        let mut reconnect = link_request("u1", &[], &s.landing, &s.receiver.url());
        reconnect.r#type = pb::ConnectLinkType::Reconnect.into();
        reconnect.reconnect_credential_id = old.id.clone();
        let mut wrong_user = reconnect.clone();
        wrong_user.user_id = "u2".into();
        let err = app.connect(&s.t.token).await.create_connect_link(wrong_user).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let minted = mint(&app, &s, reconnect).await;

        let mut page = Page::new(&app);
        let shown = page.get(&minted.url).await;
        assert!(shown.body.contains("Reconnect"), "{}", shown.body);
        let done = page.post(&format!("/connect/{}", token_of(&minted.url)), &[("csrf", &csrf(&shown.body)), ("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(done.status, 303, "{}", done.body);
        assert!(done.location.unwrap().contains(&format!("credential_id={}", old.id)));
        let after = c.reveal_credential(reveal(&old.id)).await.unwrap().into_inner();
        assert_eq!(after.secret, Some(api_key(GOOD_KEY)));
        let meta = after.credential.unwrap();
        assert_eq!(meta.status(), pb::CredentialStatus::Active);
        assert!(meta.version > old.version);
        assert_eq!(app.rows("credentials").await, 1);

        deliver(&app).await;
        let body: serde_json::Value = serde_json::from_str(&s.receiver.received()[0].body).unwrap();
        assert_eq!(body["data"]["status"], "RECONNECTED");
    }

    async fn oauth_through_the_page_is_bound_to_the_browser(app) {
        let s = setup(&app).await;
        let fake = FakeProvider::start().await;
        oauth_provider(&app, &s.t, &fake).await;

        for (same_browser, expected) in [(true, "credential_id="), (false, "error=browser_mismatch")] {
            let minted = mint(&app, &s, link_request("u1", &["crm", "stripe-test"], &s.landing, "")).await;
            let mut page = Page::new(&app);
            let picker = page.get(&minted.url).await;
            assert!(picker.body.contains("Acme CRM Cloud") && picker.body.contains("?provider=crm"));
            let form = page.get(&format!("{}?provider=crm", minted.url)).await;
            assert!(form.body.contains("Continue to Acme CRM Cloud"));
            let started = page.post(&format!("/connect/{}/oauth", token_of(&minted.url)), &[("csrf", &csrf(&form.body)), ("provider", "crm")]).await;
            assert_eq!(started.status, 303);
            let consent = started.location.unwrap();
            assert!(consent.starts_with(&fake.url("/authorize")));
            // The provider sends the browser back with a code.
            let back = page.get(&consent).await.location.unwrap();
            if !same_browser {
                page.cookie = Some("cv_browser=someone-elses-browser-nonce-0123456789".into());
            }
            let done = page.get(&back).await;
            assert_eq!(done.status, 303, "{}", done.body);
            let location = done.location.unwrap();
            assert!(location.contains(expected), "{location}");
            assert!(location.contains("name=app-user-u1"));
        }
        assert_eq!(app.rows("credentials").await, 1, "the mismatched browser stored nothing");
        assert_eq!(fake.with(|i| i.code_requests), 1, "no code exchange for the other browser");
    }

    async fn hostile_and_malformed_posts_store_nothing(app) {
        let s = setup(&app).await;
        let mut req = link_request("u1", &["stripe-test"], &s.landing, "");
        req.success_redirect_url = String::new();
        req.failure_redirect_url = String::new();
        req.name = "<script>alert(1)</script>".into();
        req.credential_name = "\"><img src=x onerror=alert(2)>".into();
        let minted = mint(&app, &s, req).await;
        let path = format!("/connect/{}", token_of(&minted.url));
        let mut page = Page::new(&app);
        let shown = page.get(&minted.url).await;
        let csrf = csrf(&shown.body);

        let no_csrf = page.post(&path, &[("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(no_csrf.status, 403);
        let wrong_type = page.post_raw(&path, "application/json", "{}".into()).await;
        assert_eq!(wrong_type.status, 415);
        let huge = page.post_raw(&path, "application/x-www-form-urlencoded", format!("csrf={csrf}&provider=stripe-test&api_key={}", "a".repeat(70 * 1024))).await;
        assert_eq!(huge.status, 413);
        let other = page.post(&path, &[("csrf", &csrf), ("provider", "other"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(other.status, 400);
        assert!(other.body.contains("provider_not_allowed"));
        let long = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", &format!("sk_test_{}", "a".repeat(5000)))]).await;
        assert_eq!(long.status, 422);
        assert_eq!(app.rows("credentials").await, 0);
        assert_eq!(s.api.requests(), 0);

        // Without redirect URLs the page shows its own result; the name is escaped.
        let done = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(done.status, 200);
        assert!(done.body.contains("Connected"));
        assert!(!done.body.contains("<script>alert") && done.body.contains("&#60;script&#62;alert(1)"), "{}", done.body);
        assert!(!done.body.contains(GOOD_KEY));
    }

    async fn ten_rejected_keys_revoke_the_link(app) {
        let s = setup(&app).await;
        let minted = mint(&app, &s, link_request("u1", &["stripe-test"], &s.landing, &s.receiver.url())).await;
        let path = format!("/connect/{}", token_of(&minted.url));
        let mut page = Page::new(&app);
        let csrf = csrf(&page.get(&minted.url).await.body);
        for _ in 0..9 {
            let r = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", BAD_KEY)]).await;
            assert_eq!(r.status, 422);
        }
        let last = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", BAD_KEY)]).await;
        assert_eq!(last.status, 303);
        assert!(last.location.unwrap().contains("error=too_many_attempts"));
        let after = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(after.status, 410);
        assert!(after.body.contains("Too many attempts"));
        assert_eq!(app.rows("credentials").await, 0);
        let link = app.connect(&s.t.token).await.get_connect_link(pb::GetConnectLinkRequest { id: minted.link.unwrap().id }).await.unwrap().into_inner();
        assert_eq!(link.status(), pb::ConnectLinkStatus::Revoked);
        assert_eq!(link.revoked_reason, "too_many_attempts");
        deliver(&app).await;
        let body: serde_json::Value = serde_json::from_str(&s.receiver.received()[0].body).unwrap();
        assert_eq!(body["type"], "connect.failed");
        assert_eq!(body["data"]["status"], "too_many_attempts");

        // A provider that cannot answer is not the user's fault: nothing is counted.
        s.api.state.lock().unwrap().down = true;
        let fresh = mint(&app, &s, link_request("u2", &["stripe-test"], &s.landing, "")).await;
        let shown = page.get(&fresh.url).await;
        let fresh_csrf = crate::connect_kit::csrf(&shown.body);
        let r = page.post(&format!("/connect/{}", token_of(&fresh.url)), &[("csrf", &fresh_csrf), ("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("could not check"));
    }

    async fn embedding_is_allowed_only_for_the_configured_origins(app) {
        let s = setup(&app).await;
        let minted = mint(&app, &s, link_request("u1", &["stripe-test"], &s.landing, "")).await;
        let mut page = Page::new(&app);
        let csp = |a: &Answer| a.headers["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp(&page.get(&minted.url).await).contains("frame-ancestors 'none'"));
        settings(&app, &s.t, &s.landing, true).await;
        let shown = page.get(&minted.url).await;
        assert!(csp(&shown).contains(&format!("frame-ancestors {}", s.landing.origin())), "{}", csp(&shown));
        assert!(shown.headers.get("x-frame-options").is_none());
        assert!(csp(&shown).contains(&format!("form-action 'self' {}", s.landing.origin())));
    }
}

both_backends! {
    tweak = |mut c| { c.connect_rate_limit_per_minute = 2; c };

    async fn page_posts_are_rate_limited_per_address(app) {
        let s = setup(&app).await;
        let minted = mint(&app, &s, link_request("u1", &["stripe-test"], &s.landing, "")).await;
        let path = format!("/connect/{}", token_of(&minted.url));
        let mut page = Page::new(&app);
        let csrf = csrf(&page.get(&minted.url).await.body);
        for _ in 0..2 {
            let r = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", BAD_KEY)]).await;
            assert_eq!(r.status, 422);
        }
        let limited = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(limited.status, 429);
        // Two posts a minute: the next is allowed 30 s after the bucket emptied.
        let wait: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((28..=30).contains(&wait), "{wait}");
        assert_eq!(app.rows("credentials").await, 0);
    }
}
