//! Thin tonic handlers: authorize → decode → call the service layer → encode.
use tonic::Request;

use crate::error::Result;
use crate::model::Scope;
use crate::service::{Caller, Vault};

mod admin;
mod audit;
mod connect;
pub mod convert;
mod credentials;
mod external_auth;
pub mod health;
mod keys;
pub mod limits;
mod oauth;
pub mod observe;
mod proxy;
mod users;
mod webhooks;

pub use admin::AdminApi;
pub use audit::AuditApi;
pub use connect::ConnectApi;
pub use credentials::CredentialApi;
pub use external_auth::ExternalAuthApi;
pub use keys::KeysApi;
pub use oauth::OAuthApi;
pub use proxy::ProxyApi;
pub use users::UserApi;
pub use webhooks::WebhookApi;

/// Authenticates the request's bearer token and checks `scope`.
async fn authorize<T>(vault: &Vault, req: &Request<T>, scope: Scope) -> Result<Caller> {
    authorize_any(vault, req, &[scope]).await
}

/// Authenticates the request's bearer token; it must hold one of `scopes`.
async fn authorize_any<T>(vault: &Vault, req: &Request<T>, scopes: &[Scope]) -> Result<Caller> {
    // A value that is not visible ASCII is malformed rather than missing.
    let header = req
        .metadata()
        .get("authorization")
        .map(|v| v.to_str().unwrap_or_default());
    let mut caller = vault.authorize_any(header, scopes).await?;
    tracing::Span::current().record("tenant", caller.tenant_id.as_str());
    caller.source = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
    caller.request_id = req
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| id.len() <= observe::MAX_REQUEST_ID)
        .unwrap_or_default()
        .to_owned();
    Ok(caller)
}
