//! The hosted connect page in a real browser: Debian's Chromium, headless, driven
//! over WebDriver by chromedriver. Under `CI=true` these run (and fail without the
//! browser); elsewhere they are skipped with a note when chromedriver is missing.
//! With `CREDVAULT_SCREENSHOTS=<dir>` they save the screenshots docs/ shows.
use std::process::Stdio;
use std::time::Duration;

use credvault::proto::v1 as pb;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::both_backends;
use crate::connect_kit::*;
use crate::fake_provider::FakeProvider;
use crate::fixtures::*;
use crate::support::{TestApp, on_ci};

const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";

/// A chromedriver process and a headless Chromium session on it.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
}

impl Browser {
    async fn start(width: u32) -> Option<Self> {
        let path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(path) = path else {
            assert!(
                !on_ci(),
                "CI=true: chromedriver must be installed (apt-get install chromium-driver)"
            );
            eprintln!("skipped: chromedriver is not installed");
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1024,900"],
                // A phone-sized viewport (windows cannot be made narrower than 500 px).
                "mobileEmulation": { "deviceMetrics": { "width": width, "height": 900, "pixelRatio": 1 } },
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        // fantoccini's rustls needs a process-wide provider when several are linked.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for _ in 0..100 {
            if let Ok(client) = ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                return Some(Self { client, driver });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start");
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }

    /// Presses keys on whatever has focus: the keyboard alone drives the page.
    async fn keys(&self, keys: &str) {
        let focused = self.client.active_element().await.unwrap();
        focused.send_keys(keys).await.unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("CREDVAULT_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
        }
    }
}

async fn mint(
    app: &TestApp,
    token: &secrecy::SecretString,
    req: pb::CreateConnectLinkRequest,
) -> String {
    app.connect(token)
        .await
        .create_connect_link(req)
        .await
        .unwrap()
        .into_inner()
        .url
}

both_backends! {
    async fn an_api_key_is_connected_by_keyboard_alone(app) {
        let Some(browser) = Browser::start(1024).await else { return };
        let t = app.tenant("acme").await;
        let api = KeyApi::start().await;
        let landing = Landing::start().await;
        settings(&app, &t, &landing, false).await;
        key_provider(&app, &t, "stripe-test", "Stripe (test)", &api).await;
        key_provider(&app, &t, "billing", "Billing API", &api).await;
        let url = mint(&app, &t.token, link_request("u1", &["stripe-test", "billing"], &landing, "")).await;
        let c = &browser.client;

        c.goto(&url).await.unwrap();
        assert_eq!(browser.text("h1#title").await, "Connect an account");
        browser.screenshot("connect-picker.png").await;
        // Tab to the first provider (past the footer-less header) and open it.
        browser.keys(TAB).await;
        browser.keys(ENTER).await;
        assert_eq!(browser.text("h1#title").await, "Connect Stripe (test)");
        let label = browser.text("label[for=f-api_key]").await;
        assert!(label.starts_with("Secret key"), "{label}");

        browser.keys(TAB).await;
        browser.keys(BAD_KEY).await;
        browser.keys(ENTER).await;
        let alert = browser.text("#form-error").await;
        assert!(alert.contains("rejected"), "{alert}");
        browser.screenshot("connect-form-error.png").await;
        let value = c.find(Locator::Css("#f-api_key")).await.unwrap().prop("value").await.unwrap();
        assert_eq!(value.as_deref(), Some(""), "a rejected key is not put back into the page");

        browser.keys(TAB).await;
        browser.keys(GOOD_KEY).await;
        browser.keys(ENTER).await;
        assert_eq!(browser.text("#landed").await, "Back in the app");
        let landed = url::Url::parse(c.current_url().await.unwrap().as_str()).unwrap();
        let query: std::collections::HashMap<_, _> = landed.query_pairs().into_owned().collect();
        assert_eq!(query["name"], "app-user-u1");
        assert_eq!(landing.visits.lock().unwrap().len(), 1, "one redirect to the app");
        let mut client = app.client(&t.token).await;
        let revealed = client.reveal_credential(reveal(&query["credential_id"])).await.unwrap().into_inner();
        assert_eq!(revealed.secret, Some(api_key(GOOD_KEY)));

        c.goto(&url).await.unwrap();
        assert!(browser.text("main").await.contains("already used"));
        assert!(c.find(Locator::Css("form")).await.is_err());

        // The page's own success screen (no redirect URLs), for the docs too.
        let mut own = link_request("u2", &["billing"], &landing, "");
        own.success_redirect_url = String::new();
        own.failure_redirect_url = String::new();
        let url = mint(&app, &t.token, own).await;
        c.goto(&url).await.unwrap();
        c.find(Locator::Css("#f-api_key")).await.unwrap().send_keys(GOOD_KEY).await.unwrap();
        browser.keys(ENTER).await;
        assert_eq!(browser.text("h1#title").await, "Connected");
        browser.screenshot("connect-success.png").await;
        browser.close().await;
    }

    async fn oauth_and_embedding_in_the_browser(app) {
        let Some(browser) = Browser::start(360).await else { return };
        let t = app.tenant("acme").await;
        let landing = Landing::start().await;
        let fake = FakeProvider::start().await;
        settings(&app, &t, &landing, false).await;
        oauth_provider(&app, &t, &fake).await;
        let c = &browser.client;

        // OAuth through the page, 360 px wide: consent, callback, back to the app.
        let url = mint(&app, &t.token, link_request("u1", &["crm"], &landing, "")).await;
        c.goto(&url).await.unwrap();
        assert_eq!(browser.text("button.primary").await, "Continue to Acme CRM Cloud");
        let widths: (f64, f64) = serde_json::from_value(c.execute(
            "return [window.innerWidth, document.documentElement.scrollWidth]", vec![]).await.unwrap()).unwrap();
        assert_eq!(widths.0, 360.0, "a 360 px viewport");
        assert!(widths.1 <= 360.0, "no horizontal scrolling at 360 px: {widths:?}");
        c.find(Locator::Css("button.primary")).await.unwrap().click().await.unwrap();
        assert_eq!(browser.text("#landed").await, "Back in the app");
        assert!(c.current_url().await.unwrap().as_str().contains("credential_id=cred_"));

        // Framed by the tenant's app: refused until its origin is allowed.
        let url = mint(&app, &t.token, link_request("u2", &["crm"], &landing, "")).await;
        let embed = format!("{}?src={}", landing.url("/embed"), url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>());
        for allowed in [false, true] {
            settings(&app, &t, &landing, allowed).await;
            c.goto(&embed).await.unwrap();
            c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#frame")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let frame = c.find(Locator::Css("#frame")).await.unwrap();
            frame.enter_frame().await.unwrap();
            let shown = c.find(Locator::Css("h1#title")).await.is_ok();
            assert_eq!(shown, allowed, "framed page shown: {shown}, allowed: {allowed}");
            c.enter_parent_frame().await.unwrap();
        }
        browser.close().await;
    }
}

/// The sign-in step in Chromium (the storage side runs on both backends in
/// tests/api/sign_in.rs): the connector's texts and links in the tenant's
/// branding, a refused password, then the providers after signing in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_step_in_the_browser() {
    use crate::auth_kit::{Answer as AuthAnswer, FakeAuth, page_connector, register};
    let Some(browser) = Browser::start(1024).await else {
        return;
    };
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite)
        .await
        .unwrap();
    let t = app.tenant("acme").await;
    let api = KeyApi::start().await;
    let landing = Landing::start().await;
    let auth = FakeAuth::start().await;
    settings(&app, &t, &landing, false).await;
    key_provider(&app, &t, "stripe-test", "Stripe (test)", &api).await;
    let connector = page_connector(
        &app,
        &t,
        &auth,
        "Sign in with your Acme account",
        "Acme staff only: use the login you use for the intranet.",
    )
    .await;
    app.users(&t.token)
        .await
        .register_user(register("u1", "u1@example.com"))
        .await
        .unwrap();
    let mut req = link_request("u1", &["stripe-test"], &landing, "");
    req.require_sign_in_connector = connector;
    let url = mint(&app, &t.token, req).await;
    let c = &browser.client;

    c.goto(&url).await.unwrap();
    assert_eq!(
        browser.text("h1#title").await,
        "Sign in with your Acme account"
    );
    assert_eq!(
        browser.text("a#password-reset").await,
        "Forgot your password?"
    );
    browser.screenshot("connect-sign-in.png").await;
    let filled = c.find(Locator::Css("#f-identifier")).await.unwrap();
    assert_eq!(
        filled.prop("value").await.unwrap().as_deref(),
        Some("u1@example.com")
    );

    auth.answer(AuthAnswer::status(401));
    browser.keys("wrong").await; // the password field has the focus
    browser.keys(ENTER).await;
    let alert = browser.text("#form-error").await;
    assert_eq!(alert, "The email or password is incorrect.");
    browser.screenshot("connect-sign-in-error.png").await;

    auth.answer(AuthAnswer::status(200));
    browser.keys("right").await;
    browser.keys(ENTER).await;
    assert_eq!(browser.text("h1#title").await, "Connect Stripe (test)");
    c.find(Locator::Css("#f-api_key"))
        .await
        .unwrap()
        .send_keys(GOOD_KEY)
        .await
        .unwrap();
    browser.keys(ENTER).await;
    assert_eq!(browser.text("#landed").await, "Back in the app");
    browser.close().await;
}
