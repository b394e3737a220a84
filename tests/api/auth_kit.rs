//! A fake "customer auth server" for the external auth tests: it records every
//! request it gets and answers with whatever the test set.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use credvault::proto::v1 as pb;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    /// A header's value as UTF-8 (values may carry non-ASCII text).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
            .unwrap_or_default()
    }

    pub fn query(&self, name: &str) -> Option<String> {
        let url = url::Url::parse(&format!("http://x{}", self.uri)).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What the server answers next.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: String::new(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(status: u16, body: &str) -> Self {
        Self {
            body: body.into(),
            headers: vec![("content-type", "application/json".into())],
            ..Self::status(status)
        }
    }
}

/// What the server saw, and what it answers next.
type Shared = Arc<Mutex<(Vec<Seen>, Answer)>>;

#[derive(Clone)]
pub struct FakeAuth {
    pub addr: SocketAddr,
    state: Shared,
}

impl FakeAuth {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new((Vec::new(), Answer::status(200))));
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().1 = answer;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().0.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().0.len()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the auth server got a request")
    }
}

async fn record(
    State(state): State<Shared>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut state = state.lock().unwrap();
        state.0.push(Seen {
            method,
            uri: uri.to_string(),
            headers,
            body: body.to_vec(),
        });
        state.1.clone()
    };
    tokio::time::sleep(answer.delay).await;
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A connector posting JSON to the fake server, with every placeholder in the body.
pub fn json_connector(server: &FakeAuth) -> pb::Connector {
    pb::Connector {
        name: "corp-login".into(),
        authentication: Some(pb::LoginRequestTemplate {
            url: server.url("/login?org={{ORGID}}"),
            method: "POST".into(),
            format: pb::BodyFormat::Json.into(),
            headers: [("X-Api-Key".to_owned(), "tenant-key-1".to_owned())].into(),
            body: r#"{"email":"{{USEREMAIL}}","password":"{{USERPASSWORD}}","id":"{{USERID}}"}"#
                .into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn login(connector: &str, email: &str, password: &str) -> pb::AuthenticateRequest {
    pb::AuthenticateRequest {
        connector_id: connector.into(),
        email: email.into(),
        password: password.into(),
        device: Some(pb::Device {
            os: "macOS".into(),
            name: "laptop".into(),
            ip: "203.0.113.7".into(),
        }),
        ..Default::default()
    }
}

pub fn register(user_id: &str, email: &str) -> pb::RegisterUserRequest {
    pb::RegisterUserRequest {
        user_id: user_id.into(),
        email: email.into(),
        external_id: String::new(),
    }
}

/// Creates `json_connector(server)` for `t`, with hosted sign-in texts (`title`,
/// `description`, the label "Work email") and links under https://acme.example/;
/// returns its id.
pub async fn page_connector(
    app: &crate::support::TestApp,
    t: &crate::support::TestTenant,
    server: &FakeAuth,
    title: &str,
    description: &str,
) -> String {
    let mut connector = json_connector(server);
    connector.page = Some(pb::SignInPage {
        title: title.into(),
        description: description.into(),
        username_label: "Work email".into(),
        terms_url: "https://acme.example/terms".into(),
        faq_url: "https://acme.example/faq".into(),
        password_reset_url: "https://acme.example/reset".into(),
    });
    app.external_auth(&t.token)
        .await
        .create_connector(pb::CreateConnectorRequest {
            connector: Some(connector),
        })
        .await
        .unwrap()
        .into_inner()
        .id
}
