//! The small HTTP side: the OAuth callback that browsers return to, and the hosted
//! connect page.
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::service::links::Connect;
use crate::service::{CallbackOutcome, CallbackQuery};

pub mod connect;
mod limit;
pub mod text;

pub use connect::PageState;
pub use limit::RateLimiter;

impl PageState {
    /// The page's state over `connect`; `post_rate_per_minute` limits form posts
    /// per client IP (0: no limit).
    pub fn new(connect: Connect, secure_cookie: bool, post_rate_per_minute: u32) -> Self {
        Self {
            connect,
            text: &text::EN,
            secure_cookie,
            limiter: Arc::new(RateLimiter::new(post_rate_per_minute)),
        }
    }
}

pub fn router(state: PageState) -> Router {
    Router::new()
        .route("/oauth/callback", get(callback))
        .route("/healthz", get(|| async { "ok" }))
        .route("/connect/assets/connect.css", get(connect::stylesheet))
        .route("/connect/{token}", get(connect::show).post(connect::submit))
        .route(
            "/connect/{token}/oauth",
            axum::routing::post(connect::start_oauth),
        )
        .layer(DefaultBodyLimit::max(connect::MAX_FORM_BYTES))
        .with_state(state)
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
        CallbackOutcome::Redirect(url) => match HeaderValue::from_str(&url) {
            Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
            Err(_) => error_page("server_error"),
        },
        CallbackOutcome::ErrorPage(code) => error_page(code),
        CallbackOutcome::Link {
            state: flow,
            result,
        } => match state.connect.finish_oauth(&flow, result).await {
            Ok(Ok(finished)) => {
                let origins = finished.settings.allowed_embedding_origins.clone();
                connect::finished_response(&state, &finished, &origins)
            }
            Ok(Err(closed)) => connect::closed_page(&state, closed),
            Err(e) => {
                tracing::error!(error = %e, "finishing a connect link's OAuth flow failed");
                error_page("server_error")
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

/// A page for flows that cannot be redirected anywhere. `code` is one of a fixed set
/// of identifiers, never request input.
fn error_page(code: &'static str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connection failed</title></head>\
         <body><h1>This connection could not be completed</h1>\
         <p>Error: <code>{code}</code>. Start the connection again from the application.</p>\
         </body></html>"
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}
