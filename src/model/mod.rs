//! Domain types shared by the service layer and the store.
use std::collections::BTreeMap;
use std::fmt;

/// A newtype for an id with a prefix; `default()` is a fresh id.
macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $prefix:expr) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl Default for $name {
            /// A fresh id.
            fn default() -> Self {
                Self(crate::ids::new_id($prefix))
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use id_newtype;

pub mod audit;
pub mod connect;
pub mod constraints;
pub mod external_auth;
pub mod users;

pub use audit::{AuditEntry, AuditRecord, Checkpoint};
pub use constraints::Constraints;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::clock::Millis;

/// The kind of secret a credential holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ApiKey,
    OAuth2,
    Basic,
}

/// Lifecycle of a credential; see `docs/` for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Expired,
    NeedsReauth,
    Revoked,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The form stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}
text_enum!(Kind { ApiKey = "api_key", OAuth2 = "oauth2", Basic = "basic" });
text_enum!(Status {
    Active = "active",
    Expired = "expired",
    NeedsReauth = "needs_reauth",
    Revoked = "revoked",
});

/// A credential's secret. This is the JSON plaintext inside the envelope
/// (`docs/encryption.md`); it is zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretPayload {
    ApiKey {
        key: String,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        access_token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_token: Option<String>,
        token_type: String,
        #[serde(default)]
        scopes: Vec<String>,
        /// Access-token expiry, Unix milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<Millis>,
    },
    Basic {
        username: String,
        password: String,
    },
}

impl SecretPayload {
    pub fn kind(&self) -> Kind {
        match self {
            Self::ApiKey { .. } => Kind::ApiKey,
            Self::OAuth2 { .. } => Kind::OAuth2,
            Self::Basic { .. } => Kind::Basic,
        }
    }

    /// OAuth scopes granted, stored beside the ciphertext as metadata.
    pub fn scopes(&self) -> &[String] {
        match self {
            Self::OAuth2 { scopes, .. } => scopes,
            _ => &[],
        }
    }

    pub fn token_expires_at(&self) -> Option<Millis> {
        match self {
            Self::OAuth2 { expires_at, .. } => *expires_at,
            _ => None,
        }
    }
}

impl fmt::Debug for SecretPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretPayload::{:?}([redacted])", self.kind())
    }
}

/// Everything about a credential except its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialMeta {
    pub tenant_id: String,
    pub id: String,
    pub user_id: String,
    pub user_email: Option<String>,
    pub name: String,
    pub provider: String,
    pub kind: Kind,
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<Millis>,
    pub token_expires_at: Option<Millis>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// OAuth refresh bookkeeping (internal; not part of the API).
    pub refresh: RefreshState,
    /// The smallest `credential.expiring` horizon already announced, in milliseconds.
    pub expiry_warned_ms: Option<Millis>,
}

impl CredentialMeta {
    /// When this credential stops working for good unless someone acts: its own
    /// expiry or, for an OAuth credential that cannot be refreshed (no refresh token),
    /// its access token's expiry, whichever is first. The expiry scanner works on it.
    pub fn lapses_at(&self) -> Option<Millis> {
        let token = (self.kind == Kind::OAuth2 && self.refresh.next_at.is_none())
            .then_some(self.token_expires_at)
            .flatten();
        match (self.expires_at, token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What a listing shows of a credential: every field the API returns, none of the
/// bookkeeping that [`CredentialMeta`] adds (the tenant, the refresh state, the expiry
/// warnings). A page of listings reads two thirds of a credential's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSummary {
    pub id: String,
    pub user_id: String,
    pub user_email: Option<String>,
    pub name: String,
    pub provider: String,
    pub kind: Kind,
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<Millis>,
    pub token_expires_at: Option<Millis>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl From<CredentialMeta> for CredentialSummary {
    fn from(m: CredentialMeta) -> Self {
        Self {
            id: m.id,
            user_id: m.user_id,
            user_email: m.user_email,
            name: m.name,
            provider: m.provider,
            kind: m.kind,
            status: m.status,
            labels: m.labels,
            scopes: m.scopes,
            expires_at: m.expires_at,
            token_expires_at: m.token_expires_at,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// When an OAuth credential is next due for refresh, and how the last attempts went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshState {
    /// Due at or after this time; `None` when it cannot be refreshed (no refresh
    /// token) or is not OAuth. Pushed back after failures (backoff, `Retry-After`).
    pub next_at: Option<Millis>,
    /// Consecutive failed attempts.
    pub failures: i64,
    /// Why the last attempt failed: a classification, never provider text.
    pub last_error: Option<String>,
    /// Who holds the refresh lease, until when (read-only here: leases are taken and
    /// released by dedicated store calls).
    pub lease_owner: Option<String>,
    pub lease_until: Option<Millis>,
}

/// A credential row as stored: metadata plus the sealed secret (ciphertext only).
#[derive(Clone)]
pub struct SealedCredential {
    pub meta: CredentialMeta,
    pub blob: Vec<u8>,
}

impl fmt::Debug for SealedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedCredential")
            .field("meta", &self.meta)
            .field("blob", &format_args!("[{} bytes]", self.blob.len()))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
}

/// The access a service token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    CredentialsRead,
    CredentialsWrite,
    CredentialsReveal,
    /// Calls providers' APIs with a credential (`ProxyService.Call`) without seeing it.
    CredentialsProxy,
    ProvidersRead,
    ProvidersWrite,
    WebhooksRead,
    WebhooksWrite,
    /// Reads connect links.
    ConnectRead,
    /// Reads end users.
    UsersRead,
    /// Registers, updates and deletes end users (deleting one deletes their
    /// credentials).
    UsersWrite,
    /// Configures external auth connectors.
    AuthAdmin,
    /// Passes end users' logins through a connector.
    AuthLogin,
    /// Mints and revokes connect links (no access to secrets).
    ConnectWrite,
    /// Mints, lists and revokes the tokens of its own tenant.
    TenantAdmin,
    /// Lists and verifies its own tenant's audit log.
    AuditRead,
    /// The vault operator: tenants, every tenant's tokens.
    Admin,
}
text_enum!(Scope {
    CredentialsRead = "credentials:read",
    CredentialsWrite = "credentials:write",
    CredentialsReveal = "credentials:reveal",
    CredentialsProxy = "credentials:proxy",
    ProvidersRead = "providers:read",
    ProvidersWrite = "providers:write",
    WebhooksRead = "webhooks:read",
    WebhooksWrite = "webhooks:write",
    ConnectRead = "connect:read",
    ConnectWrite = "connect:write",
    UsersRead = "users:read",
    UsersWrite = "users:write",
    AuthAdmin = "auth:admin",
    AuthLogin = "auth:login",
    TenantAdmin = "tenant:admin",
    AuditRead = "audit:read",
    Admin = "admin",
});

impl Scope {
    pub const ALL: [Scope; 17] = [
        Scope::CredentialsRead,
        Scope::CredentialsWrite,
        Scope::CredentialsReveal,
        Scope::CredentialsProxy,
        Scope::ProvidersRead,
        Scope::ProvidersWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::ConnectRead,
        Scope::ConnectWrite,
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::AuthAdmin,
        Scope::AuthLogin,
        Scope::TenantAdmin,
        Scope::AuditRead,
        Scope::Admin,
    ];

    /// Every scope's name, comma-separated (for help texts and error messages).
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

/// A service token's stored form: its hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    pub id: String,
    pub tenant_id: String,
    pub scopes: Vec<Scope>,
    pub description: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    /// After this the token no longer authenticates.
    pub expires_at: Option<Millis>,
    /// Which of its tenant's credentials it may touch.
    pub constraints: std::sync::Arc<Constraints>,
}

impl ServiceToken {
    /// Whether the token authenticates at `now`: not revoked, not expired.
    pub fn works_at(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// An outbox row: written in the same transaction as the change it reports, and
/// delivered later. `payload` is the webhook body, fixed at write time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub tenant_id: String,
    pub kind: &'static str,
    pub credential_id: Option<String>,
    pub payload: String,
    pub created_at: Millis,
}

pub const EVENT_EXPIRED: &str = "credential.expired";
pub const EVENT_EXPIRING: &str = "credential.expiring";
pub const EVENT_NEEDS_REAUTH: &str = "credential.needs_reauth";
pub const EVENT_PROVIDER_MISCONFIGURED: &str = "provider.misconfigured";
pub const EVENT_CONNECT_SUCCEEDED: &str = "connect.succeeded";
pub const EVENT_CONNECT_FAILED: &str = "connect.failed";
pub const EVENT_USER_AUTHENTICATED: &str = "user.authenticated";
pub const EVENT_USER_AUTH_FAILED: &str = "user.authentication_failed";
pub const EVENT_USER_LOCKED_OUT: &str = "user.locked_out";
/// Every event type there is.
pub const EVENT_TYPES: &[&str] = &[
    EVENT_EXPIRED,
    EVENT_EXPIRING,
    EVENT_NEEDS_REAUTH,
    EVENT_PROVIDER_MISCONFIGURED,
    EVENT_CONNECT_SUCCEEDED,
    EVENT_CONNECT_FAILED,
    EVENT_USER_AUTHENTICATED,
    EVENT_USER_AUTH_FAILED,
    EVENT_USER_LOCKED_OUT,
];

/// RFC 3339 with milliseconds, UTC: the timestamp form of event payloads.
pub fn rfc3339(ms: Millis) -> String {
    let ts = prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    };
    ts.to_string()
}

impl Event {
    pub(crate) fn new(
        kind: &'static str,
        tenant_id: &str,
        credential_id: Option<&str>,
        data: serde_json::Value,
        at: Millis,
    ) -> Self {
        let id = crate::ids::new_id(crate::ids::EVENT_PREFIX);
        let payload = serde_json::json!({
            "id": id,
            "type": kind,
            "timestamp": rfc3339(at),
            "data": data,
        });
        Self {
            id,
            tenant_id: tenant_id.to_owned(),
            kind,
            credential_id: credential_id.map(str::to_owned),
            payload: payload.to_string(),
            created_at: at,
        }
    }

    /// An event about a credential, carrying who it belongs to (never its secret).
    pub fn credential(kind: &'static str, c: &CredentialMeta, at: Millis) -> Self {
        Self::new(
            kind,
            &c.tenant_id,
            Some(&c.id),
            Self::credential_data(c),
            at,
        )
    }

    /// `credential.expiring`: the credential lapses within `horizon_ms`.
    pub fn expiring(c: &CredentialMeta, horizon_ms: Millis, at: Millis) -> Self {
        let mut data = Self::credential_data(c);
        data["horizonSeconds"] = (horizon_ms / 1000).into();
        Self::new(EVENT_EXPIRING, &c.tenant_id, Some(&c.id), data, at)
    }

    fn credential_data(c: &CredentialMeta) -> serde_json::Value {
        serde_json::json!({
            "tenantId": c.tenant_id,
            "userId": c.user_id,
            "userEmail": c.user_email,
            "credentialId": c.id,
            "credentialName": c.name,
            "provider": c.provider,
            "status": c.status.as_str(),
            "expiresAt": c.lapses_at().or(c.expires_at).map(rfc3339),
        })
    }

    /// A provider rejected our client: every credential of it is at risk.
    pub fn provider_misconfigured(
        tenant_id: &str,
        provider: &str,
        error: &str,
        at: Millis,
    ) -> Self {
        let data =
            serde_json::json!({ "tenantId": tenant_id, "provider": provider, "error": error });
        Self::new(EVENT_PROVIDER_MISCONFIGURED, tenant_id, None, data, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for k in [Kind::ApiKey, Kind::OAuth2, Kind::Basic] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("bogus"), None);
    }

    #[test]
    fn secret_payload_json_is_the_documented_shape_and_debug_redacts() {
        let p = SecretPayload::OAuth2 {
            access_token: "at-canary".into(),
            refresh_token: None,
            token_type: "Bearer".into(),
            scopes: vec!["read".into()],
            expires_at: Some(5),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"oauth2":{"access_token":"at-canary","token_type":"Bearer","scopes":["read"],"expires_at":5}}"#
        );
        assert!(!format!("{p:?}").contains("canary"));
        let k: SecretPayload = serde_json::from_str(r#"{"api_key":{"key":"k"}}"#).unwrap();
        assert_eq!(k.kind(), Kind::ApiKey);
    }
}
