//! Hosted connect: links minted for one end user, and a tenant's page settings.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use super::{EVENT_CONNECT_FAILED, EVENT_CONNECT_SUCCEEDED, Event};
use crate::clock::Millis;

pub const LINK_PREFIX: &str = "cl_";

super::id_newtype!(
    /// A connect link's id (`cl_…`); not its bearer token, which is never stored.
    LinkId,
    LINK_PREFIX
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    #[default]
    Create,
    Reconnect,
}

/// The stored status. `Expired` is never stored: a pending link past its expiry
/// reads as expired (see [`ConnectLink::status_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Pending,
    Completed,
    Expired,
    Revoked,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Completed, Self::Expired, Self::Revoked]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Why a link was revoked.
pub const REVOKED_BY_CALLER: &str = "revoked";
pub const REVOKED_TOO_MANY_ATTEMPTS: &str = "too_many_attempts";
/// Someone signed in (through the link's sign-in connector) as another user.
pub const REVOKED_IDENTITY_MISMATCH: &str = "identity_mismatch";

/// What a link was minted for; fixed at creation, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LinkRequest {
    pub link_type: LinkType,
    /// Slugs, or `["*"]`.
    pub providers: Vec<String>,
    pub reconnect_credential_id: Option<String>,
    /// The caller's own opaque name for this connection (echoed everywhere).
    pub name: String,
    pub credential_name: String,
    pub labels: BTreeMap<String, String>,
    pub success_redirect_url: String,
    pub failure_redirect_url: String,
    pub notify_url: String,
    /// The connector (`ac_…`) the user signs in through before the providers are
    /// shown, if the link requires sign-in.
    pub sign_in_connector: Option<String>,
}

/// A stored connect link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectLink {
    pub tenant_id: String,
    pub id: LinkId,
    /// SHA-256 of the bearer token in the link's URL.
    pub token_hash: Vec<u8>,
    pub user_id: String,
    pub user_email: String,
    pub request: LinkRequest,
    /// `Pending`, `Completed` or `Revoked` as stored.
    pub status: LinkStatus,
    pub credential_id: Option<String>,
    pub failed_attempts: i64,
    pub revoked_reason: Option<String>,
    pub expires_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub completed_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    /// SHA-256 of the `cv_browser` cookie of the browser that signed in (links that
    /// require sign-in only).
    pub signed_in_browser: Option<Vec<u8>>,
}

impl ConnectLink {
    /// The status as callers see it at `now`.
    pub fn status_at(&self, now: Millis) -> LinkStatus {
        match self.status {
            LinkStatus::Pending if self.expires_at <= now => LinkStatus::Expired,
            status => status,
        }
    }
}

/// A terminal change of a link: pending → completed or revoked.
#[derive(Debug, Clone)]
pub struct LinkChange<'a> {
    pub tenant_id: &'a str,
    pub id: &'a LinkId,
    pub status: LinkStatus,
    pub credential_id: Option<&'a str>,
    pub revoked_reason: Option<&'a str>,
    pub at: Millis,
}

/// A tenant's hosted-page settings (the signing secret is sealed separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ConnectSettings {
    pub display_name: String,
    pub logo_url: String,
    pub primary_color: String,
    pub terms_url: String,
    pub privacy_url: String,
    pub support_url: String,
    pub allowed_redirect_urls: Vec<String>,
    pub allowed_embedding_origins: Vec<String>,
    pub custom_base_url: String,
}

/// A settings row: settings, the sealed `whsec_` notify signing secret and, during
/// a rotation's overlap, the previous one.
#[derive(Clone, Default)]
pub struct SealedConnectSettings {
    pub tenant_id: String,
    pub settings: ConnectSettings,
    pub secret: Option<Vec<u8>>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<Millis>,
    /// 0 before the row is first stored.
    pub version: i64,
    pub updated_at: Millis,
}

impl fmt::Debug for SealedConnectSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedConnectSettings")
            .field("tenant_id", &self.tenant_id)
            .field("settings", &self.settings)
            .field("secret", &self.secret.as_ref().map(|_| "[sealed]"))
            .field("previous_secret_until", &self.previous_secret_until)
            .field("version", &self.version)
            .finish()
    }
}

/// The outcome a connect event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// A new credential was stored.
    Created,
    /// A credential's secret was replaced in place.
    Reconnected,
    /// The flow failed for good with this code (see docs/connect.md).
    Failed(&'static str),
}

/// The credential a connect event is about, if one was stored.
#[derive(Debug, Clone, Default)]
pub struct ConnectedCredential {
    pub id: String,
    pub name: String,
    pub provider: String,
}

impl Event {
    /// `connect.succeeded` / `connect.failed` for `link`; the body never carries
    /// what the user typed.
    pub fn connect(
        link: &ConnectLink,
        outcome: ConnectOutcome,
        credential: &ConnectedCredential,
        at: Millis,
    ) -> Self {
        let (kind, status) = match outcome {
            ConnectOutcome::Created => (EVENT_CONNECT_SUCCEEDED, "CREATION_SUCCESS"),
            ConnectOutcome::Reconnected => (EVENT_CONNECT_SUCCEEDED, "RECONNECTED"),
            ConnectOutcome::Failed(code) => (EVENT_CONNECT_FAILED, code),
        };
        let optional = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let data = serde_json::json!({
            "tenantId": link.tenant_id,
            "status": status,
            "name": link.request.name,
            "linkId": link.id,
            "credentialId": optional(&credential.id),
            "credentialName": optional(&credential.name),
            "userId": link.user_id,
            "userEmail": optional(&link.user_email),
            "provider": optional(&credential.provider),
        });
        let credential_id = (!credential.id.is_empty()).then_some(credential.id.as_str());
        Self::new(kind, &link.tenant_id, credential_id, data, at)
    }
}
