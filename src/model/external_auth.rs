//! External auth connectors: how to pass an end user's login through to a tenant's
//! own REST auth system, and what its answers mean.
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{EVENT_USER_AUTH_FAILED, EVENT_USER_AUTHENTICATED, EVENT_USER_LOCKED_OUT, Event};
use crate::clock::Millis;
use crate::template::request::{BodyFormat, RequestTemplate};

pub const CONNECTOR_PREFIX: &str = "ac_";

super::id_newtype!(
    /// An external auth connector's id (`ac_…`).
    ConnectorId,
    CONNECTOR_PREFIX
);

/// Placeholders a connector's templates may use.
pub const PLACEHOLDERS: [&str; 8] = [
    "USERID",
    "USEREMAIL",
    "USERPASSWORD",
    "USEREXTERNALID",
    "ORGID",
    "DEVICEOS",
    "DEVICENAME",
    "DEVICEIP",
];
pub const PASSWORD: &str = "USERPASSWORD";

pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const MAX_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum LoginMethod {
    #[default]
    Post,
    Put,
    Get,
}

impl LoginMethod {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "" | "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            "GET" => Some(Self::Get),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Get => "GET",
        }
    }

    pub fn http(self) -> http::Method {
        match self {
            Self::Post => http::Method::POST,
            Self::Put => http::Method::PUT,
            Self::Get => http::Method::GET,
        }
    }
}

/// The login request. Header values may hold a key to the tenant's system: the
/// whole configuration is sealed at rest, and `Debug` shows header names only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginTemplate {
    pub url: String,
    pub method: LoginMethod,
    pub format: BodyFormat,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// Adds `Authorization: Basic base64(email:password)`.
    pub basic_auth: bool,
    pub timeout_ms: u64,
}

impl LoginTemplate {
    /// The request as a template, sent with `method` (this template's, as http).
    pub fn request<'a>(&'a self, method: &'a http::Method) -> RequestTemplate<'a> {
        RequestTemplate {
            method,
            url: &self.url,
            headers: &self.headers,
            body: &self.body,
            format: self.format,
        }
    }
}

impl fmt::Debug for LoginTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginTemplate")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("format", &self.format)
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("body", &self.body)
            .field("basic_auth", &self.basic_auth)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The forgot-password request: always a GET.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgotTemplate {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

impl fmt::Debug for ForgotTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgotTemplate")
            .field("url", &self.url)
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Checks on the input made before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PreValidation {
    /// Lowercase domains; empty: any.
    pub allowed_email_domains: Vec<String>,
    pub username_prefix: String,
    pub pattern: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdSource {
    JsonPointer,
    XmlPath,
    Header,
}

/// Where the user's id is in a 200 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalIdLocation {
    pub source: IdSource,
    pub path: String,
}

/// A refused login's status (and optionally a body value) mapped to a code and the
/// message the user sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRule {
    pub status_min: u16,
    pub status_max: u16,
    pub match_path: String,
    pub match_value: String,
    pub error_code: String,
    pub message: String,
}

/// Texts and links of the hosted sign-in step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SignInPage {
    pub title: String,
    pub description: String,
    pub username_label: String,
    pub terms_url: String,
    pub faq_url: String,
    pub password_reset_url: String,
}

/// Everything a connector is configured with; sealed as one JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorConfig {
    pub authentication: LoginTemplate,
    pub forgot_password: Option<ForgotTemplate>,
    pub pre_validation: PreValidation,
    pub link_users: bool,
    pub external_id: Option<ExternalIdLocation>,
    pub error_mapping: Vec<ErrorRule>,
    pub page: SignInPage,
    pub allow_private_network: bool,
}

/// A connector with its configuration open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub tenant_id: String,
    pub id: ConnectorId,
    pub name: String,
    pub config: ConnectorConfig,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A connector as stored: its configuration sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedConnector {
    pub tenant_id: String,
    pub id: ConnectorId,
    pub name: String,
    pub config: Vec<u8>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Who tried to sign in, from where (never the password).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub os: String,
    pub name: String,
    pub ip: String,
}

/// How a login attempt ended, for events and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome<'a> {
    Authenticated,
    Failed(&'a str),
    LockedOut,
}

/// One login attempt, as reported in events and the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub tenant_id: &'a str,
    pub connector_id: &'a ConnectorId,
    pub user_id: &'a str,
    pub user_email: &'a str,
    pub device: &'a Device,
    pub outcome: AttemptOutcome<'a>,
    pub latency_ms: u64,
}

impl Attempt<'_> {
    /// `user.authenticated`, `user.authentication_failed` or `user.locked_out`.
    pub fn event(&self, at: Millis) -> Event {
        let (kind, code) = match self.outcome {
            AttemptOutcome::Authenticated => (EVENT_USER_AUTHENTICATED, None),
            AttemptOutcome::Failed(code) => (EVENT_USER_AUTH_FAILED, Some(code)),
            AttemptOutcome::LockedOut => (EVENT_USER_LOCKED_OUT, Some("locked_out")),
        };
        let optional = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let data = serde_json::json!({
            "tenantId": self.tenant_id,
            "connectorId": self.connector_id,
            "userId": optional(self.user_id),
            "userEmail": optional(self.user_email),
            "errorCode": code,
            "deviceIp": optional(&self.device.ip),
            "deviceOs": optional(&self.device.os),
            "deviceName": optional(&self.device.name),
        });
        Event::new(kind, self.tenant_id, None, data, at)
    }

    /// The audit record's detail: user, connector, device address, outcome, latency.
    pub fn detail(&self) -> String {
        let outcome = match self.outcome {
            AttemptOutcome::Authenticated => "authenticated",
            AttemptOutcome::Failed(code) => code,
            AttemptOutcome::LockedOut => "locked_out",
        };
        serde_json::json!({
            "userId": self.user_id,
            "connectorId": self.connector_id,
            "deviceIp": self.device.ip,
            "outcome": outcome,
            "latencyMs": self.latency_ms,
        })
        .to_string()
    }
}
