//! Persistence. The store sees only ciphertext and metadata: sealing and opening
//! happen in the service layer.
//!
//! The traits here say what the service may ask of storage. Each engine has its own
//! module implementing them, [`sqlite`] ([`sqlite::SqliteStore`]) and [`postgres`]
//! ([`postgres::PgStore`]): its connection settings, pool shape and migrations, and a
//! copy of the shared implementation in `sql/` compiled against its typed sqlx driver
//! (see `sql/mod.rs`). [`open`] picks the engine from the database URL.
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Millis;
use crate::model::{
    AuditEntry, CredentialMeta, CredentialSummary, Event, SealedCredential, ServiceToken, Status,
    Tenant,
};
use crate::oauth::{OAuthState, SealedProvider, StateLookup};

mod audit;
mod changes;
mod connect;
mod credential_row;
mod external_auth;
mod keys;
mod notifications;
pub mod postgres;
pub mod sqlite;
mod tenant_keys;
mod users;

pub use audit::{AuditFilter, AuditStore, ChainLink, Head, HeadMove, Place};
pub use changes::{CHANNEL, Change, ChangeStore, Hearer};
pub use connect::{AttemptCount, ConnectNotice, ConnectStore, LinkFilter};
pub use external_auth::{AuthStore, LockoutPolicy};
pub use keys::{
    Heartbeat, KeyStore, KeyVersionRow, ReplicaRow, Resealed, SealedColumn, SealedCount,
    SealedValue,
};
pub use notifications::{DeliveryFilter, NotificationStore};
pub use tenant_keys::TenantKeyStore;
pub use users::{Linked, UserStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (tenant name, request id …).
    #[error("unique constraint violated")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    /// A write shared with others (group commit) failed; the cause is logged once.
    #[error("batched write failed: {0}")]
    Batch(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which rows of a listing in key order to read: those after `after`, at most
/// `limit` of them (`None`: all, for the vault's own walks over bounded sets).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window<'a> {
    pub after: Option<&'a str>,
    pub limit: Option<u32>,
}

impl Window<'_> {
    pub const ALL: Window<'static> = Window {
        after: None,
        limit: None,
    };
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What [`Store::revoke_token`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now or before; the token as stored.
    Revoked(ServiceToken),
    /// Refused: it is the last working vault `admin` token.
    LastAdmin,
    NotFound,
}

/// Filters of a credential listing; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub user_id: Option<String>,
    pub provider: Option<String>,
    pub status: Option<Status>,
    /// A token's constraints: only credentials within them.
    pub within: std::sync::Arc<crate::model::Constraints>,
}

/// A used idempotency key: which request (by keyed fingerprint) made which credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub tenant_id: String,
    pub request_id: String,
    pub fingerprint: Vec<u8>,
    pub key_version: u32,
    pub credential_id: String,
    pub created_at: Millis,
}

/// A change to a credential, written only if its version is still `expected_version`.
/// Every write also releases any refresh lease on the row.
#[derive(Debug, Clone)]
pub struct CredentialWrite {
    /// The new metadata; `meta.version` is the version after the write.
    pub meta: CredentialMeta,
    /// A new sealed secret, or `None` to keep the stored one.
    pub blob: Option<Vec<u8>>,
    pub expected_version: i64,
}

/// Connections of a store's pools, summed, and how many reads shared a statement.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    /// Reads answered by a statement shared with other reads (`sql/gathered.rs`),
    /// since the start.
    pub reads_shared: u64,
}

#[async_trait]
pub trait Store:
    NotificationStore
    + ConnectStore
    + UserStore
    + AuthStore
    + KeyStore
    + AuditStore
    + TenantKeyStore
    + ChangeStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;

    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// The connection pools' state now.
    fn pool_stats(&self) -> PoolStats;

    /// Fails with [`StoreError::Conflict`] if the name is taken.
    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    async fn find_tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>>;
    /// In id order.
    async fn list_tenants(&self, window: Window<'_>) -> StoreResult<Vec<Tenant>>;
    /// On a vault without tenants: stores `tenant` and `token` in one transaction and
    /// returns true. False (nothing written) when any tenant exists.
    async fn bootstrap(
        &self,
        tenant: &Tenant,
        token: &ServiceToken,
        hash: &[u8],
    ) -> StoreResult<bool>;

    async fn insert_token(&self, token: &ServiceToken, hash: &[u8]) -> StoreResult<()>;
    async fn find_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ServiceToken>>;
    async fn get_token(&self, id: &str) -> StoreResult<Option<ServiceToken>>;
    /// In id order.
    async fn list_tokens(
        &self,
        tenant_id: &str,
        window: Window<'_>,
    ) -> StoreResult<Vec<ServiceToken>>;
    /// Marks a token revoked (once), unless it is the last working `admin` token
    /// (checked and written atomically, so two revocations cannot both pass).
    async fn revoke_token(&self, id: &str, at: Millis) -> StoreResult<Revocation>;

    /// Stores a new credential, upserting its end user, recording `idempotency` and
    /// `audit`, all in one transaction. [`StoreError::Conflict`] means the request id
    /// is taken, and nothing was written.
    /// Returns the end user's email on file after the write.
    async fn insert_credential(
        &self,
        credential: &SealedCredential,
        idempotency: Option<&IdempotencyRecord>,
        audit: &AuditEntry,
    ) -> StoreResult<Option<String>>;
    async fn find_idempotency(
        &self,
        tenant_id: &str,
        request_id: &str,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    /// Deletes the record if it is still the one created at `created_at`.
    async fn delete_idempotency(&self, record: &IdempotencyRecord) -> StoreResult<()>;
    /// Forgets idempotency keys created before `before`; returns how many.
    async fn prune_idempotency(&self, before: Millis) -> StoreResult<u64>;

    async fn get_credential(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<CredentialMeta>>;
    async fn get_sealed(&self, tenant_id: &str, id: &str) -> StoreResult<Option<SealedCredential>>;
    /// A page in id order, after the id `after` if given.
    async fn list_credentials(
        &self,
        tenant_id: &str,
        filter: &ListFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<CredentialSummary>>;
    /// Compare-and-set: writes only if the stored version is `write.expected_version`,
    /// together with the audit record and events, in one transaction; returns whether
    /// it wrote.
    async fn update_credential(
        &self,
        write: &CredentialWrite,
        audit: Option<&AuditEntry>,
        events: &[Event],
    ) -> StoreResult<bool>;
    /// Deletes the row (and with it the ciphertext); returns whether it existed.
    async fn delete_credential(
        &self,
        tenant_id: &str,
        id: &str,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    async fn insert_audit(&self, audit: &AuditEntry) -> StoreResult<()>;

    /// Takes the refresh lease of an active credential still at `version` if nobody
    /// holds it, the holder's lease ran out by `now`, or `owner` holds it already;
    /// returns whether it was taken. A row that moved on is never leased, so a caller
    /// that read an older version cannot hold a lease it will not use.
    async fn acquire_refresh_lease(
        &self,
        tenant_id: &str,
        id: &str,
        version: i64,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> StoreResult<bool>;
    /// Records a failed refresh (and releases the lease) if the row is still at
    /// `version`. Not a change of the credential: the version stays.
    async fn record_refresh_failure(
        &self,
        tenant_id: &str,
        id: &str,
        version: i64,
        failures: i64,
        next_at: Millis,
        error: &str,
    ) -> StoreResult<bool>;
    /// Active OAuth credentials due for refresh at `now` and not leased, soonest first.
    async fn due_refreshes(&self, now: Millis, limit: u32) -> StoreResult<Vec<(String, String)>>;

    /// Fails with [`StoreError::Conflict`] if the slug is taken in the tenant. Every
    /// provider write records its `audit` entry in the same transaction.
    async fn insert_provider(
        &self,
        provider: &SealedProvider,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    async fn get_provider(
        &self,
        tenant_id: &str,
        slug: &str,
    ) -> StoreResult<Option<SealedProvider>>;
    /// In slug order.
    async fn list_providers(
        &self,
        tenant_id: &str,
        window: Window<'_>,
    ) -> StoreResult<Vec<SealedProvider>>;
    /// Compare-and-set on `expected_version`; returns whether it wrote. In the same
    /// transaction, the provider's credentials that are backing off after failed
    /// refreshes become due at once (`provider.updated_at`).
    async fn update_provider(
        &self,
        provider: &SealedProvider,
        expected_version: i64,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn delete_provider(
        &self,
        tenant_id: &str,
        slug: &str,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    /// Replaces a provider's sealed client secret if it is still `old` (re-sealing
    /// only: the settings and version stay); returns whether it wrote.
    async fn replace_provider_secret(
        &self,
        tenant_id: &str,
        id: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;
    /// Records the provider's error if none is recorded yet, writing `event` with it;
    /// returns whether this call recorded it (so the event is written once).
    async fn record_provider_error(
        &self,
        tenant_id: &str,
        slug: &str,
        event: &Event,
        error: &str,
    ) -> StoreResult<bool>;

    async fn insert_oauth_state(&self, state: &OAuthState) -> StoreResult<()>;
    /// Marks the state used if it is unused and unexpired at `now`, atomically.
    async fn consume_oauth_state(&self, state_hash: &[u8], now: Millis)
    -> StoreResult<StateLookup>;
    /// Deletes states that expired before `before`; returns how many.
    async fn prune_oauth_states(&self, before: Millis) -> StoreResult<u64>;
    /// Takes the lease of background job `job` until `until` if nobody holds it, its
    /// holder's lease ran out by `now`, or `owner` holds it already; returns whether
    /// it was taken (atomically: two replicas never both get it).
    async fn acquire_job_lease(
        &self,
        job: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> StoreResult<bool>;

    /// The id of a tenant's newest event.
    async fn latest_event_id(&self, tenant_id: &str) -> StoreResult<Option<String>>;
    /// A tenant's events in id (time) order, after `after` if given.
    async fn list_events(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Event>>;
}

/// Opens the store the URL names (`sqlite:` or `postgres:`/`postgresql:`), running
/// its migrations.
pub async fn open(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::connect(url, max_connections).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::connect(url, max_connections).await?))
    } else {
        let scheme = url.split(':').next().unwrap_or_default();
        Err(StoreError::UnsupportedUrl(format!(
            "scheme `{scheme}:` (use sqlite: or postgres:)"
        )))
    }
}
