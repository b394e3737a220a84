//! What the database knows about master keys: which version is active cluster-wide,
//! which versions each replica holds (heartbeats), which are retired, how many seals
//! each made; and the sealed values themselves, walked column by column for rewrap.
use async_trait::async_trait;

use super::StoreResult;
use crate::clock::Millis;

/// Every column that holds sealed values. The rewrap job walks each in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedColumn {
    TenantKey,
    CredentialSecret,
    ProviderClientSecret,
    OAuthStateVerifier,
    WebhookSecret,
    WebhookPreviousSecret,
    ConnectSecret,
    ConnectPreviousSecret,
    ConnectorConfig,
}

impl SealedColumn {
    /// Tenant keys first: a pass moves them under the active master key before it
    /// moves older values under the tenant keys.
    pub const ALL: [SealedColumn; 9] = [
        Self::TenantKey,
        Self::CredentialSecret,
        Self::ProviderClientSecret,
        Self::OAuthStateVerifier,
        Self::WebhookSecret,
        Self::WebhookPreviousSecret,
        Self::ConnectSecret,
        Self::ConnectPreviousSecret,
        Self::ConnectorConfig,
    ];

    /// `table.column`, as `keys status` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::TenantKey => "tenant_keys.sealed",
            Self::CredentialSecret => "credentials.secret",
            Self::ProviderClientSecret => "oauth_providers.client_secret",
            Self::OAuthStateVerifier => "oauth_states.pkce_verifier",
            Self::WebhookSecret => "webhook_endpoints.secret",
            Self::WebhookPreviousSecret => "webhook_endpoints.previous_secret",
            Self::ConnectSecret => "connect_settings.secret",
            Self::ConnectPreviousSecret => "connect_settings.previous_secret",
            Self::ConnectorConfig => "auth_connectors.config",
        }
    }
}

/// One sealed value and what its AAD is built from.
#[derive(Clone)]
pub struct SealedValue {
    pub tenant_id: String,
    /// The row's id within the tenant (empty where the tenant alone is the key).
    pub id: String,
    /// What besides the tenant and the id the value's AAD is built from: the end
    /// user (credentials, OAuth states), the provider's JSON config, or empty.
    pub context: String,
    pub blob: Vec<u8>,
}

impl std::fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedValue")
            .field("tenant_id", &self.tenant_id)
            .field("id", &self.id)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// A rewrapped value: written only if the row still holds `old` (version fencing).
pub struct Resealed<'a> {
    pub tenant_id: &'a str,
    pub id: &'a str,
    pub old: &'a [u8],
    pub new: Vec<u8>,
}

/// How many values of one column one (format, key version) seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCount {
    pub column: SealedColumn,
    pub format: u8,
    pub key_version: u32,
    pub values: u64,
}

/// A key version as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionRow {
    pub version: u32,
    /// `active`, `ready` or `retired`.
    pub state: String,
    /// Seals made under it (flushed by every replica's heartbeat).
    pub seals: u64,
    /// Format-1 values found under it when the vault first counted (a lower bound
    /// of the seals made under it directly with the master key).
    pub legacy_seals: u64,
}

/// A replica's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    pub id: String,
    /// The key versions its keyring holds.
    pub versions: Vec<u32>,
    pub seen_at: Millis,
}

/// A heartbeat: who, what it holds, and the seals it made since the last one.
#[derive(Debug, Clone)]
pub struct Heartbeat<'a> {
    pub replica: &'a str,
    pub versions: &'a [u32],
    pub seals: &'a [(u32, u64)],
    pub at: Millis,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores `value` as `version`'s key check value unless one is stored; returns
    /// the stored one.
    async fn key_check(&self, version: u32, value: &[u8], at: Millis) -> StoreResult<Vec<u8>>;
    /// Replaces `version`'s key check value if it is still `old`.
    async fn replace_key_check(&self, version: u32, old: &[u8], new: &[u8]) -> StoreResult<()>;

    /// The cluster's active version, setting it to `proposed` if none is set yet.
    async fn init_active_key(&self, proposed: u32, at: Millis) -> StoreResult<u32>;
    /// Makes `version` the active one, the previous active one `ready`.
    async fn activate_key(&self, version: u32, at: Millis) -> StoreResult<()>;
    /// Marks a non-active version retired; false if it is active.
    async fn retire_key(&self, version: u32, at: Millis) -> StoreResult<bool>;
    async fn key_versions(&self) -> StoreResult<Vec<KeyVersionRow>>;
    /// Registers the held versions (with the format-1 values found under each as
    /// their initial legacy seal count), adds the seals, records the heartbeat.
    async fn heartbeat(&self, beat: &Heartbeat<'_>, legacy: &[(u32, u64)]) -> StoreResult<()>;
    /// Replicas heard from at or after `since`.
    async fn live_replicas(&self, since: Millis) -> StoreResult<Vec<ReplicaRow>>;
    /// Forgets a replica (it stopped cleanly).
    async fn leave(&self, replica: &str) -> StoreResult<()>;

    /// Per column, format and key version: how many values.
    async fn sealed_counts(&self) -> StoreResult<Vec<SealedCount>>;
    /// Up to `limit` values of `column` after the row key `after`, in key order,
    /// whose header is not `current` (format byte and key version).
    async fn sealed_batch(
        &self,
        column: SealedColumn,
        after: Option<(&str, &str)>,
        current: &[u8],
        limit: u32,
    ) -> StoreResult<Vec<SealedValue>>;
    /// Writes each value whose row still holds its `old` blob, in one transaction;
    /// returns how many were written.
    async fn replace_sealed(
        &self,
        column: SealedColumn,
        values: &[Resealed<'_>],
    ) -> StoreResult<u64>;
}
