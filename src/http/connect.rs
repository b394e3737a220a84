//! The hosted connect page: `GET /connect/<token>` (the sign-in form if the link
//! requires one, then the provider picker, then a form or a "Continue to …" button),
//! `POST /connect/<token>/sign-in` (sign this browser in through the link's
//! connector), `POST /connect/<token>` (store what was typed),
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
use zeroize::Zeroizing;

use super::text::Text;
use crate::limit::RateLimiter;
use crate::model::connect::ConnectSettings;
use crate::model::external_auth::{Device, SignInPage};
use crate::oauth::forms::AuthMode;
use crate::service::external_auth::{LOCKED_OUT, LoginOutcome, UPSTREAM_UNAVAILABLE};
use crate::service::links::{
    Closed, Connect, Ended, Finished, FormError, FormValues, Opened, PageProvider, SignInForm,
    SignInStep, SignedIn, Submitted,
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
    /// Form posts per client IP.
    pub limiter: Arc<RateLimiter<std::net::IpAddr>>,
    /// Every request per client IP.
    pub request_limiter: Arc<RateLimiter<std::net::IpAddr>>,
}

impl PageState {
    /// Counts a page outcome for `/metrics` ("" counts nothing: counted elsewhere).
    fn outcome(&self, outcome: &'static str) {
        if !outcome.is_empty() {
            self.connect.vault().metrics().connect(outcome);
        }
    }
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

#[derive(Template)]
#[template(path = "connect/sign_in.html")]
struct SignInView<'a> {
    t: &'static Text,
    chrome: Chrome,
    title: String,
    intro: String,
    error: Option<String>,
    action: String,
    csrf: String,
    username_label: &'a str,
    identifier: &'a str,
    page: &'a SignInPage,
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
    let browser = browser_nonce(&headers);
    let opened = match state.connect.open(&token, browser.as_deref()).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(closed)) => return closed_page(&state, closed),
        Err(e) => return server_error(&state, &e),
    };
    tracing::Span::current().record("link", tracing::field::display(&opened.link.id));
    state.outcome("opened");
    if let Some(step) = &opened.sign_in {
        let mut response = sign_in_page(&state, &opened, &token, step, None, None);
        ensure_browser_cookie(&state, &headers, &mut response);
        return response;
    }
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
    let t = state.text;
    let browser = browser_nonce(&headers);
    let submitted = state
        .connect
        .submit(&token, browser.as_deref(), &provider, &form)
        .await;
    state.outcome(match &submitted {
        Ok(Submitted::Ended(_)) => "",
        Ok(Submitted::Invalid(..)) => "invalid_input",
        Ok(Submitted::Rejected(..)) => "rejected",
        Ok(Submitted::Unverified(..)) => "unverified",
        Err(_) => "server_error",
    });
    // Anything but the end of the flow shows the form again, with what to fix.
    let (opened, errors, message, status) = match submitted {
        Ok(Submitted::Ended(ended)) => return ended_response(&state, ended),
        Ok(Submitted::Invalid(opened, errors)) => (
            opened,
            errors,
            t.error_summary.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Ok(Submitted::Rejected(opened, left)) => (
            opened,
            Vec::new(),
            format!(
                "{} {}",
                t.message("error_rejected"),
                t.attempts_left.replace("{n}", &left.to_string())
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Ok(Submitted::Unverified(opened)) => (
            opened,
            Vec::new(),
            t.message("error_unverified").to_owned(),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        Err(e) => return server_error(&state, &e),
    };
    let form_state = FormState {
        values: Some(&form),
        errors: &errors,
        general_error: Some(message),
    };
    with_status(
        status,
        render_form(&state, &opened, &token, &provider, form_state),
    )
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
    let (nonce, new_cookie) = browser_or_new(&headers);
    let mut response = match state.connect.start_oauth(&token, &provider, &nonce).await {
        Ok(Ok(url)) => secure(see_other(&url), &[], "", &[]),
        Ok(Err(ended)) => ended_response(&state, ended),
        Err(e) => server_error(&state, &e),
    };
    if new_cookie {
        set_browser_cookie(&state, &nonce, &mut response);
    }
    response
}

#[tracing::instrument(name = "connect.sign_in_post", skip_all)]
pub async fn sign_in(
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
    let (nonce, new_cookie) = browser_or_new(&headers);
    let identifier = form.0.remove("identifier").unwrap_or_default();
    let typed = SignInForm {
        identifier: identifier.clone(),
        password: Zeroizing::new(form.0.remove("password").unwrap_or_default()),
        device: Device {
            os: String::new(),
            name: user_agent(&headers),
            ip: peer.ip().to_string(),
        },
    };
    let mut response = match state.connect.sign_in(&token, &nonce, typed).await {
        Ok(SignedIn::Done) => {
            state.outcome("signed_in");
            secure(see_other(&format!("/connect/{token}")), &[], "", &[])
        }
        Ok(SignedIn::Refused(opened, outcome)) => {
            state.outcome("sign_in_refused");
            refused_sign_in(&state, &opened, &token, &identifier, &outcome)
        }
        Ok(SignedIn::Ended(ended)) => ended_response(&state, ended),
        Err(e) => server_error(&state, &e),
    };
    if new_cookie {
        set_browser_cookie(&state, &nonce, &mut response);
    }
    response
}

/// The sign-in form again, with the login's (mapped) message: 429 with
/// `Retry-After` when locked out, 503 when the tenant's system is unavailable.
fn refused_sign_in(
    state: &PageState,
    opened: &Opened,
    token: &str,
    identifier: &str,
    outcome: &LoginOutcome,
) -> Response {
    let Some(step) = &opened.sign_in else {
        return see_other(&format!("/connect/{token}"));
    };
    let message = match outcome.message.as_str() {
        "" => state.text.message(&outcome.error_code).to_owned(),
        message => message.to_owned(),
    };
    let status = match outcome.error_code.as_str() {
        LOCKED_OUT => StatusCode::TOO_MANY_REQUESTS,
        UPSTREAM_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let page = sign_in_page(state, opened, token, step, Some(identifier), Some(message));
    let mut response = with_status(status, page);
    if let Some(at) = outcome.retry_at {
        let seconds = ((at - state.connect.vault().now()).max(1000) + 999) / 1000;
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

/// The browser's `User-Agent`, as the device name of a sign-in (printable, at most
/// 255 characters).
fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect()
}

/// 429 with the connect page's failure text and a `Retry-After` of `wait`.
pub fn too_many_requests(state: &PageState, wait: std::time::Duration) -> Response {
    let mut response = failure_page(state, "rate_limited", StatusCode::TOO_MANY_REQUESTS);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

/// The form of a post, after the rate limit, content type and CSRF checks.
fn read_form(
    state: &PageState,
    token: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<FormValues, Box<Response>> {
    if let Err(wait) = state.limiter.check(&peer.ip()) {
        state.connect.vault().metrics().rate_limited("client_ip");
        return Err(Box::new(too_many_requests(state, wait)));
    }
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(Box::new(failure_page(
            state,
            "bad_request",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )));
    }
    let mut values = FormValues::default();
    for (key, value) in url::form_urlencoded::parse(body) {
        if values.0.len() >= 64 {
            return Err(Box::new(failure_page(
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
        return Err(Box::new(failure_page(
            state,
            "bad_request",
            StatusCode::FORBIDDEN,
        )));
    }
    Ok(values)
}

fn sign_in_page(
    state: &PageState,
    opened: &Opened,
    token: &str,
    step: &SignInStep,
    typed: Option<&str>,
    error: Option<String>,
) -> Response {
    let t = state.text;
    let chrome = Chrome::new(&opened.settings, &opened.tenant_name);
    let nonce = chrome.nonce.clone();
    let page = &step.page;
    let title = match page.title.as_str() {
        "" => t.with_provider(t.sign_in_title, &chrome.brand_name),
        title => title.to_owned(),
    };
    let intro = match page.description.as_str() {
        "" => t.with_provider(t.sign_in_intro, &chrome.brand_name),
        description => description.to_owned(),
    };
    let view = SignInView {
        t,
        title,
        intro,
        error,
        action: format!("/connect/{token}"),
        csrf: Connect::csrf_token(token),
        username_label: match page.username_label.as_str() {
            "" => t.username_label,
            label => label,
        },
        identifier: typed.unwrap_or(&step.identifier),
        page,
        chrome,
    };
    opened_page(view.render(), &nonce, opened)
}

fn picker_page(state: &PageState, opened: &Opened) -> Response {
    let chrome = Chrome::new(&opened.settings, &opened.tenant_name);
    let nonce = chrome.nonce.clone();
    let page = PickerPage {
        t: state.text,
        chrome,
        title: state.text.picker_title,
        providers: &opened.providers,
    };
    opened_page(page.render(), &nonce, opened)
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
    let chrome = Chrome::new(&opened.settings, &opened.tenant_name);
    let nonce = chrome.nonce.clone();
    let page = FormPage {
        t,
        chrome,
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
    opened_page(page.render(), &nonce, opened)
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

/// Where a flow that ended goes: its redirect or result screen, or the page of a
/// link that no longer works.
pub fn ended_response(state: &PageState, ended: Ended) -> Response {
    match &ended {
        Ended::Finished(f) if f.success => state.outcome("connected"),
        Ended::Finished(_) => state.outcome("failed"),
        // Counted by closed_page.
        Ended::Closed(_) => {}
    }
    match ended {
        Ended::Finished(finished) => finished_response(state, &finished),
        Ended::Closed(closed) => closed_page(state, closed),
    }
}

/// A 303 to the tenant's redirect, or the page's own result screen, which posts the
/// result to the embedding origins (the origins that may frame it).
fn finished_response(state: &PageState, finished: &Finished) -> Response {
    let origins = &finished.settings.allowed_embedding_origins;
    if let Some(url) = &finished.redirect {
        return secure(see_other(url), origins, "", &[]);
    }
    let t = state.text;
    let (title, body) = if finished.success {
        (t.success_title, t.success_body.to_owned())
    } else {
        (t.failure_title, t.message(finished.status).to_owned())
    };
    let chrome = Chrome::new(&finished.settings, &finished.tenant_name);
    let nonce = chrome.nonce.clone();
    let page = ResultPage {
        t,
        chrome,
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
    html_page(page.render(), status, &nonce, origins, &[])
}

/// The page of a link that no longer shows its form.
pub fn closed_page(state: &PageState, closed: Closed) -> Response {
    state.outcome(closed.code());
    let t = state.text;
    let (title, status) = match closed {
        Closed::Unknown => (t.closed_title, StatusCode::NOT_FOUND),
        Closed::SignInRequired => (t.failure_title, StatusCode::FORBIDDEN),
        _ => (t.closed_title, StatusCode::GONE),
    };
    message_page(state, title, closed.code(), status)
}

/// A failure screen with a fixed code (never request input), without tenant
/// branding: refused posts, server errors, OAuth callbacks that lead nowhere.
pub fn failure_page(state: &PageState, code: &'static str, status: StatusCode) -> Response {
    message_page(state, state.text.failure_title, code, status)
}

fn message_page(
    state: &PageState,
    title: &str,
    code: &'static str,
    status: StatusCode,
) -> Response {
    let t = state.text;
    let chrome = Chrome::plain();
    let nonce = chrome.nonce.clone();
    let page = ResultPage {
        t,
        chrome,
        title: title.to_owned(),
        body: t.message(code).to_owned(),
        success: false,
        status: code.to_owned(),
        credential_id: String::new(),
        name: String::new(),
        origins: String::new(),
    };
    html_page(page.render(), status, &nonce, &[], &[])
}

fn server_error(state: &PageState, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "connect page failed");
    failure_page(state, "server_error", StatusCode::INTERNAL_SERVER_ERROR)
}

/// A picker or form page of an open link. Its forms may lead to the link's redirect
/// origins and to the OAuth providers' consent screens (Chromium applies
/// `form-action` to the redirects that follow a post).
fn opened_page(html: askama::Result<String>, nonce: &str, opened: &Opened) -> Response {
    let redirects = [
        &opened.link.request.success_redirect_url,
        &opened.link.request.failure_redirect_url,
    ];
    let consents = opened
        .providers
        .iter()
        .filter(|p| p.auth_mode == AuthMode::OAuth2)
        .map(|p| &p.sealed.provider.config.authorization_url);
    let form_targets: Vec<String> = redirects
        .into_iter()
        .chain(consents)
        .filter_map(|u| origin_of(u))
        .collect();
    let frame_origins = &opened.settings.allowed_embedding_origins;
    html_page(html, StatusCode::OK, nonce, frame_origins, &form_targets)
}

/// A rendered page with the security headers.
fn html_page(
    html: askama::Result<String>,
    status: StatusCode,
    nonce: &str,
    frame_origins: &[String],
    form_targets: &[String],
) -> Response {
    match html {
        Ok(html) => secure(
            html_response(status, html),
            frame_origins,
            nonce,
            form_targets,
        ),
        Err(e) => {
            tracing::error!(error = %e, "rendering the connect page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error").into_response()
        }
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

pub fn see_other(url: &str) -> Response {
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

/// The security headers of every page response: `nonce` opens the page's own style
/// and script, `form_targets` are origins its forms may lead to.
fn secure(
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

/// The nonce this browser already holds, or a new one (`true`: set it with the
/// response).
fn browser_or_new(headers: &HeaderMap) -> (String, bool) {
    match browser_nonce(headers) {
        Some(nonce) => (nonce, false),
        None => (crate::ids::random_token().expose_secret().to_owned(), true),
    }
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
