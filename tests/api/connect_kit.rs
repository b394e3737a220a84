//! What the hosted-connect tests share: a provider API that checks keys, a landing
//! page standing in for the tenant's app, and helpers to mint links and drive the
//! page over plain HTTP.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use credvault::proto::v1 as pb;
use secrecy::SecretString;

use crate::fake_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider};
use crate::support::{TestApp, TestTenant};

pub const GOOD_KEY: &str = "sk_test_good0canary";
pub const BAD_KEY: &str = "sk_test_wrong";

/// A provider API with one key it accepts: `GET /v1/me` answers 200 for
/// `Authorization: Bearer GOOD_KEY`, 401 otherwise, or 503 while `down`.
#[derive(Clone)]
pub struct KeyApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<KeyApiState>>,
}

#[derive(Default)]
pub struct KeyApiState {
    pub requests: usize,
    pub down: bool,
}

impl KeyApi {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(KeyApiState::default()));
        let app = Router::new()
            .route("/v1/me", get(me))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }
}

async fn me(State(state): State<Arc<Mutex<KeyApiState>>>, headers: HeaderMap) -> StatusCode {
    let mut state = state.lock().unwrap();
    state.requests += 1;
    if state.down {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let expected = format!("Bearer {GOOD_KEY}");
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// The tenant's app: `/done` and `/failed` record their queries and show a page.
#[derive(Clone)]
pub struct Landing {
    pub addr: SocketAddr,
    pub visits: Arc<Mutex<Vec<String>>>,
}

impl Landing {
    pub async fn start() -> Self {
        let visits: Arc<Mutex<Vec<String>>> = Arc::default();
        let app = Router::new()
            .route("/done", get(landed))
            .route("/failed", get(landed))
            .route("/embed", get(embed))
            .with_state(visits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, visits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn landed(State(visits): State<Arc<Mutex<Vec<String>>>>, RawQuery(q): RawQuery) -> Response {
    visits.lock().unwrap().push(q.unwrap_or_default());
    Html("<!doctype html><title>Back in the app</title><h1 id=landed>Back in the app</h1>")
        .into_response()
}

/// A page of the tenant's app that frames the URL in `?src=`.
async fn embed(RawQuery(q): RawQuery) -> Response {
    let src = q.unwrap_or_default();
    let src = url::form_urlencoded::parse(src.as_bytes())
        .find(|(k, _)| k == "src")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><title>App</title><iframe id=frame src=\"{src}\" width=400 height=600></iframe>"
    ))
    .into_response()
}

/// Branding and allow-lists for the tenant; returns a tenant:admin token.
pub async fn settings(
    app: &TestApp,
    t: &TestTenant,
    landing: &Landing,
    embed: bool,
) -> SecretString {
    let admin = app.token(t, &["tenant:admin"]).await;
    let mut c = app.connect(&admin).await;
    c.set_connect_settings(pb::SetConnectSettingsRequest {
        settings: Some(pb::ConnectSettings {
            display_name: "Acme CRM".into(),
            primary_color: "#0b7a5a".into(),
            terms_url: "https://acme.example/terms".into(),
            privacy_url: "https://acme.example/privacy".into(),
            support_url: "https://acme.example/support".into(),
            allowed_redirect_urls: vec![landing.url("/")],
            allowed_embedding_origins: if embed {
                vec![landing.origin()]
            } else {
                vec![]
            },
            ..Default::default()
        }),
        expected_version: None,
    })
    .await
    .unwrap();
    admin
}

/// An API-key provider whose keys are checked against `api`.
pub async fn key_provider(app: &TestApp, t: &TestTenant, slug: &str, display: &str, api: &KeyApi) {
    let mut oauth = app.oauth(&t.token).await;
    oauth
        .create_provider(pb::CreateProviderRequest {
            slug: slug.into(),
            auth_mode: pb::AuthMode::ApiKey.into(),
            display_name: display.into(),
            help_url: "https://docs.example/keys".into(),
            fields: vec![
                pb::FormField {
                    name: "api_key".into(),
                    label: "Secret key".into(),
                    placeholder: "sk_test_…".into(),
                    secret: true,
                    pattern: "sk_(live|test)_[A-Za-z0-9]+".into(),
                    ..Default::default()
                },
                pb::FormField {
                    name: "account".into(),
                    label: "Account name".into(),
                    optional: true,
                    ..Default::default()
                },
            ],
            verification: Some(pb::Verification {
                method: "GET".into(),
                url: format!("http://{}/v1/me", api.addr),
                headers: [("Authorization".to_owned(), "Bearer {{api_key}}".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The OAuth provider `crm` ("Acme CRM Cloud") on the in-process authorization server.
pub async fn oauth_provider(app: &TestApp, t: &TestTenant, fake: &FakeProvider) {
    app.oauth(&t.token)
        .await
        .create_provider(pb::CreateProviderRequest {
            slug: "crm".into(),
            display_name: "Acme CRM Cloud".into(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            authorization_url: fake.url("/authorize"),
            token_url: fake.url("/token"),
            default_scopes: vec!["crm.read".into()],
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A CREATE link for `user` offering `providers`, redirecting to the landing page.
pub fn link_request(
    user: &str,
    providers: &[&str],
    landing: &Landing,
    notify: &str,
) -> pb::CreateConnectLinkRequest {
    pb::CreateConnectLinkRequest {
        user_id: user.into(),
        user_email: format!("{user}@example.com"),
        providers: providers.iter().map(|s| (*s).to_owned()).collect(),
        success_redirect_url: landing.url("/done"),
        failure_redirect_url: landing.url("/failed"),
        notify_url: notify.into(),
        name: format!("app-user-{user}"),
        credential_name: "Billing key".into(),
        ..Default::default()
    }
}

/// The page token at the end of a link URL.
pub fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// A browser over plain HTTP that does not follow redirects and keeps one cookie.
pub struct Page {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    pub fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: format!("http://{}", app.http_addr),
            cookie: None,
        }
    }

    async fn answer(&mut self, response: reqwest::Response) -> Answer {
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        Answer {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        let mut request = self.http.get(url);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        self.answer(response).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.post_raw(path, "application/x-www-form-urlencoded", body)
            .await
    }

    pub async fn post_raw(&mut self, path: &str, content_type: &str, body: String) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        self.answer(response).await
    }
}

/// The value of the hidden `csrf` input of a page.
pub fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf input") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}
