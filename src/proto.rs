//! Generated gRPC code for `proto/credvault/v1/credvault.proto`, plus the hand-written
//! `Debug` of every message that holds a secret: they print `[redacted]`.
use std::fmt;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("credvault.v1");
}

/// The encoded descriptors, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("credvault_descriptor");

const REDACTED: &str = "[redacted]";

impl fmt::Debug for v1::ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("key", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for v1::OAuth2Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Secret")
            .field("access_token", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("token_type", &self.token_type)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for v1::BasicSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicSecret")
            .field("username", &REDACTED)
            .field("password", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for v1::CreateServiceTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateServiceTokenResponse")
            .field("token", &self.token)
            .field("secret", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for v1::CreateProviderRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateProviderRequest")
            .field("slug", &self.slug)
            .field("template", &self.template)
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("authorization_url", &self.authorization_url)
            .field("token_url", &self.token_url)
            .field("revocation_url", &self.revocation_url)
            .field("default_scopes", &self.default_scopes)
            .field("allowed_redirect_urls", &self.allowed_redirect_urls)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for v1::UpdateProviderRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateProviderRequest")
            .field("slug", &self.slug)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| REDACTED),
            )
            .field("authorization_url", &self.authorization_url)
            .field("token_url", &self.token_url)
            .field("expected_version", &self.expected_version)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for v1::CreateWebhookEndpointResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateWebhookEndpointResponse")
            .field("endpoint", &self.endpoint)
            .field("secret", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for v1::RotateWebhookSecretResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateWebhookSecretResponse")
            .field("endpoint", &self.endpoint)
            .field("secret", &REDACTED)
            .finish()
    }
}

/// The authorization URL carries the flow's single-use `state`.
impl fmt::Debug for v1::StartOAuthResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartOAuthResponse")
            .field("authorization_url", &REDACTED)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The URL carries the link's bearer token; the signing secret is shown once.
impl fmt::Debug for v1::CreateConnectLinkResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateConnectLinkResponse")
            .field("link", &self.link)
            .field("url", &REDACTED)
            .field("expires_at", &self.expires_at)
            .field(
                "signing_secret",
                &(!self.signing_secret.is_empty()).then_some(REDACTED),
            )
            .finish()
    }
}

impl fmt::Debug for v1::RotateConnectSecretResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateConnectSecretResponse")
            .field("secret", &REDACTED)
            .finish()
    }
}

/// Header names are shown; their values (often an API key to the tenant's own auth
/// system) are not.
fn header_names(headers: &std::collections::HashMap<String, String>) -> Vec<&str> {
    let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

impl fmt::Debug for v1::LoginRequestTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequestTemplate")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("format", &self.format)
            .field("header_names", &header_names(&self.headers))
            .field("body", &self.body)
            .field("auth_type", &self.auth_type)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl fmt::Debug for v1::ForgotPasswordTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgotPasswordTemplate")
            .field("url", &self.url)
            .field("header_names", &header_names(&self.headers))
            .finish()
    }
}

impl fmt::Debug for v1::AuthenticateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("connector_id", &self.connector_id)
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("password", &REDACTED)
            .field("device", &self.device)
            .field("request_id", &self.request_id)
            .finish()
    }
}
