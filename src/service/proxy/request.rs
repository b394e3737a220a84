//! What a proxied call sends: its checked method, path, query, headers and body, the
//! provider URL they make, and the credential put in the way the provider takes it.
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::SecretPayload;
use crate::oauth::api::{self, ApiAccess, KeyPlacement};

/// The largest request body a call may send.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_QUERY_PARAMS: usize = 100;
const MAX_QUERY_BYTES: usize = 16 * 1024;

/// A call as received (not yet checked). `Debug` shows no query values, header
/// values or body: the caller's own data can be sensitive too.
#[derive(Default)]
pub struct ProxyCall {
    pub credential_id: String,
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub request_id: String,
}

/// A call that passed every check that needs no provider: ready to aim.
#[derive(Clone)]
pub struct Checked {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The parts of a call that are safe to print.
fn describe(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    header_names: Vec<&str>,
    body: usize,
) -> std::fmt::Result {
    f.debug_struct(name)
        .field("method", &method)
        .field("path", &path)
        .field("query", &query.iter().map(|(k, _)| k).collect::<Vec<_>>())
        .field("headers", &header_names)
        .field("body", &format_args!("[{body} bytes]"))
        .finish_non_exhaustive()
}

impl std::fmt::Debug for ProxyCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        describe(
            f,
            "ProxyCall",
            &self.method,
            &self.path,
            &self.query,
            names,
            self.body.len(),
        )
    }
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.headers.keys().map(|k| k.as_str()).collect();
        describe(
            f,
            "Checked",
            self.method.as_str(),
            &self.path,
            &self.query,
            names,
            self.body.len(),
        )
    }
}

impl ProxyCall {
    /// Checks the method, path, query, headers and body.
    pub fn check(self) -> Result<Checked> {
        let method = match self.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            _ => {
                return Err(Error::invalid(
                    "method",
                    "must be GET, HEAD, POST, PUT, PATCH or DELETE",
                ));
            }
        };
        api::check_path(&self.path).map_err(|why| Error::invalid("path", why))?;
        check_query(&self.query)?;
        let headers = headers(&self.headers)?;
        if self.body.len() > MAX_BODY_BYTES {
            return Err(Error::ResourceExhausted(format!(
                "body: is {} bytes; the limit is {MAX_BODY_BYTES} bytes",
                self.body.len()
            )));
        }
        Ok(Checked {
            method,
            path: self.path,
            query: self.query,
            headers,
            body: self.body,
        })
    }
}

/// At most `count` name/value pairs of at most `bytes` in all.
fn check_bounds(
    field: &'static str,
    pairs: &[(String, String)],
    count: usize,
    bytes: usize,
) -> Result<()> {
    if pairs.len() > count {
        return Err(Error::invalid(
            field,
            format!("at most {count} are allowed"),
        ));
    }
    let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > bytes {
        return Err(Error::invalid(
            field,
            format!("must be at most {bytes} bytes in all"),
        ));
    }
    Ok(())
}

fn check_query(query: &[(String, String)]) -> Result<()> {
    check_bounds("query", query, MAX_QUERY_PARAMS, MAX_QUERY_BYTES)?;
    if query.iter().any(|(name, _)| name.is_empty()) {
        return Err(Error::invalid("query", "every parameter needs a name"));
    }
    Ok(())
}

/// The caller's headers, each a valid name the vault does not set itself and a value
/// without control characters.
fn headers(given: &[(String, String)]) -> Result<HeaderMap> {
    check_bounds("headers", given, MAX_HEADERS, MAX_HEADER_BYTES)?;
    let mut map = HeaderMap::with_capacity(given.len());
    for (name, value) in given {
        api::check_header_name(name).map_err(|why| Error::invalid("headers", why))?;
        // Checked just above: a valid header name.
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::invalid("headers", "invalid header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            Error::invalid(
                "headers",
                format!("the value of `{name}` must be visible text (no line breaks)"),
            )
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// Joins the base URL and a checked path, and adds the query. The result is checked
/// once more: same origin as the base, and under the base's path.
pub fn target(api: &ApiAccess, call: &Checked) -> Result<url::Url> {
    let base = url::Url::parse(&api.base_url)
        .map_err(|_| Error::FailedPrecondition("the provider's api.base_url is invalid".into()))?;
    let base_path = base.path().trim_end_matches('/').to_owned();
    let mut url = base.clone();
    url.set_path(&format!("{base_path}{}", call.path));
    if !call.query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(call.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    if url.origin() != base.origin() || !url.path().starts_with(&base_path) {
        return Err(Error::invalid("path", "leaves the provider's API base URL"));
    }
    Ok(url)
}

/// Refuses a header or query parameter the caller sent where the provider's API key
/// goes: only the vault puts the key there.
pub fn check_key_slot(api: &ApiAccess, call: &Checked) -> Result<()> {
    match api.key_placement() {
        KeyPlacement::Header { name, .. } if call.headers.contains_key(name) => {
            Err(Error::invalid(
                "headers",
                format!("`{name}` carries the credential; the vault sets it"),
            ))
        }
        KeyPlacement::Query(param) if call.query.iter().any(|(k, _)| k == param) => {
            Err(Error::invalid(
                "query",
                format!("`{param}` carries the credential; the vault sets it"),
            ))
        }
        _ => Ok(()),
    }
}

/// The credentials of `Authorization: Basic` (RFC 7617): base64 of `user:password`.
pub fn basic_value(username: &str, password: &str) -> String {
    let pair = Zeroizing::new(format!("{username}:{password}"));
    base64::engine::general_purpose::STANDARD.encode(&*pair)
}

/// Puts the credential in: OAuth as `Authorization: Bearer`, an API key where the
/// provider takes it, basic as `Authorization: Basic`. The values are marked
/// sensitive, so the HTTP stack never prints them.
pub fn inject(
    api: &ApiAccess,
    secret: &SecretPayload,
    url: &mut url::Url,
    headers: &mut HeaderMap,
) -> Result<()> {
    let header = |name: &str, value: &str| -> Result<(HeaderName, HeaderValue)> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::FailedPrecondition("the provider's api.key_header is invalid".into())
        })?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            Error::FailedPrecondition(
                "the credential cannot be sent in a header (it holds line breaks or control characters)"
                    .into(),
            )
        })?;
        value.set_sensitive(true);
        Ok((name, value))
    };
    let (name, value) = match secret {
        SecretPayload::OAuth2 { access_token, .. } => header(
            "authorization",
            &Zeroizing::new(format!("Bearer {access_token}")),
        )?,
        SecretPayload::Basic { username, password } => {
            let encoded = Zeroizing::new(basic_value(username, password));
            header(
                "authorization",
                &Zeroizing::new(format!("Basic {}", *encoded)),
            )?
        }
        SecretPayload::ApiKey { key } => match api.key_placement() {
            KeyPlacement::Header { name, prefix } => {
                header(name, &Zeroizing::new(format!("{prefix}{key}")))?
            }
            KeyPlacement::Query(param) => {
                url.query_pairs_mut().append_pair(param, key);
                return Ok(());
            }
        },
    };
    headers.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(path: &str) -> ProxyCall {
        ProxyCall {
            credential_id: "cred_x".into(),
            method: "get".into(),
            path: path.into(),
            ..ProxyCall::default()
        }
    }

    fn api(base: &str) -> ApiAccess {
        ApiAccess {
            base_url: base.into(),
            ..ApiAccess::default()
        }
    }

    #[test]
    fn the_target_stays_under_the_base_path_and_carries_the_query() {
        let mut c = call("/customers");
        c.query = vec![("limit".into(), "3".into()), ("q".into(), "a&b=c".into())];
        let checked = c.check().unwrap();
        let url = target(&api("https://api.example.com/v1/"), &checked).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/v1/customers?limit=3&q=a%26b%3Dc"
        );
        let url = target(&api("https://api.example.com"), &checked).unwrap();
        assert_eq!(url.path(), "/customers");
    }

    #[test]
    fn debug_shows_names_not_values() {
        let mut c = call("/x");
        c.query = vec![("q".into(), "query-canary".into())];
        c.headers = vec![("X-Note".into(), "header-canary".into())];
        c.body = Bytes::from_static(b"body-canary");
        let received = format!("{c:?}");
        let printed = format!("{received} {:?}", c.check().unwrap());
        assert!(!printed.contains("canary"), "{printed}");
        assert!(
            printed.contains("x-note") && printed.contains("[11 bytes]"),
            "{printed}"
        );
    }

    #[test]
    fn methods_bodies_and_headers_are_checked() {
        let mut c = call("/x");
        c.method = "TRACE".into();
        assert_eq!(c.check().unwrap_err().code(), tonic::Code::InvalidArgument);
        let mut c = call("/x");
        c.body = Bytes::from(vec![0; MAX_BODY_BYTES + 1]);
        assert_eq!(
            c.check().unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
        for (name, value) in [
            ("Authorization", "Bearer mine"),
            ("Cookie", "a=b"),
            ("X-Ok", "line\r\nInjected: yes"),
            ("Bad Name", "v"),
        ] {
            let mut c = call("/x");
            c.headers = vec![(name.into(), value.into())];
            let err = c.check().unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}");
            assert!(!err.to_string().contains("mine"), "{err}");
        }
    }

    #[test]
    fn each_kind_of_secret_goes_where_the_provider_takes_it() {
        let checked = call("/x").check().unwrap();
        let mut provider = api("https://api.example.com");
        let cases = [
            (
                SecretPayload::OAuth2 {
                    access_token: "at".into(),
                    refresh_token: None,
                    token_type: "Bearer".into(),
                    scopes: vec![],
                    expires_at: None,
                },
                "authorization",
                "Bearer at",
            ),
            (
                SecretPayload::Basic {
                    username: "u".into(),
                    password: "p".into(),
                },
                "authorization",
                "Basic dTpw",
            ),
            (
                SecretPayload::ApiKey { key: "k".into() },
                "authorization",
                "Bearer k",
            ),
        ];
        for (secret, name, value) in cases {
            let mut url = target(&provider, &checked).unwrap();
            let mut headers = HeaderMap::new();
            inject(&provider, &secret, &mut url, &mut headers).unwrap();
            assert_eq!(headers[name], value);
            assert!(headers[name].is_sensitive());
        }
        provider.key_header = "X-Api-Key".into();
        let mut url = target(&provider, &checked).unwrap();
        let mut headers = HeaderMap::new();
        let key = SecretPayload::ApiKey { key: "k".into() };
        inject(&provider, &key, &mut url, &mut headers).unwrap();
        assert_eq!(headers["x-api-key"], "k");
        provider.key_header.clear();
        provider.key_query_param = "api_key".into();
        let mut headers = HeaderMap::new();
        inject(&provider, &key, &mut url, &mut headers).unwrap();
        assert_eq!(url.query(), Some("api_key=k"));
        assert!(headers.is_empty());
    }

    #[test]
    fn the_callers_key_slot_is_refused() {
        let mut provider = api("https://api.example.com");
        provider.key_header = "X-Api-Key".into();
        let mut c = call("/x");
        c.headers = vec![("x-api-key".into(), "mine".into())];
        assert!(check_key_slot(&provider, &c.check().unwrap()).is_err());
        provider.key_header.clear();
        provider.key_query_param = "api_key".into();
        let mut c = call("/x");
        c.query = vec![("api_key".into(), "mine".into())];
        assert!(check_key_slot(&provider, &c.check().unwrap()).is_err());
    }
}
