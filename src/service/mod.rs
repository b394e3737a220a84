//! Domain logic: validation, sealing and opening secrets, status rules, idempotency,
//! authorization, OAuth connect and refresh. gRPC and HTTP handlers call in here; the
//! store is called from here only.
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, Millis};
use crate::crypto::Keyring;
use crate::oauth::client::TokenClient;
use crate::store::Store;

mod admin;
mod auth;
mod connect;
mod credentials;
mod providers;
mod refresh;
pub mod validate;

pub use auth::Caller;
pub use connect::{CallbackOutcome, CallbackQuery, StartOAuth, Started};
pub use credentials::{
    CredentialChanges, Deleted, ExpiryChange, ListRequest, NewCredential, Page, Revealed,
};
pub use providers::{NewProvider, ProviderChanges, templates};

/// Settings of the service layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a used `request_id` is remembered (at least a day by default).
    pub idempotency_ttl_ms: Millis,
    /// The OAuth redirect URI: `<public base URL>/oauth/callback`.
    pub callback_url: String,
    /// Accept `http://` provider endpoints and redirect URLs (tests, local development).
    pub allow_http_urls: bool,
    /// How long a connect flow's `state` stays valid.
    pub oauth_state_ttl_ms: Millis,
    /// How long a refresh lease lasts; longer than the token request timeout.
    pub refresh_lease_ms: Millis,
    /// How long a caller waits for a refresh running on another replica.
    pub refresh_wait: Duration,
    /// Timeout of each request to a provider.
    pub provider_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            idempotency_ttl_ms: 24 * 60 * 60 * 1000,
            callback_url: "http://127.0.0.1:8080/oauth/callback".into(),
            allow_http_urls: false,
            oauth_state_ttl_ms: 10 * 60 * 1000,
            refresh_lease_ms: 60_000,
            refresh_wait: Duration::from_secs(20),
            provider_timeout: Duration::from_secs(15),
        }
    }
}

/// The vault: everything a request needs, shared by all handlers and workers.
#[derive(Clone)]
pub struct Vault {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    token_client: TokenClient,
    flights: Arc<refresh::Flights>,
    /// This process's name in refresh leases.
    instance: Arc<str>,
}

impl Vault {
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        Self {
            store,
            keyring,
            clock,
            token_client: TokenClient::new(settings.provider_timeout),
            settings,
            flights: Arc::default(),
            instance: crate::ids::new_id("inst_").into(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Forgets request ids older than the idempotency window and connect states that
    /// have expired; returns how many rows went.
    pub async fn prune(&self) -> crate::error::Result<u64> {
        let now = self.now();
        let keys = self
            .store
            .prune_idempotency(now - self.settings.idempotency_ttl_ms)
            .await?;
        let states = self.store.prune_oauth_states(now).await?;
        Ok(keys + states)
    }
}
