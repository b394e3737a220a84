//! The small HTTP side: the OAuth callback that browsers return to, and the hosted
//! connect page.
use std::sync::Arc;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;

use crate::limit::RateLimiter;
use crate::service::links::Connect;
use crate::service::{CallbackOutcome, CallbackQuery};

pub mod connect;
mod ops;
pub mod text;

pub use connect::PageState;
pub use ops::{Ops, health as ops_health, router as ops_router};

impl PageState {
    /// The page's state over `connect`; `post_rate_per_minute` limits form posts
    /// and `request_rate_per_minute` every request, per client IP (0: no limit).
    pub fn new(
        connect: Connect,
        secure_cookie: bool,
        post_rate_per_minute: u32,
        request_rate_per_minute: u32,
    ) -> Self {
        Self {
            connect,
            text: &text::EN,
            secure_cookie,
            limiter: Arc::new(RateLimiter::per_minute(post_rate_per_minute)),
            request_limiter: Arc::new(RateLimiter::per_minute(request_rate_per_minute)),
        }
    }
}

/// The unauthenticated routes browsers use: the OAuth callback and the connect page.
pub fn router(state: PageState) -> Router {
    Router::new()
        .route("/oauth/callback", get(callback))
        .route("/connect/assets/connect.css", get(connect::stylesheet))
        .route("/connect/{token}", get(connect::show).post(connect::submit))
        .route(
            "/connect/{token}/oauth",
            axum::routing::post(connect::start_oauth),
        )
        .route(
            "/connect/{token}/sign-in",
            axum::routing::post(connect::sign_in),
        )
        .layer(DefaultBodyLimit::max(connect::MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            per_client_ip,
        ))
        .layer(axum::middleware::from_fn(traced))
        .with_state(state)
}

/// A span per request, named by its route (never the path: it holds link tokens)
/// and joined to the browser's or proxy's `traceparent`.
async fn traced(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::trace_context::adopt(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// 429 for a client IP over `http_rate_limit_per_minute`.
async fn per_client_ip(
    State(state): State<PageState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.request_limiter.check(&peer.ip()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            state.connect.vault().metrics().rate_limited("client_ip");
            connect::too_many_requests(&state, wait)
        }
    }
}

#[tracing::instrument(name = "oauth.callback", skip_all)]
async fn callback(
    State(state): State<PageState>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let browser = connect::browser_nonce(&headers);
    let outcome = state
        .connect
        .vault()
        .complete_oauth(query, browser.as_deref())
        .await;
    let mut response = match outcome {
        CallbackOutcome::Redirect(url) => connect::see_other(&url),
        CallbackOutcome::ErrorPage(code) => {
            connect::failure_page(&state, code, StatusCode::BAD_REQUEST)
        }
        CallbackOutcome::Link {
            state: flow,
            result,
        } => match state.connect.finish_oauth(&flow, result).await {
            Ok(ended) => connect::ended_response(&state, ended),
            Err(e) => {
                tracing::error!(error = %e, "finishing a connect link's OAuth flow failed");
                connect::failure_page(&state, "server_error", StatusCode::INTERNAL_SERVER_ERROR)
            }
        },
    };
    // The callback URL carries the code and state: keep it out of caches and out of
    // the Referer sent to the page we redirect to.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
