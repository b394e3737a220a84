//! Domain logic: validation, sealing and opening secrets, status rules, idempotency,
//! authorization, OAuth connect and refresh. gRPC and HTTP handlers call in here; the
//! store is called from here only.
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, Millis};
use crate::crypto::Keyring;
use crate::limit::RateLimiter;
use crate::metrics::Metrics;
use crate::oauth::client::TokenClient;
use crate::outbound::{Guard, Outbound};
use crate::store::Store;
use crate::webhooks::sender::WebhookSender;

mod admin;
pub mod audit;
mod auth;
mod credentials;
pub mod external_auth;
pub mod keys;
pub mod links;
mod notify;
mod oauth_flow;
mod pagination;
mod providers;
pub mod proxy;
mod refresh;
pub mod retention;
pub mod tenant_keys;
pub mod token_cache;
pub mod users;
pub mod validate;
mod webhooks;

pub use admin::NewToken;
pub use auth::Caller;
pub use credentials::{
    CredentialChanges, Deleted, ExpiryChange, ListRequest, NewCredential, Page, Revealed,
};
pub use notify::{DeliveryPass, ScanPass, Sent};
pub use oauth_flow::{CallbackOutcome, CallbackQuery, StartOAuth, Started};
pub use providers::{NewProvider, ProviderChanges, templates};
pub use webhooks::{DEFAULT_OVERLAP_SECS, EndpointChanges};

/// Settings of the service layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a used `request_id` is remembered (at least a day by default).
    pub idempotency_ttl_ms: Millis,
    /// How long events and finished deliveries are kept; 0 keeps them.
    pub event_retention_ms: Millis,
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
    /// `credential.expiring` horizons, smallest first.
    pub expiry_horizons_ms: Vec<Millis>,
    /// Delay before each webhook attempt; its length is the number of attempts.
    pub webhook_schedule_ms: Vec<Millis>,
    /// Which webhook URLs and addresses are allowed.
    pub webhook_guard: Guard,
    /// Every provider may use private addresses (else only those an admin opted in).
    pub provider_allow_private: bool,
    /// How often a long-lived stream re-checks its caller's token.
    pub stream_recheck_ms: Millis,
    /// Timeout of each webhook request.
    pub webhook_timeout: Duration,
    /// How long a claimed delivery is leased; longer than the webhook timeout.
    pub delivery_lease_ms: Millis,
    /// Requests per second each service token may make (0: no limit) …
    pub token_rate_per_sec: f64,
    /// … and how many of them may come at once.
    pub token_burst: u32,
    /// How long an authenticated token is used without reading it again (0: never).
    pub token_cache_ttl_ms: Millis,
}

/// Has the caches drop what each change announced by any replica makes stale, for
/// as long as they live.
fn forget_on_change(
    store: &dyn Store,
    tokens: &Arc<token_cache::TokenCache>,
    tenant_keys: &Arc<tenant_keys::TenantKeys>,
) {
    let (tokens, tenant_keys) = (Arc::downgrade(tokens), Arc::downgrade(tenant_keys));
    store.hear(Box::new(move |change| {
        let (Some(tokens), Some(tenant_keys)) = (tokens.upgrade(), tenant_keys.upgrade()) else {
            return false;
        };
        tokens.forget(change);
        tenant_keys.forget(change);
        true
    }));
}

/// Standard Webhooks' suggested schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
/// 14 h, 20 h, 24 h.
pub const DEFAULT_WEBHOOK_SCHEDULE_SECS: [u64; 10] =
    [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];

impl Default for Settings {
    fn default() -> Self {
        Self {
            idempotency_ttl_ms: 24 * 60 * 60 * 1000,
            event_retention_ms: 30 * 24 * 60 * 60 * 1000,
            callback_url: "http://127.0.0.1:8080/oauth/callback".into(),
            allow_http_urls: false,
            oauth_state_ttl_ms: 10 * 60 * 1000,
            refresh_lease_ms: 60_000,
            refresh_wait: Duration::from_secs(20),
            provider_timeout: Duration::from_secs(15),
            expiry_horizons_ms: vec![24 * 60 * 60 * 1000, 7 * 24 * 60 * 60 * 1000],
            webhook_schedule_ms: DEFAULT_WEBHOOK_SCHEDULE_SECS
                .iter()
                .map(|s| *s as Millis * 1000)
                .collect(),
            webhook_guard: Guard::default(),
            provider_allow_private: false,
            stream_recheck_ms: 30_000,
            webhook_timeout: Duration::from_secs(15),
            delivery_lease_ms: 60_000,
            token_rate_per_sec: 0.0,
            token_burst: 1,
            token_cache_ttl_ms: 1000,
        }
    }
}

/// The vault: everything a request needs, shared by all handlers and workers.
#[derive(Clone)]
pub struct Vault {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    /// Seals and opens tenant-owned values under their tenant's key.
    tenant_keys: Arc<tenant_keys::TenantKeys>,
    /// Tokens authenticated lately.
    tokens: Arc<token_cache::TokenCache>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    token_client: TokenClient,
    sender: WebhookSender,
    /// The guarded client every outbound request goes through.
    outbound: Outbound,
    flights: Arc<refresh::Flights>,
    /// This process's name in refresh leases.
    instance: Arc<str>,
    /// False while the storage probe finds the database unreachable: requests then
    /// fail at once instead of each waiting out the connection pool.
    storage_up: Arc<std::sync::atomic::AtomicBool>,
    /// Each service token's request budget.
    token_limiter: Arc<RateLimiter<String>>,
    metrics: Arc<Metrics>,
}

impl Vault {
    /// The vault over `store`; every outbound request goes through `outbound`.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        outbound: Outbound,
    ) -> Self {
        let tenant_keys = Arc::new(tenant_keys::TenantKeys::new(
            store.clone(),
            keyring.clone(),
            clock.clone(),
        ));
        let tokens = Arc::new(token_cache::TokenCache::new(
            settings.token_cache_ttl_ms,
            clock.clone(),
        ));
        forget_on_change(store.as_ref(), &tokens, &tenant_keys);
        Self {
            tenant_keys,
            tokens,
            store,
            keyring,
            clock,
            token_client: TokenClient::new(
                outbound.clone(),
                settings.provider_timeout,
                settings.allow_http_urls,
                settings.provider_allow_private,
            ),
            sender: WebhookSender::new(
                outbound.clone(),
                settings.webhook_guard,
                settings.webhook_timeout,
            ),
            outbound,
            token_limiter: Arc::new(RateLimiter::new(
                settings.token_rate_per_sec,
                settings.token_burst,
            )),
            settings,
            metrics: Arc::default(),
            flights: Arc::default(),
            instance: crate::ids::new_id("inst_").into(),
            storage_up: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Tells every replica that `change` happened; a failure to tell others is logged
    /// (their caches' time limits still bound what they use).
    async fn announce(&self, change: &crate::store::Change) {
        if let Err(e) = self.store.announce(change).await {
            tracing::warn!(error = %e, ?change, "could not announce a change to the other replicas");
        }
    }

    /// Records what the storage probe found.
    pub fn set_storage_up(&self, up: bool) {
        self.storage_up
            .store(up, std::sync::atomic::Ordering::Relaxed);
    }

    /// Fails fast while the database is known to be unreachable.
    fn check_storage(&self) -> crate::error::Result<()> {
        if self.storage_up.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err(crate::error::Error::Unavailable(
                "the database is unreachable; retry shortly".into(),
            ))
        }
    }

    /// Opens a sealed text value (a signing secret, a client secret); `what` names it
    /// in errors.
    pub(crate) async fn open_text(
        &self,
        aad: &crate::crypto::AadContext<'_>,
        blob: &[u8],
        what: &str,
    ) -> crate::error::Result<zeroize::Zeroizing<String>> {
        let plain = self.tenant_keys.open(aad, blob).await?;
        String::from_utf8(plain.to_vec())
            .map(zeroize::Zeroizing::new)
            .map_err(|_| crate::error::Error::DataLoss(format!("{what} is not text")))
    }

    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// What this process counts for `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn tenant_keys(&self) -> &Arc<tenant_keys::TenantKeys> {
        &self.tenant_keys
    }

    /// The tokens this replica authenticated lately.
    pub fn token_cache(&self) -> &token_cache::TokenCache {
        &self.tokens
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }
}
