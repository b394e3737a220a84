//! The small HTTP side: the OAuth callback that browsers return to, and the hosted
//! connect page.
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
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
        .route(
            "/connect/{token}/sign-in",
            axum::routing::post(connect::sign_in),
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
