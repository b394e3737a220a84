//! The small HTTP side: the OAuth callback that browsers return to.
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::service::{CallbackOutcome, CallbackQuery, Vault};

pub fn router(vault: Vault) -> Router {
    Router::new()
        .route("/oauth/callback", get(callback))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(vault)
}

async fn callback(State(vault): State<Vault>, Query(query): Query<CallbackQuery>) -> Response {
    let mut response = match vault.complete_oauth(query).await {
        CallbackOutcome::Redirect(url) => match HeaderValue::from_str(&url) {
            Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
            Err(_) => error_page("server_error"),
        },
        CallbackOutcome::ErrorPage(code) => error_page(code),
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
