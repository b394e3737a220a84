//! Calls to a provider's endpoints through the `oauth2` crate, with every failure
//! classified as RFC 6749 §5.2 suggests. Provider answers are never logged or stored:
//! an error body may echo a token back.
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, HttpClientError, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, TokenResponse, TokenUrl,
};

use super::{ProviderConfig, TokenAuthMethod};
use crate::outbound::{Guard, Outbound, SendError};

/// Tokens from a token endpoint.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_type: String,
    pub expires_in: Option<Duration>,
    /// Granted scopes, when the provider said.
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Why a token request failed, by what should happen next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// `invalid_grant`: the refresh token (or code) is no longer good.
    InvalidGrant,
    /// The provider rejected our client or request (`invalid_client`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_request`,
    /// `invalid_scope`): an operator has to fix the provider's settings.
    Misconfigured(&'static str),
    /// Worth retrying later: 5xx, 429, timeouts, unreachable, unparseable answers.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidGrant => f.write_str("the provider answered invalid_grant"),
            Self::Misconfigured(code) => write!(f, "the provider rejected the client: {code}"),
            Self::Transient { reason, .. } => f.write_str(reason),
        }
    }
}

type Configured =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;
type ReqwestError = HttpClientError<SendError>;
type HttpFuture<'a> =
    Pin<Box<dyn Future<Output = Result<HttpResponse, ReqwestError>> + Send + Sync + 'a>>;

/// The status and `Retry-After` of the last answer, which `oauth2`'s errors drop.
#[derive(Default)]
struct Seen(Mutex<Option<(u16, Option<Duration>)>>);

/// The `oauth2` crate's HTTP client: the guarded outbound client, noting each
/// answer's status and `Retry-After` on the way through.
struct Observer<'a> {
    client: &'a TokenClient,
    guard: Guard,
    seen: &'a Seen,
}

impl<'c> AsyncHttpClient<'c> for Observer<'_> {
    type Error = HttpClientError<SendError>;
    type Future = HttpFuture<'c>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|_| HttpClientError::Other("the request could not be built".into()))?;
            let response = self
                .client
                .outbound
                .send(request, self.guard, self.client.timeout)
                .await
                .map_err(|e| HttpClientError::Reqwest(Box::new(e)))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            if let Ok(mut slot) = self.seen.0.lock() {
                *slot = Some((status.as_u16(), retry_after));
            }
            let mut builder = oauth2::http::Response::builder().status(status);
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response
                .bytes()
                .await
                .map_err(|_| HttpClientError::Reqwest(Box::new(SendError::Connect)))?;
            builder.body(body.to_vec()).map_err(HttpClientError::Http)
        })
    }
}

/// Calls provider endpoints through the guarded outbound client: no redirects
/// followed, bounded time, private addresses only for providers opted in.
#[derive(Clone)]
pub struct TokenClient {
    outbound: Outbound,
    timeout: Duration,
    /// Whether plain http and private addresses are allowed for every provider.
    allow_http: bool,
    allow_private: bool,
}

impl TokenClient {
    pub fn new(
        outbound: Outbound,
        timeout: Duration,
        allow_http: bool,
        allow_private: bool,
    ) -> Self {
        Self {
            outbound,
            timeout,
            allow_http,
            allow_private,
        }
    }

    /// The address policy for `config`'s endpoints.
    pub fn guard(&self, config: &ProviderConfig) -> Guard {
        Guard {
            allow_http: self.allow_http,
            allow_private: self.allow_private || config.allow_private_network,
        }
    }

    fn observing<'a>(&'a self, config: &ProviderConfig, seen: &'a Seen) -> Observer<'a> {
        Observer {
            client: self,
            guard: self.guard(config),
            seen,
        }
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        config: &ProviderConfig,
        client_secret: Option<&str>,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: Option<&str>,
    ) -> Result<Tokens, TokenError> {
        let client = configured(config, client_secret, Some(redirect_uri))?;
        let mut request = client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(v) = pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(v.to_owned()));
        }
        let seen = Seen::default();
        let result = request.request_async(&self.observing(config, &seen)).await;
        classify(result, &seen).map(|r| tokens(&r, config))
    }

    /// Uses a refresh token.
    pub async fn refresh(
        &self,
        config: &ProviderConfig,
        client_secret: Option<&str>,
        refresh_token: &str,
    ) -> Result<Tokens, TokenError> {
        let client = configured(config, client_secret, None)?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let seen = Seen::default();
        let result = client
            .exchange_refresh_token(&token)
            .request_async(&self.observing(config, &seen))
            .await;
        classify(result, &seen).map(|r| tokens(&r, config))
    }

    /// Revokes a token at the provider's RFC 7009 endpoint. (The `oauth2` crate's own
    /// revocation insists on https, which the in-process test provider is not.)
    pub async fn revoke(
        &self,
        config: &ProviderConfig,
        client_secret: Option<&str>,
        token: &str,
        hint: &str,
    ) -> Result<(), String> {
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let url = url::Url::parse(&config.revocation_url)
            .map_err(|_| "the revocation URL is invalid".to_owned())?;
        let mut request = self.outbound.request(reqwest::Method::POST, url);
        match config.token_auth_method {
            TokenAuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: form-encode both before Basic encoding.
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                request = request.basic_auth(encode(&config.client_id), client_secret.map(encode));
            }
            TokenAuthMethod::ClientSecretPost => {
                form.push(("client_id", &config.client_id));
                if let Some(secret) = client_secret {
                    form.push(("client_secret", secret));
                }
            }
        }
        let request = request
            .form(&form)
            .build()
            .map_err(|_| "the revocation request could not be built".to_owned())?;
        let response = self
            .outbound
            .send(request, self.guard(config), self.timeout)
            .await
            .map_err(|e| match e {
                SendError::Blocked(blocked) => format!("the revocation endpoint is {blocked}"),
                _ => "could not reach the revocation endpoint".to_owned(),
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "the revocation endpoint answered HTTP {}",
                response.status().as_u16()
            ))
        }
    }
}

/// The URL to send the user's browser to, and the PKCE verifier to keep (sealed).
pub fn authorize_url(
    config: &ProviderConfig,
    redirect_uri: &str,
    state: &str,
    scopes: &[String],
) -> Result<(String, Option<String>), TokenError> {
    let client = configured(config, None, Some(redirect_uri))?;
    let mut request = client.authorize_url(|| CsrfToken::new(state.to_owned()));
    if !scopes.is_empty() {
        // Joined here, not by the crate, because some providers (Slack) use commas.
        request = request.add_extra_param("scope", scopes.join(&config.scope_separator));
    }
    for (key, value) in &config.extra_authorize_params {
        request = request.add_extra_param(key.as_str(), value.as_str());
    }
    let mut verifier = None;
    if config.pkce {
        let (challenge, v) = PkceCodeChallenge::new_random_sha256();
        request = request.set_pkce_challenge(challenge);
        verifier = Some(v.secret().clone());
    }
    let (url, _) = request.url();
    Ok((url.into(), verifier))
}

fn configured(
    config: &ProviderConfig,
    client_secret: Option<&str>,
    redirect_uri: Option<&str>,
) -> Result<Configured, TokenError> {
    let bad = |_| TokenError::Misconfigured("invalid endpoint URL");
    let mut client = BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_auth_uri(AuthUrl::new(config.authorization_url.clone()).map_err(bad)?)
        .set_token_uri(TokenUrl::new(config.token_url.clone()).map_err(bad)?)
        .set_auth_type(match config.token_auth_method {
            TokenAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuthMethod::ClientSecretPost => AuthType::RequestBody,
        });
    if let Some(secret) = client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.to_owned()));
    }
    if let Some(uri) = redirect_uri {
        client = client.set_redirect_uri(RedirectUrl::new(uri.to_owned()).map_err(bad)?);
    }
    Ok(client)
}

fn tokens(r: &oauth2::basic::BasicTokenResponse, config: &ProviderConfig) -> Tokens {
    let separator = config.scope_separator.trim();
    Tokens {
        access_token: r.access_token().secret().clone(),
        refresh_token: r.refresh_token().map(|t| t.secret().clone()),
        token_type: match r.token_type() {
            BasicTokenType::Bearer => "Bearer".into(),
            BasicTokenType::Mac => "MAC".into(),
            BasicTokenType::Extension(other) => other.clone(),
        },
        expires_in: r.expires_in(),
        scopes: r.scopes().map(|scopes| {
            scopes
                .iter()
                .flat_map(|s| {
                    let s = s.to_string();
                    if separator.is_empty() {
                        vec![s]
                    } else {
                        s.split(separator).map(str::to_owned).collect()
                    }
                })
                .filter(|s| !s.is_empty())
                .collect()
        }),
    }
}

fn classify<T>(
    result: Result<T, RequestTokenError<ReqwestError, oauth2::basic::BasicErrorResponse>>,
    seen: &Seen,
) -> Result<T, TokenError> {
    let err = match result {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    let (status, retry_after) = seen.0.lock().ok().and_then(|s| *s).unwrap_or((0, None));
    let transient = |reason: String| TokenError::Transient {
        reason,
        retry_after,
    };
    if status == 429 || status >= 500 {
        return Err(transient(format!(
            "the token endpoint answered HTTP {status}"
        )));
    }
    Err(match err {
        RequestTokenError::ServerResponse(response) => match response.error() {
            BasicErrorResponseType::InvalidGrant => TokenError::InvalidGrant,
            BasicErrorResponseType::InvalidClient => TokenError::Misconfigured("invalid_client"),
            BasicErrorResponseType::UnauthorizedClient => {
                TokenError::Misconfigured("unauthorized_client")
            }
            BasicErrorResponseType::UnsupportedGrantType => {
                TokenError::Misconfigured("unsupported_grant_type")
            }
            BasicErrorResponseType::InvalidRequest => TokenError::Misconfigured("invalid_request"),
            BasicErrorResponseType::InvalidScope => TokenError::Misconfigured("invalid_scope"),
            BasicErrorResponseType::Extension(_) => transient(format!(
                "the token endpoint answered an unrecognised error (HTTP {status})"
            )),
        },
        RequestTokenError::Request(HttpClientError::Reqwest(e))
            if matches!(*e, SendError::Blocked(_) | SendError::Shape(_)) =>
        {
            TokenError::Misconfigured("token endpoint blocked by the address policy")
        }
        RequestTokenError::Request(_) => {
            transient("the token endpoint could not be reached or timed out".into())
        }
        RequestTokenError::Parse(..) => transient(format!(
            "the token endpoint's answer was unparseable (HTTP {status})"
        )),
        RequestTokenError::Other(_) => {
            transient(format!("the token endpoint answered HTTP {status}"))
        }
    })
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn authorize_url_carries_state_pkce_scopes_and_extras() {
        let mut config = crate::oauth::catalog::template("slack").unwrap();
        config.client_id = "client-1".into();
        config
            .extra_authorize_params
            .insert("team".into(), "T1".into());
        let scopes = vec!["chat:write".to_owned(), "users:read".to_owned()];
        let (url, verifier) = authorize_url(
            &config,
            "https://vault.test/oauth/callback",
            "st4te",
            &scopes,
        )
        .unwrap();
        let url = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st4te");
        assert_eq!(q["client_id"], "client-1");
        assert_eq!(q["scope"], "chat:write,users:read");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["team"], "T1");
        assert_eq!(q["redirect_uri"], "https://vault.test/oauth/callback");
        assert!(verifier.unwrap().len() >= 43);
    }

    #[test]
    fn tokens_debug_redacts() {
        let t = Tokens {
            access_token: "AT-secret".into(),
            refresh_token: Some("RT-secret".into()),
            token_type: "Bearer".into(),
            expires_in: None,
            scopes: None,
        };
        assert!(!format!("{t:?}").contains("secret"));
    }
}
