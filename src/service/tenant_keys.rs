//! Sealing under tenant keys. Every tenant-owned secret is sealed in format 3 under its
//! tenant's random key, which is stored only sealed under a master key
//! (docs/encryption.md, "Tenant keys"). A tenant's key is made by its first seal and
//! destroyed by its deletion; an unsealed key is used from memory for at most
//! [`CACHE_MS`], which bounds how long a replica that did not run the deletion could
//! still open a restored copy of the tenant's rows, and is dropped (zeroized) by the
//! next [`TenantKeys::forget_expired`] after that.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::clock::{Clock, Millis};
use crate::crypto::{
    AadContext, CryptoError, Keyring, TENANT_FORMAT_VERSION, TenantKey, format_of,
};
use crate::error::{Error, Result};
use crate::store::{Change, Store};

/// How long an unsealed tenant key is kept in memory.
pub const CACHE_MS: Millis = 30_000;

struct Cached {
    key: Arc<TenantKey>,
    until: Millis,
}

#[derive(Default)]
struct Held {
    keys: HashMap<String, Cached>,
    /// Counts the changes heard: a key read before one is not kept.
    generation: u64,
}

/// The tenant keys of one process: seals tenant-owned values and opens them, in
/// whichever format they were sealed.
pub struct TenantKeys {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    cache: Mutex<Held>,
}

impl TenantKeys {
    pub fn new(store: Arc<dyn Store>, keyring: Arc<Keyring>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            keyring,
            clock,
            cache: Mutex::default(),
        }
    }

    /// Seals `plaintext` for the row `ctx` under its tenant's key (made on first use).
    /// NOT_FOUND when the tenant is gone or being deleted.
    pub async fn seal(&self, ctx: &AadContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        let key = match self.key(ctx.tenant_id).await? {
            Some(key) => key,
            None => self.create(ctx.tenant_id).await?,
        };
        Ok(key.seal(ctx, plaintext))
    }

    /// Opens a value sealed for the row `ctx`: under its tenant's key (format 3) or,
    /// for values sealed before tenant keys, under a master key.
    pub async fn open(&self, ctx: &AadContext<'_>, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.try_open(ctx, blob)
            .await?
            .map_err(|e| Error::from_crypto(e, ctx.credential_id))
    }

    /// [`TenantKeys::open`] with the reason a value does not open kept apart from
    /// storage errors.
    pub async fn try_open(
        &self,
        ctx: &AadContext<'_>,
        blob: &[u8],
    ) -> Result<std::result::Result<Zeroizing<Vec<u8>>, CryptoError>> {
        if format_of(blob) != Some(TENANT_FORMAT_VERSION) {
            return Ok(self.keyring.open(ctx, blob));
        }
        Ok(match self.key(ctx.tenant_id).await? {
            Some(key) => key.open(ctx, blob),
            None => Err(CryptoError::TenantKeyDestroyed),
        })
    }

    /// Destroys the tenant's key for good and marks the tenant as being deleted, so no
    /// new key is made for it; false if there is no such tenant.
    pub async fn destroy(&self, tenant_id: &str) -> Result<bool> {
        let existed = self
            .store
            .destroy_tenant_key(tenant_id, self.clock.now_ms())
            .await?;
        self.forget(&Change::Tenant(tenant_id.to_owned()));
        Ok(existed)
    }

    /// How many unsealed keys this process holds now (for tests).
    #[doc(hidden)]
    pub fn held(&self) -> usize {
        self.lock().keys.len()
    }

    /// Drops (and so zeroizes) what `change` makes stale: a deleted tenant's key.
    pub fn forget(&self, change: &Change) {
        let mut held = self.lock();
        match change {
            Change::Tenant(id) => {
                held.generation += 1;
                held.keys.remove(id);
            }
            Change::Everything => {
                held.generation += 1;
                held.keys.clear();
            }
            Change::Token(_) => {}
        }
    }

    /// Drops (and so zeroizes) the keys whose time in memory is over.
    pub fn forget_expired(&self) {
        let now = self.clock.now_ms();
        self.lock().keys.retain(|_, c| c.until > now);
    }

    /// The tenant's key, from memory or the database; `None` if it has none.
    async fn key(&self, tenant_id: &str) -> Result<Option<Arc<TenantKey>>> {
        let now = self.clock.now_ms();
        let generation = {
            let held = self.lock();
            if let Some(c) = held.keys.get(tenant_id).filter(|c| c.until > now) {
                return Ok(Some(c.key.clone()));
            }
            held.generation
        };
        match self.store.tenant_key(tenant_id).await? {
            Some(sealed) => self.unseal(tenant_id, &sealed, generation).map(Some),
            None => Ok(None),
        }
    }

    /// Makes the tenant's key, or takes the one a concurrent first seal made.
    async fn create(&self, tenant_id: &str) -> Result<Arc<TenantKey>> {
        let generation = self.lock().generation;
        let fresh = self
            .keyring
            .seal_tenant_key(tenant_id, &TenantKey::generate());
        let stored = self
            .store
            .create_tenant_key(tenant_id, &fresh, self.clock.now_ms())
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "tenant {tenant_id} does not exist or is being deleted"
                ))
            })?;
        self.unseal(tenant_id, &stored, generation)
    }

    /// Opens a tenant's sealed key and keeps it, unless a change was heard since
    /// `generation` (when it was read).
    fn unseal(&self, tenant_id: &str, sealed: &[u8], generation: u64) -> Result<Arc<TenantKey>> {
        let key = self
            .keyring
            .open_tenant_key(tenant_id, sealed)
            .map(Arc::new)
            .map_err(|e| match e {
                CryptoError::UnknownKeyVersion(v) => Error::Unavailable(format!(
                    "the key of tenant {tenant_id} is sealed under master key version {v}, which \
                     is not in the keyring: add that key to the configuration"
                )),
                e => Error::DataLoss(format!(
                    "the key of tenant {tenant_id} could not be decrypted: {e}"
                )),
            })?;
        let until = self.clock.now_ms().saturating_add(CACHE_MS);
        let mut held = self.lock();
        if held.generation == generation {
            let cached = Cached {
                key: key.clone(),
                until,
            };
            held.keys.insert(tenant_id.to_owned(), cached);
        }
        Ok(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // The map holds no invariant a panic elsewhere could break.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
