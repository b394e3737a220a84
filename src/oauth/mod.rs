//! OAuth 2.0: provider settings, the built-in catalog, redirect allow-lists, and the
//! token-endpoint client (authorization code + PKCE, refresh, RFC 7009 revocation).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

pub mod api;
pub mod catalog;
pub mod client;
pub mod forms;
pub mod redirect;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

pub const DEFAULT_REFRESH_MARGIN_SECS: i64 = 600;

/// A provider's non-secret settings, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderConfig {
    pub template: String,
    pub client_id: String,
    pub authorization_url: String,
    pub token_url: String,
    pub revocation_url: String,
    pub default_scopes: Vec<String>,
    pub scope_separator: String,
    pub pkce: bool,
    pub extra_authorize_params: BTreeMap<String, String>,
    pub token_auth_method: TokenAuthMethod,
    pub refresh_margin_secs: i64,
    pub allowed_redirect_urls: Vec<String>,
    /// The provider's endpoints may be on private addresses (an `admin` opted in).
    pub allow_private_network: bool,
    /// How end users connect it (OAuth for providers stored before modes existed).
    pub auth_mode: forms::AuthMode,
    /// Shown on the hosted page; empty: the slug.
    pub display_name: String,
    pub logo_url: String,
    pub help_url: String,
    /// The form of an API-key or basic provider.
    pub fields: Vec<forms::FormField>,
    pub verification: Option<forms::Verification>,
    /// Where `ProxyService.Call` sends requests with its credentials.
    pub api: Option<api::ApiAccess>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            template: String::new(),
            client_id: String::new(),
            authorization_url: String::new(),
            token_url: String::new(),
            revocation_url: String::new(),
            default_scopes: Vec::new(),
            scope_separator: " ".into(),
            pkce: true,
            extra_authorize_params: BTreeMap::new(),
            token_auth_method: TokenAuthMethod::ClientSecretBasic,
            refresh_margin_secs: DEFAULT_REFRESH_MARGIN_SECS,
            allowed_redirect_urls: Vec::new(),
            allow_private_network: false,
            auth_mode: forms::AuthMode::OAuth2,
            display_name: String::new(),
            logo_url: String::new(),
            help_url: String::new(),
            fields: Vec::new(),
            verification: None,
            api: None,
        }
    }
}

impl ProviderConfig {
    pub fn refresh_margin_ms(&self) -> Millis {
        self.refresh_margin_secs.saturating_mul(1000)
    }
}

/// A registered provider (its client secret, if any, is sealed separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub tenant_id: String,
    pub id: String,
    pub slug: String,
    pub config: ProviderConfig,
    pub last_error: Option<String>,
    pub last_error_at: Option<Millis>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A provider row: settings plus the sealed client secret.
#[derive(Clone)]
pub struct SealedProvider {
    pub provider: Provider,
    pub client_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for SealedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedProvider")
            .field("provider", &self.provider)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[sealed]"),
            )
            .finish()
    }
}

/// What a connect flow will create, fixed when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectRequest {
    pub name: String,
    pub scopes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub success_redirect_url: String,
    pub failure_redirect_url: String,
    /// Set for a flow started from a hosted connect page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkBinding>,
    /// The redirect URI sent to the provider when it is not the vault's default
    /// (a tenant's custom domain); the code exchange must send the same.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub redirect_uri: String,
}

/// Ties a flow to the connect link and the browser that started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkBinding {
    pub link_id: String,
    /// Hex SHA-256 of the nonce in the browser's cookie; checked at the callback.
    pub browser_hash: String,
    /// For a reconnect: the credential whose secret the flow replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_credential_id: Option<String>,
}

/// A started connect flow, looked up by the SHA-256 of its `state` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    pub state_hash: Vec<u8>,
    pub id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub user_email: String,
    pub provider: String,
    pub request: ConnectRequest,
    /// The PKCE verifier, sealed (AAD: tenant, user, state id).
    pub pkce_verifier: Option<Vec<u8>>,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
    pub created_at: Millis,
}

/// The outcome of redeeming a `state`: only `Consumed` may lead to a token request.
#[derive(Debug)]
pub enum StateLookup {
    Consumed(OAuthState),
    Expired(OAuthState),
    Replayed(OAuthState),
    Unknown,
}
