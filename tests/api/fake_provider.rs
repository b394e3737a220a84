//! A real OAuth 2.0 authorization server, in-process on port 0: authorization
//! endpoint (auto-consent), token endpoint (authorization_code with PKCE S256,
//! refresh_token with rotation and RFC 9700 §4.14.2 reuse detection that revokes the
//! whole token family), RFC 7009 revocation, scripted failures and request counters;
//! and an API under `/api/` that accepts the access tokens it issued, and the API keys
//! and basic logins a test gives it, and records every request (for the proxy).
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "client-123";
pub const CLIENT_SECRET: &str = "client-secret-shh";

/// A canned answer for the next refresh request.
#[derive(Clone)]
pub enum Scripted {
    /// Status, body, and an optional `Retry-After`.
    Answer(u16, String, Option<&'static str>),
    /// Answer only after this long (longer than the vault's timeout).
    Hang(Duration),
    /// Wait this long, then answer as usual (keeps a refresh in flight).
    Delay(Duration),
}

struct Grant {
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
}

#[derive(Default)]
pub struct Inner {
    prefix: String,
    next: u64,
    codes: HashMap<String, Grant>,
    /// Refresh token → (family, still the current one).
    refresh_tokens: HashMap<String, (u64, bool)>,
    revoked_families: HashSet<u64>,
    script: VecDeque<Scripted>,
    /// Refresh-token requests received (including failed ones).
    pub refresh_requests: usize,
    /// Authorization-code requests received.
    pub code_requests: usize,
    /// The `traceparent` of every token request, in order ("" when absent).
    pub traceparents: Vec<String>,
    pub pkce_verified: usize,
    /// Tokens revoked through the revocation endpoint.
    pub revoked: Vec<String>,
    pub revoke_fails: bool,
    pub expires_in: i64,
    /// Leave refresh_token out of refresh answers (a provider that does not rotate).
    pub omit_refresh_token: bool,
    /// Answer with this scope instead of the requested one.
    pub scope_override: Option<String>,
    /// Turn off reuse detection (for the fencing test).
    pub no_reuse_detection: bool,
    /// Access tokens issued and still accepted by the API.
    pub live_access_tokens: HashSet<String>,
    /// API keys the API accepts: as `Authorization: Bearer`, `X-Api-Key` or `?api_key=`.
    pub api_keys: HashSet<String>,
    /// `user:password` pairs the API accepts as `Authorization: Basic`.
    pub basic_logins: HashSet<String>,
    /// Every API request, in order.
    pub api_requests: Vec<ApiRequest>,
    /// Answer every API request with this status, whoever calls.
    pub api_status: Option<u16>,
    /// Answer an accepted API request with a body of this many bytes (else JSON).
    pub api_body_bytes: usize,
}

/// One request the API received.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether it carried a credential the API accepts.
    pub accepted: bool,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub addr: SocketAddr,
    pub inner: Arc<Mutex<Inner>>,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            prefix: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            expires_in: 3600,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/api/{*rest}", axum::routing::any(api))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    pub fn refresh_requests(&self) -> usize {
        self.with(|i| i.refresh_requests)
    }

    pub fn script(&self, answer: Scripted) {
        self.with(|i| i.script.push_back(answer));
    }

    /// A refresh token as if issued by an earlier code exchange, in a family of its own.
    pub fn issue_refresh_token(&self) -> String {
        self.with(|i| {
            i.next += 1;
            let family = i.next;
            let token = format!("{}-rt-{}", i.prefix, i.next);
            i.refresh_tokens.insert(token.clone(), (family, true));
            token
        })
    }

    /// Revokes the family of `refresh_token` (as a user revoking access would).
    pub fn revoke_family_of(&self, refresh_token: &str) {
        self.with(|i| {
            if let Some((family, _)) = i.refresh_tokens.get(refresh_token).copied() {
                i.revoked_families.insert(family);
            }
        });
    }
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

async fn authorize(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    if q.contains_key("deny") {
        return Redirect::to(&format!("{redirect}?error=access_denied&state={state}"))
            .into_response();
    }
    let code = {
        let mut i = inner.lock().unwrap();
        i.next += 1;
        let code = format!("code-{}", i.next);
        let challenge = match q.get("code_challenge_method").map(String::as_str) {
            Some("S256") => q.get("code_challenge").cloned(),
            _ => None,
        };
        i.codes.insert(
            code.clone(),
            Grant {
                redirect_uri: redirect.clone(),
                challenge,
                scope: q.get("scope").cloned().unwrap_or_default(),
            },
        );
        code
    };
    Redirect::to(&format!("{redirect}?code={code}&state={state}")).into_response()
}

/// Client authentication: Basic (form-encoded id and secret) or in the body.
fn client_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = STANDARD
            .decode(basic)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        return decoded.as_deref() == Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    }
    form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
}

fn issue(i: &mut Inner, family: u64, scope: &str, with_refresh: bool) -> Response {
    i.next += 1;
    let access = format!("{}-at-{}", i.prefix, i.next);
    i.live_access_tokens.insert(access.clone());
    let mut body = serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": i.expires_in,
        "scope": i.scope_override.clone().unwrap_or_else(|| scope.to_owned()),
    });
    if with_refresh {
        let refresh = format!("{}-rt-{}", i.prefix, i.next);
        i.refresh_tokens.insert(refresh.clone(), (family, true));
        body["refresh_token"] = refresh.into();
    }
    Json(body).into_response()
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    let scripted = {
        let mut i = inner.lock().unwrap();
        let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
        i.traceparents
            .push(traceparent.unwrap_or_default().to_owned());
        match grant_type.as_str() {
            "refresh_token" => {
                i.refresh_requests += 1;
                i.script.pop_front()
            }
            _ => {
                i.code_requests += 1;
                None
            }
        }
    };
    match scripted {
        Some(Scripted::Answer(status, body, retry_after)) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, after.parse().unwrap());
            }
            return response;
        }
        Some(Scripted::Hang(d)) => {
            tokio::time::sleep(d).await;
            return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        }
        Some(Scripted::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    if !client_ok(&headers, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let mut i = inner.lock().unwrap();
    match grant_type.as_str() {
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(grant) = i.codes.remove(&code) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            if let Some(challenge) = &grant.challenge {
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                i.pkce_verified += 1;
            }
            i.next += 1;
            let family = i.next;
            issue(&mut i, family, &grant.scope, true)
        }
        "refresh_token" => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let Some((family, current)) = i.refresh_tokens.get(&presented).copied() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            if i.revoked_families.contains(&family) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            if !current && !i.no_reuse_detection {
                // A rotated refresh token came back: assume theft, revoke the family.
                i.revoked_families.insert(family);
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let rotate = !i.omit_refresh_token;
            if rotate {
                i.refresh_tokens.insert(presented, (family, false));
            }
            issue(&mut i, family, "crm.read crm.write", rotate)
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

async fn revoke(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut i = inner.lock().unwrap();
    if i.revoke_fails {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if !client_ok(&headers, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = form.get("token").cloned().unwrap_or_default();
    if let Some((family, _)) = i.refresh_tokens.get(&token).copied() {
        i.revoked_families.insert(family);
    }
    i.revoked.push(token);
    StatusCode::OK.into_response()
}

/// Whether a request carries a credential the API accepts.
fn api_accepts(i: &Inner, headers: &HeaderMap, query: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(auth) = header("authorization") {
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return i.live_access_tokens.contains(token) || i.api_keys.contains(token);
        }
        if let Some(basic) = auth.strip_prefix("Basic ") {
            let decoded = STANDARD
                .decode(basic)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            return decoded.is_some_and(|d| i.basic_logins.contains(&d));
        }
        return false;
    }
    if let Some(key) = header("x-api-key") {
        return i.api_keys.contains(key);
    }
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "api_key" && i.api_keys.contains(v.as_ref()))
}

async fn api(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut i = inner.lock().unwrap();
    let query = uri.query().unwrap_or_default().to_owned();
    let accepted = api_accepts(&i, &headers, &query);
    i.api_requests.push(ApiRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: body.to_vec(),
        accepted,
    });
    if let Some(status) = i.api_status {
        return (
            StatusCode::from_u16(status).unwrap(),
            Json(serde_json::json!({ "error": "scripted" })),
        )
            .into_response();
    }
    if !accepted {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "invalid_token" })),
        )
            .into_response();
    }
    if i.api_body_bytes > 0 {
        let body: Vec<u8> = (0..i.api_body_bytes)
            .map(|n| b'a' + (n % 26) as u8)
            .collect();
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            body,
        )
            .into_response();
    }
    let echo = serde_json::json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": query,
        "bodyBytes": body.len(),
    });
    (StatusCode::OK, [("x-fake", "yes")], Json(echo)).into_response()
}
