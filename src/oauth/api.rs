//! A provider's API, where `ProxyService.Call` sends requests with its credentials:
//! the base URL, the path prefixes calls may take, and where an API key goes. Also
//! the rules every proxied path and header must pass: they are checked here, before
//! any URL is built, so a caller cannot steer a credential off the provider's API.
use serde::{Deserialize, Serialize};

use super::forms::AuthMode;
use crate::error::{Error, Result};

/// At most this many path prefixes per provider.
pub const MAX_PATH_PREFIXES: usize = 32;
/// The longest path a call may take, and the longest prefix.
pub const MAX_PATH_CHARS: usize = 2048;

/// A provider's API settings, stored as JSON with the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ApiAccess {
    /// Absolute, no query or fragment; its path (if any) bounds every call.
    pub base_url: String,
    /// A call's path must start with one of these; empty: any path.
    pub path_prefixes: Vec<String>,
    /// API keys: the header that carries the key; empty: `Authorization`.
    pub key_header: String,
    /// Put before the key; `None`: `Bearer ` in `Authorization`, else nothing.
    pub key_prefix: Option<String>,
    /// API keys: a query parameter instead of a header.
    pub key_query_param: String,
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPlacement<'a> {
    Header { name: &'a str, prefix: &'a str },
    Query(&'a str),
}

impl ApiAccess {
    pub fn key_placement(&self) -> KeyPlacement<'_> {
        if !self.key_query_param.is_empty() {
            return KeyPlacement::Query(&self.key_query_param);
        }
        let name = if self.key_header.is_empty() {
            "authorization"
        } else {
            &self.key_header
        };
        let prefix = match &self.key_prefix {
            Some(prefix) => prefix,
            None if name.eq_ignore_ascii_case("authorization") => "Bearer ",
            None => "",
        };
        KeyPlacement::Header { name, prefix }
    }

    /// Whether `path` (already checked with [`check_path`]) is on the allow-list.
    pub fn allows_path(&self, path: &str) -> bool {
        self.path_prefixes.is_empty() || self.path_prefixes.iter().any(|p| path.starts_with(p))
    }

    /// Checks everything but the base URL's scheme and address (the service layer
    /// knows the address policy).
    pub fn check(&self, mode: AuthMode) -> Result<()> {
        let base = url::Url::parse(&self.base_url)
            .map_err(|_| Error::invalid("api.base_url", "must be an absolute URL"))?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::invalid(
                "api.base_url",
                "must not have a query or fragment (calls add their own query)",
            ));
        }
        if self.path_prefixes.len() > MAX_PATH_PREFIXES {
            return Err(Error::invalid(
                "api.path_prefixes",
                format!("at most {MAX_PATH_PREFIXES} are allowed"),
            ));
        }
        for prefix in &self.path_prefixes {
            check_path(prefix).map_err(|why| Error::invalid("api.path_prefixes", why))?;
        }
        let placement_set = !self.key_header.is_empty()
            || self.key_prefix.is_some()
            || !self.key_query_param.is_empty();
        if placement_set && mode != AuthMode::ApiKey {
            return Err(Error::invalid(
                "api",
                "key_header, key_prefix and key_query_param are for API_KEY providers",
            ));
        }
        if !self.key_query_param.is_empty()
            && (!self.key_header.is_empty() || self.key_prefix.is_some())
        {
            return Err(Error::invalid(
                "api.key_query_param",
                "cannot be combined with key_header or key_prefix",
            ));
        }
        if !self.key_header.is_empty() && !self.key_header.eq_ignore_ascii_case("authorization") {
            check_header_name(&self.key_header)
                .map_err(|why| Error::invalid("api.key_header", why))?;
        }
        if let Some(prefix) = &self.key_prefix
            && (prefix.len() > 64 || http::HeaderValue::from_str(prefix).is_err())
        {
            return Err(Error::invalid(
                "api.key_prefix",
                "must be at most 64 visible characters",
            ));
        }
        if !self.key_query_param.is_empty()
            && (self.key_query_param.len() > 64 || !self.key_query_param.bytes().all(is_name_byte))
        {
            return Err(Error::invalid(
                "api.key_query_param",
                "must be at most 64 letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(())
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Headers only the vault sets on a proxied request besides the hop-by-hop ones:
/// credentials, and those the HTTP client derives or a proxy would add.
const VAULT_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1): the connection's own, never forwarded in
/// either direction.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A header name a caller (or a provider's key settings) may use.
pub fn check_header_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 128 || http::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        return Err("must be an HTTP header name (letters, digits, '-', at most 128)".into());
    }
    let lower = name.to_ascii_lowercase();
    if VAULT_HEADERS.contains(&lower.as_str())
        || HOP_BY_HOP.contains(&lower.as_str())
        || lower.starts_with("proxy-")
    {
        return Err(format!(
            "`{name}` is set by the vault (credentials and connection headers cannot be sent)"
        ));
    }
    Ok(())
}

/// A relative path a call may take: starts with one `/`, and has no `.` or `..`
/// segment, backslash, percent-encoded `/`, `\` or `.`, query, fragment, whitespace or
/// control character. Anything else could leave the base URL or its prefix once
/// joined or normalised (by the vault, a proxy, or the provider's server).
pub fn check_path(path: &str) -> std::result::Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with \"/\" (a path under the provider's API base URL)".into());
    }
    if path.starts_with("//") {
        return Err("must not start with \"//\" (that names another host)".into());
    }
    if path.len() > MAX_PATH_CHARS {
        return Err(format!("must be at most {MAX_PATH_CHARS} characters"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| matches!(c, '?' | '#' | '\\') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "must not contain {c:?} (send query parameters in `query`)"
        ));
    }
    let lower = path.to_ascii_lowercase();
    for encoded in ["%2f", "%5c", "%2e", "%00"] {
        if lower.contains(encoded) {
            return Err(format!(
                "must not contain the encoded character {encoded} (encoded slashes and dots can leave the API's path)"
            ));
        }
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("must not contain \".\" or \"..\" segments".into());
    }
    if path.contains("//") {
        return Err("must not contain empty segments (\"//\")".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_base_are_refused() {
        for ok in ["/v1/customers", "/v1/customers/cus_1", "/", "/a-b_c~d%20e"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "v1/customers",
            "https://evil.example/x",
            "//evil.example/x",
            "/v1/../admin",
            "/v1/./x",
            "/..",
            "/v1/%2e%2e/admin",
            "/v1/%2E%2E/admin",
            "/v1%2fadmin",
            "/v1/%5cadmin",
            "/v1\\..\\admin",
            "/v1/x?y=1",
            "/v1/x#frag",
            "/v1/x y",
            "/v1/x\r\nHost: evil",
            "/v1//x",
            "/v1/%00",
        ] {
            assert!(check_path(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn credential_and_connection_headers_are_the_vaults() {
        for name in [
            "Authorization",
            "cookie",
            "Host",
            "Transfer-Encoding",
            "Proxy-Authorization",
            "proxy-anything",
            "Content-Length",
        ] {
            assert!(check_header_name(name).is_err(), "{name}");
        }
        for bad in ["", "x y", "x:y", "x\r\ny"] {
            assert!(check_header_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_header_name("Stripe-Version"), Ok(()));
    }

    #[test]
    fn api_keys_go_in_authorization_as_bearer_unless_told_otherwise() {
        let mut api = ApiAccess::default();
        assert_eq!(
            api.key_placement(),
            KeyPlacement::Header {
                name: "authorization",
                prefix: "Bearer "
            }
        );
        api.key_header = "X-Api-Key".into();
        assert_eq!(
            api.key_placement(),
            KeyPlacement::Header {
                name: "X-Api-Key",
                prefix: ""
            }
        );
        api.key_header.clear();
        api.key_query_param = "api_key".into();
        assert_eq!(api.key_placement(), KeyPlacement::Query("api_key"));
    }
}
