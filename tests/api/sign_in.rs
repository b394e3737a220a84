//! The hosted sign-in step over plain HTTP: a link minted with
//! `require_sign_in_connector` shows a sign-in form (the connector's texts and links,
//! the tenant's branding) and nothing else until this browser signs in as the link's
//! user through the connector; signing in as anyone else revokes the link.
//! (tests/api/browser.rs drives the same step in Chromium.)
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::auth_kit::{Answer as AuthAnswer, FakeAuth, json_connector, page_connector, register};
use crate::both_backends;
use crate::connect_kit::*;
use crate::receiver::Receiver;
use crate::secrets::assert_absent;
use crate::support::{TestApp, TestTenant, logs};

const PASSWORD: &str = "correct horse <battery> \"staple\"";

struct Setup {
    t: TestTenant,
    auth: FakeAuth,
    landing: Landing,
    receiver: Receiver,
    connector: String,
}

/// A tenant with a key provider, a connector with page texts, and users u1 and u2.
async fn setup(app: &TestApp) -> Setup {
    let t = app.tenant("acme").await;
    let api = KeyApi::start().await;
    let landing = Landing::start().await;
    let receiver = Receiver::start().await;
    let auth = FakeAuth::start().await;
    settings(app, &t, &landing, false).await;
    key_provider(app, &t, "stripe-test", "Stripe", &api).await;
    let connector = page_connector(
        app,
        &t,
        &auth,
        "Sign in to Acme <Corp>",
        "Use your Acme staff account.",
    )
    .await;
    let mut users = app.users(&t.token).await;
    for id in ["u1", "u2"] {
        users
            .register_user(register(id, &format!("{id}@example.com")))
            .await
            .unwrap();
    }
    Setup {
        t,
        auth,
        landing,
        receiver,
        connector,
    }
}

async fn mint(app: &TestApp, s: &Setup, user: &str) -> pb::CreateConnectLinkResponse {
    let mut req = link_request(user, &["stripe-test"], &s.landing, &s.receiver.url());
    req.require_sign_in_connector = s.connector.clone();
    app.connect(&s.t.token)
        .await
        .create_connect_link(req)
        .await
        .unwrap()
        .into_inner()
}

async fn get_link(app: &TestApp, s: &Setup, id: &str) -> pb::ConnectLink {
    app.connect(&s.t.token)
        .await
        .get_connect_link(pb::GetConnectLinkRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

both_backends! {
    async fn providers_are_shown_only_to_the_browser_that_signed_in_as_the_links_user(app) {
        let s = setup(&app).await;
        let minted = mint(&app, &s, "u1").await;
        let link_id = minted.link.as_ref().unwrap().id.clone();
        let path = format!("/connect/{}", token_of(&minted.url));
        let mut page = Page::new(&app);

        let shown = page.get(&minted.url).await;
        assert_eq!(shown.status, 200);
        let html = &shown.body;
        assert!(html.contains(&format!("action=\"{path}/sign-in\"")), "{html}");
        assert!(html.contains("Sign in to Acme &#60;Corp&#62;"), "the connector's title, escaped");
        assert!(html.contains("Use your Acme staff account.") && html.contains("Work email"));
        for link in ["https://acme.example/terms", "https://acme.example/faq", "https://acme.example/reset"] {
            assert!(html.contains(&format!("href=\"{link}\"")), "{link} is linked");
        }
        assert!(html.contains("value=\"u1@example.com\""), "the user's email is filled in");
        assert!(!html.contains("Secret key"), "no provider form before signing in");
        let csrf = csrf(html);

        // The provider form and OAuth cannot be posted around the sign-in step.
        let around = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(around.status, 403);
        assert!(around.body.contains("Sign in first"));
        let oauth = page.post(&format!("{path}/oauth"), &[("csrf", &csrf), ("provider", "stripe-test")]).await;
        assert_eq!(oauth.status, 403);
        assert_eq!(app.rows("credentials").await, 0);

        // A wrong password: the form again with the mapped message; nothing changes.
        s.auth.answer(AuthAnswer::status(401));
        let wrong = page.post(&format!("{path}/sign-in"), &[("csrf", &csrf), ("identifier", "u1@example.com"), ("password", "nope")]).await;
        assert_eq!(wrong.status, 422);
        assert!(wrong.body.contains("The email or password is incorrect."), "{}", wrong.body);
        assert!(wrong.body.contains("value=\"u1@example.com\"") && !wrong.body.contains("value=\"nope\""));
        assert!(!get_link(&app, &s, &link_id).await.signed_in);

        // Signed in: the password went to the tenant's system, the providers are shown.
        s.auth.answer(AuthAnswer::status(200));
        let signed_in = page.post(&format!("{path}/sign-in"), &[("csrf", &csrf), ("identifier", "U1@Example.com"), ("password", PASSWORD)]).await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        assert_eq!(signed_in.location.as_deref(), Some(path.as_str()));
        let sent: serde_json::Value = serde_json::from_slice(&s.auth.last().body).unwrap();
        assert_eq!(sent["password"], PASSWORD);
        assert_eq!(sent["id"], "u1");
        let form = page.get(&minted.url).await;
        assert!(form.body.contains("Secret key"), "{}", form.body);
        let link = get_link(&app, &s, &link_id).await;
        assert!(link.signed_in);
        assert_eq!(link.require_sign_in_connector, s.connector);

        // Another browser (another cookie) still has to sign in.
        let mut other = Page::new(&app);
        assert!(other.get(&minted.url).await.body.contains("/sign-in\""));

        let done = page.post(&path, &[("csrf", &csrf), ("provider", "stripe-test"), ("api_key", GOOD_KEY)]).await;
        assert_eq!(done.status, 303);
        assert!(done.location.unwrap().contains("credential_id=cred_"));
        assert_eq!(get_link(&app, &s, &link_id).await.status(), pb::ConnectLinkStatus::Completed);
    }

    async fn signing_in_as_another_user_revokes_the_link(app) {
        let s = setup(&app).await;
        let minted = mint(&app, &s, "u1").await;
        let link_id = minted.link.as_ref().unwrap().id.clone();
        let path = format!("/connect/{}", token_of(&minted.url));
        let mut page = Page::new(&app);
        let csrf = csrf(&page.get(&minted.url).await.body);

        let as_u2 = page.post(&format!("{path}/sign-in"), &[("csrf", &csrf), ("identifier", "u2@example.com"), ("password", PASSWORD)]).await;
        assert_eq!(as_u2.status, 303);
        let location = as_u2.location.unwrap();
        assert!(location.starts_with(&s.landing.url("/failed")) && location.contains("error=identity_mismatch"), "{location}");
        let link = get_link(&app, &s, &link_id).await;
        assert_eq!(link.status(), pb::ConnectLinkStatus::Revoked);
        assert_eq!(link.revoked_reason, "identity_mismatch");
        assert!(!link.signed_in);

        let after = page.get(&minted.url).await;
        assert_eq!(after.status, 410);
        assert!(after.body.contains("signed in as someone this link is not for"), "{}", after.body);
        crate::connect::deliver(&app).await;
        let body: serde_json::Value = serde_json::from_str(&s.receiver.received()[0].body).unwrap();
        assert_eq!(body["type"], "connect.failed");
        assert_eq!(body["data"]["status"], "identity_mismatch");
        assert_eq!(body["data"]["userId"], "u1");
    }

    async fn a_locked_out_user_gets_the_retry_time_and_no_request_is_made(app) {
        let s = setup(&app).await;
        let minted = mint(&app, &s, "u1").await;
        let path = format!("/connect/{}/sign-in", token_of(&minted.url));
        let mut page = Page::new(&app);
        let csrf = csrf(&page.get(&minted.url).await.body);
        s.auth.answer(AuthAnswer::status(401));
        for _ in 0..5 {
            let r = page.post(&path, &[("csrf", &csrf), ("identifier", "u1@example.com"), ("password", "nope")]).await;
            assert_eq!(r.status, 422);
        }
        let sent = s.auth.count();
        let locked = page.post(&path, &[("csrf", &csrf), ("identifier", "u1@example.com"), ("password", PASSWORD)]).await;
        assert_eq!(locked.status, 429);
        assert_eq!(locked.headers["retry-after"], "60");
        assert!(locked.body.contains("Too many failed attempts"));
        assert_eq!(s.auth.count(), sent, "a locked attempt makes no request");

        let empty = page.post(&path, &[("csrf", &csrf), ("identifier", ""), ("password", "")]).await;
        assert_eq!(empty.status, 422);
        assert!(empty.body.contains("Enter your email and password."), "{}", empty.body);
    }

    async fn minting_checks_the_connector_and_the_user(app) {
        let s = setup(&app).await;
        let other = app.tenant("globex").await;
        let foreign = app.external_auth(&other.token).await
            .create_connector(pb::CreateConnectorRequest { connector: Some(json_connector(&s.auth)) })
            .await.unwrap().into_inner().id;
        let mut c = app.connect(&s.t.token).await;
        let with = |user: &str, connector: &str| {
            let mut req = link_request(user, &["stripe-test"], &s.landing, "");
            req.require_sign_in_connector = connector.into();
            req
        };
        let cases = [
            (with("u1", "corp-login"), Code::InvalidArgument, "require_sign_in_connector"),
            (with("u1", "ac_0190c2b7e5a87d3f9c1e2a4b6d8f0a12"), Code::NotFound, "not found"),
            (with("u1", &foreign), Code::NotFound, "not found"),
            (with("u9", &s.connector), Code::FailedPrecondition, "RegisterUser"),
        ];
        for (req, code, says) in cases {
            let e = c.create_connect_link(req).await.unwrap_err();
            assert_eq!(e.code(), code, "{}", e.message());
            assert!(e.message().contains(says), "{}", e.message());
        }
        assert_eq!(app.rows("connect_links").await, 0);
    }

    async fn a_canary_password_typed_into_the_page_goes_only_to_the_auth_system(app) {
        let s = setup(&app).await;
        let minted = mint(&app, &s, "u1").await;
        let path = format!("/connect/{}/sign-in", token_of(&minted.url));
        let mut page = Page::new(&app);
        let csrf = csrf(&page.get(&minted.url).await.body);
        let canary = format!("CANARY-page-{}", uuid::Uuid::new_v4().simple());
        let mut pages = Vec::new();
        for status in [401, 500, 200] {
            s.auth.answer(AuthAnswer::status(status));
            let r = page.post(&path, &[("csrf", &csrf), ("identifier", "u1@example.com"), ("password", &canary)]).await;
            pages.extend(format!("{:?}{}", r.headers, r.body).into_bytes());
        }
        let sent = String::from_utf8(s.auth.last().body).unwrap();
        assert!(sent.contains(&canary), "it reached the auth system");
        let canaries = [canary];
        assert_absent("the page's answers", &pages, &canaries);
        assert_absent("logs", &logs().contents(), &canaries);
        assert_absent("the database", &app.database_dump().await, &canaries);
        let events = serde_json::to_vec(&crate::external_auth::events(&app, &s.t).await).unwrap();
        assert!(crate::fixtures::contains(&events, b"user.authenticated"));
        assert_absent("events", &events, &canaries);
    }
}
