//! The hosted connect page: `GET /connect/<token>` (provider picker, then a form or
//! a "Continue to …" button), `POST /connect/<token>` (store what was typed),
//! `POST /connect/<token>/oauth` (start OAuth bound to this browser). Pages are
//! server-rendered from compile-time, auto-escaping templates and work without
//! JavaScript; every response carries a strict CSP and `no-store`.
use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::limit::RateLimiter;
use super::text::Text;
use crate::model::connect::ConnectSettings;
use crate::oauth::forms::AuthMode;
use crate::service::links::{
    Closed, Connect, Finished, FormError, FormValues, Opened, PageProvider, Submitted,
};

/// The cookie that binds an OAuth flow to the browser that started it.
pub const BROWSER_COOKIE: &str = "cv_browser";
/// The largest form post accepted.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// What the page handlers share.
#[derive(Clone)]
pub struct PageState {
    pub connect: Connect,
    pub text: &'static Text,
    /// `Secure` cookies (off only under `allow_http_urls`).
    pub secure_cookie: bool,
    pub limiter: Arc<RateLimiter>,
}

/// Branding every page shows.
struct Chrome {
    brand_name: String,
    logo_url: String,
    primary_color: String,
    terms_url: String,
    privacy_url: String,
    support_url: String,
    nonce: String,
}

impl Chrome {
    fn new(settings: &ConnectSettings, tenant_name: &str) -> Self {
        Self {
            brand_name: if settings.display_name.is_empty() {
                tenant_name.to_owned()
            } else {
                settings.display_name.clone()
            },
            logo_url: settings.logo_url.clone(),
            primary_color: settings.primary_color.clone(),
            terms_url: settings.terms_url.clone(),
            privacy_url: settings.privacy_url.clone(),
            support_url: settings.support_url.clone(),
            nonce: crate::ids::random_token().expose_secret().to_owned(),
        }
    }

    fn plain() -> Self {
        Self::new(&ConnectSettings::default(), "credvault")
    }
}

#[derive(Template)]
#[template(path = "connect/picker.html")]
struct PickerPage<'a> {
    t: &'static Text,
    chrome: Chrome,
    title: &'a str,
    providers: &'a [PageProvider],
}

/// One input of the form as rendered.
struct FieldView {
    name: String,
    label: String,
    placeholder: String,
    help: String,
    secret: bool,
    required: bool,
    /// Only non-secret values are ever echoed back.
    value: String,
    error: Option<&'static str>,
    described_by: String,
}

#[derive(Template)]
#[template(path = "connect/form.html")]
struct FormPage<'a> {
    t: &'static Text,
    chrome: Chrome,
    title: String,
    intro: String,
    general_error: Option<String>,
    oauth: bool,
    continue_label: String,
    action: String,
    csrf: String,
    provider: &'a str,
    fields: Vec<FieldView>,
    help_url: &'a str,
    show_back: bool,
}

#[derive(Template)]
#[template(path = "connect/result.html")]
struct ResultPage {
    t: &'static Text,
    chrome: Chrome,
    title: String,
    body: String,
    success: bool,
    status: String,
    credential_id: String,
    name: String,
    /// Space-separated origins the result is posted to (the embedding origins).
    origins: String,
}

/// What a form-page render needs besides the link.
#[derive(Default)]
struct FormState<'a> {
    values: Option<&'a FormValues>,
    errors: &'a [FormError],
    general_error: Option<String>,
}

/// The stylesheet (served from the page's own origin: `style-src 'self'`).
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../templates/connect/connect.css"),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
pub struct PickQuery {
    provider: Option<String>,
}

#[tracing::instrument(name = "connect.page", skip_all, fields(link = tracing::field::Empty))]
pub async fn show(
    State(state): State<PageState>,
    Path(token): Path<String>,
    Query(pick): Query<PickQuery>,
    headers: HeaderMap,
) -> Response {
    let opened = match state.connect.open(&token).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(closed)) => return closed_page(&state, closed),
        Err(e) => return server_error(&state, &e),
    };
    tracing::Span::current().record("link", tracing::field::display(&opened.link.id));
    let chosen = pick
        .provider
        .as_deref()
        .and_then(|slug| opened.providers.iter().find(|p| p.slug == slug))
        .or(match opened.providers.as_slice() {
            [only] => Some(only),
            _ => None,
        });
    let mut response = match chosen {
        Some(provider) => form_page(&state, &opened, &token, provider, FormState::default()),
        None => picker_page(&state, &opened),
    };
    ensure_browser_cookie(&state, &headers, &mut response);
    response
}

#[tracing::instrument(name = "connect.submit", skip_all)]
pub async fn submit(
    State(state): State<PageState>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut form = match read_form(&state, &token, peer, &headers, &body) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    let provider = form.0.remove("provider").unwrap_or_default();
    let outcome = state
        .connect
        .submit(&token, &provider, form.clone_values())
        .await;
    match outcome {
        Ok(Submitted::Finished(finished)) => {
            finished_response(&state, &finished, &opened_origins(&finished))
        }
        Ok(Submitted::Closed(closed)) => closed_page(&state, closed),
        Ok(Submitted::Invalid(opened, errors)) => {
            let form_state = FormState {
                values: Some(&form),
                errors: &errors,
                general_error: Some(state.text.error_summary.to_owned()),
            };
            with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                render_form(&state, &opened, &token, &provider, form_state),
            )
        }
        Ok(Submitted::Rejected(opened, left)) => {
            let message = format!(
                "{} {}",
                state.text.message("error_rejected"),
                state.text.attempts_left.replace("{n}", &left.to_string())
            );
            let form_state = FormState {
                values: Some(&form),
                errors: &[],
                general_error: Some(message),
            };
            with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                render_form(&state, &opened, &token, &provider, form_state),
            )
        }
        Ok(Submitted::Unverified(opened)) => {
            let form_state = FormState {
                values: Some(&form),
                errors: &[],
                general_error: Some(state.text.message("error_unverified").to_owned()),
            };
            with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                render_form(&state, &opened, &token, &provider, form_state),
            )
        }
        Err(e) => server_error(&state, &e),
    }
}

#[tracing::instrument(name = "connect.oauth", skip_all)]
pub async fn start_oauth(
    State(state): State<PageState>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match read_form(&state, &token, peer, &headers, &body) {
        Ok(form) => form,
        Err(response) => return *response,
    };
    let provider = form.0.get("provider").cloned().unwrap_or_default();
    // The nonce this browser already holds, or a new one set with the redirect.
    let (nonce, new_cookie) = match browser_nonce(&headers) {
        Some(nonce) => (nonce, false),
        None => (crate::ids::random_token().expose_secret().to_owned(), true),
    };
    let mut response = match state.connect.start_oauth(&token, &provider, &nonce).await {
        Ok(Ok(url)) => see_other(&url),
        Ok(Err(Submitted::Finished(finished))) => {
            finished_response(&state, &finished, &opened_origins(&finished))
        }
        Ok(Err(Submitted::Closed(closed))) => closed_page(&state, closed),
        Ok(Err(_)) => server_error(&state, &"unexpected outcome"),
        Err(e) => server_error(&state, &e),
    };
    if new_cookie {
        set_browser_cookie(&state, &nonce, &mut response);
    }
    secure(response, &[], "")
}

/// The form of a post, after the rate limit, content type and CSRF checks.
fn read_form(
    state: &PageState,
    token: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<FormValues, Box<Response>> {
    if !state.limiter.allow(peer.ip()) {
        let mut response = closed_like(state, "rate_limited", StatusCode::TOO_MANY_REQUESTS);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return Err(Box::new(response));
    }
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(Box::new(closed_like(
            state,
            "bad_request",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )));
    }
    let mut values = FormValues::default();
    for (key, value) in url::form_urlencoded::parse(body) {
        if values.0.len() >= 64 {
            return Err(Box::new(closed_like(
                state,
                "bad_request",
                StatusCode::BAD_REQUEST,
            )));
        }
        values.0.insert(key.into_owned(), value.into_owned());
    }
    let csrf = values.0.remove("csrf").unwrap_or_default();
    let expected = Connect::csrf_token(token);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        csrf.as_bytes(),
        expected.as_bytes(),
    )) {
        return Err(Box::new(closed_like(
            state,
            "bad_request",
            StatusCode::FORBIDDEN,
        )));
    }
    Ok(values)
}

impl FormValues {
    fn clone_values(&self) -> FormValues {
        FormValues(self.0.clone())
    }
}

fn picker_page(state: &PageState, opened: &Opened) -> Response {
    let page = PickerPage {
        t: state.text,
        chrome: Chrome::new(&opened.settings, &opened.tenant_name),
        title: state.text.picker_title,
        providers: &opened.providers,
    };
    render(page, StatusCode::OK, opened)
}

fn form_page(
    state: &PageState,
    opened: &Opened,
    token: &str,
    provider: &PageProvider,
    form: FormState<'_>,
) -> Response {
    let t = state.text;
    let reconnect = opened.link.request.reconnect_credential_id.is_some();
    let name = &provider.display_name;
    let oauth = provider.auth_mode == AuthMode::OAuth2;
    let fields = provider
        .fields
        .iter()
        .map(|f| {
            let error = form
                .errors
                .iter()
                .find(|e| e.field == f.name)
                .map(|e| t.message(e.message));
            let mut described_by = Vec::new();
            if !f.help.is_empty() {
                described_by.push(format!("f-{}-hint", f.name));
            }
            if error.is_some() {
                described_by.push(format!("f-{}-error", f.name));
            }
            FieldView {
                name: f.name.clone(),
                label: if f.label.is_empty() {
                    f.name.clone()
                } else {
                    f.label.clone()
                },
                placeholder: f.placeholder.clone(),
                help: f.help.clone(),
                secret: f.secret,
                required: f.secret || !f.optional,
                value: match form.values {
                    Some(values) if !f.secret => values.0.get(&f.name).cloned().unwrap_or_default(),
                    _ => String::new(),
                },
                error,
                described_by: described_by.join(" "),
            }
        })
        .collect();
    let page = FormPage {
        t,
        chrome: Chrome::new(&opened.settings, &opened.tenant_name),
        title: t.with_provider(
            if reconnect {
                t.reconnect_title
            } else {
                t.form_title
            },
            name,
        ),
        intro: t.with_provider(if oauth { t.oauth_intro } else { t.form_intro }, name),
        general_error: form.general_error,
        oauth,
        continue_label: t.with_provider(t.oauth_continue, name),
        action: format!("/connect/{token}"),
        csrf: Connect::csrf_token(token),
        provider: &provider.slug,
        fields,
        help_url: &provider.help_url,
        show_back: opened.providers.len() > 1,
    };
    render(page, StatusCode::OK, opened)
}

fn render_form(
    state: &PageState,
    opened: &Opened,
    token: &str,
    slug: &str,
    form: FormState<'_>,
) -> Response {
    match opened.providers.iter().find(|p| p.slug == slug) {
        Some(provider) => form_page(state, opened, token, provider, form),
        None => picker_page(state, opened),
    }
}

/// The origins a page may post its result to and be framed by.
fn opened_origins(finished: &Finished) -> Vec<String> {
    finished.settings.allowed_embedding_origins.clone()
}

/// A 303 to the tenant's redirect, or the page's own result screen.
pub fn finished_response(state: &PageState, finished: &Finished, origins: &[String]) -> Response {
    if let Some(url) = &finished.redirect {
        return secure(see_other(url), origins, "");
    }
    let t = state.text;
    let (title, body) = if finished.success {
        (t.success_title, t.success_body.to_owned())
    } else {
        (t.failure_title, t.message(finished.status).to_owned())
    };
    let page = ResultPage {
        t,
        chrome: Chrome::new(&finished.settings, &finished.tenant_name),
        title: title.to_owned(),
        body,
        success: finished.success,
        status: finished.status.to_owned(),
        credential_id: finished.credential_id.clone().unwrap_or_default(),
        name: finished.name.clone(),
        origins: origins.join(" "),
    };
    let status = if finished.success {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let nonce = page.chrome.nonce.clone();
    match page.render() {
        Ok(html) => secure(html_response(status, html), origins, &nonce),
        Err(e) => server_error(state, &e),
    }
}

/// The page of a link that no longer shows its form.
pub fn closed_page(state: &PageState, closed: Closed) -> Response {
    let status = match closed {
        Closed::Unknown => StatusCode::NOT_FOUND,
        _ => StatusCode::GONE,
    };
    closed_like(state, closed.code(), status)
}

/// A failure screen with a fixed code, without tenant branding.
fn closed_like(state: &PageState, code: &'static str, status: StatusCode) -> Response {
    let t = state.text;
    let page = ResultPage {
        t,
        chrome: Chrome::plain(),
        title: t.closed_title.to_owned(),
        body: t.message(code).to_owned(),
        success: false,
        status: code.to_owned(),
        credential_id: String::new(),
        name: String::new(),
        origins: String::new(),
    };
    let nonce = page.chrome.nonce.clone();
    match page.render() {
        Ok(html) => secure(html_response(status, html), &[], &nonce),
        Err(_) => (status, code).into_response(),
    }
}

fn server_error(state: &PageState, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "connect page failed");
    closed_like(state, "server_error", StatusCode::INTERNAL_SERVER_ERROR)
}

fn render<T: Template + HasNonce>(page: T, status: StatusCode, opened: &Opened) -> Response {
    let nonce = page.nonce().to_owned();
    let origins = &opened.settings.allowed_embedding_origins;
    let mut form_targets: Vec<String> = [
        &opened.link.request.success_redirect_url,
        &opened.link.request.failure_redirect_url,
    ]
    .iter()
    .filter_map(|u| origin_of(u))
    .collect();
    form_targets.extend(
        opened
            .providers
            .iter()
            .filter(|p| p.auth_mode == AuthMode::OAuth2)
            .filter_map(|p| origin_of(&p.authorization_url)),
    );
    match page.render() {
        Ok(html) => {
            let response = html_response(status, html);
            secure_with_form_targets(response, origins, &nonce, &form_targets)
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering the connect page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error").into_response()
        }
    }
}

trait HasNonce {
    fn nonce(&self) -> &str;
}

impl HasNonce for PickerPage<'_> {
    fn nonce(&self) -> &str {
        &self.chrome.nonce
    }
}

impl HasNonce for FormPage<'_> {
    fn nonce(&self) -> &str {
        &self.chrome.nonce
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn with_status(status: StatusCode, mut response: Response) -> Response {
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    response
}

fn see_other(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error").into_response(),
    }
}

fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let origin = parsed.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The security headers of every page response.
pub fn secure(response: Response, frame_origins: &[String], nonce: &str) -> Response {
    secure_with_form_targets(response, frame_origins, nonce, &[])
}

fn secure_with_form_targets(
    mut response: Response,
    frame_origins: &[String],
    nonce: &str,
    form_targets: &[String],
) -> Response {
    let frame_ancestors = if frame_origins.is_empty() {
        "'none'".to_owned()
    } else {
        frame_origins.join(" ")
    };
    let nonce_source = if nonce.is_empty() {
        String::new()
    } else {
        format!(" 'nonce-{nonce}'")
    };
    let mut form_action = vec!["'self'".to_owned()];
    form_action.extend(form_targets.iter().cloned());
    let csp = format!(
        "default-src 'none'; style-src 'self'{nonce_source}; script-src{script}; \
         img-src https: data:; form-action {}; frame-ancestors {frame_ancestors}; \
         base-uri 'none'",
        form_action.join(" "),
        script = if nonce.is_empty() {
            " 'none'".to_owned()
        } else {
            nonce_source.clone()
        },
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if frame_origins.is_empty() {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// The browser nonce from the request's cookies.
pub fn browser_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == BROWSER_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() >= 32 && v.len() <= 64)
}

fn ensure_browser_cookie(state: &PageState, headers: &HeaderMap, response: &mut Response) {
    if browser_nonce(headers).is_none() {
        let nonce = crate::ids::random_token();
        set_browser_cookie(state, nonce.expose_secret(), response);
    }
}

fn set_browser_cookie(state: &PageState, nonce: &str, response: &mut Response) {
    let secure = if state.secure_cookie { "; Secure" } else { "" };
    let cookie =
        format!("{BROWSER_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}
