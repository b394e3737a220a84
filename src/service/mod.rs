//! Domain logic: validation, sealing and opening secrets, status rules, idempotency,
//! authorization. gRPC handlers call in here; the store is called from here only.
use std::sync::Arc;

use crate::clock::{Clock, Millis};
use crate::crypto::Keyring;
use crate::store::Store;

mod admin;
mod auth;
mod credentials;
pub mod validate;

pub use auth::Caller;
pub use credentials::{
    CredentialChanges, ExpiryChange, ListRequest, NewCredential, Page, Revealed,
};

/// Settings of the service layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a used `request_id` is remembered (at least a day by default).
    pub idempotency_ttl_ms: Millis,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            idempotency_ttl_ms: 24 * 60 * 60 * 1000,
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
            settings,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Forgets request ids older than the idempotency window; returns how many.
    pub async fn prune_idempotency_keys(&self) -> crate::error::Result<u64> {
        Ok(self
            .store
            .prune_idempotency(self.now() - self.settings.idempotency_ttl_ms)
            .await?)
    }
}
