//! Decoding rows into domain types, and the text forms of list columns.
use sqlx::Row;

use super::engine::DbRow;
use crate::model::{Constraints, Event, Scope, ServiceToken, Tenant};
use crate::oauth::{ConnectRequest, OAuthState, Provider, ProviderConfig, SealedProvider};
use crate::store::credential_row::Columns;
pub use crate::store::credential_row::{
    CREDENTIAL_COLUMNS, SUMMARY_COLUMNS, credential_meta, credential_summary, sealed_credential,
};
use crate::store::{IdempotencyRecord, StoreError, StoreResult};
use crate::webhooks::{Delivery, DeliveryStatus, Endpoint, SealedEndpoint};

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// This driver's rows, for the one decoder of a credential's row.
impl Columns for DbRow {
    fn text(&self, name: &str) -> StoreResult<String> {
        Ok(self.try_get(name)?)
    }
    fn text_or_null(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(self.try_get(name)?)
    }
    fn int(&self, name: &str) -> StoreResult<i64> {
        Ok(self.try_get(name)?)
    }
    fn int_or_null(&self, name: &str) -> StoreResult<Option<i64>> {
        Ok(self.try_get(name)?)
    }
    fn bytes(&self, name: &str) -> StoreResult<Vec<u8>> {
        Ok(self.try_get(name)?)
    }
}

pub fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Maps of strings and lists of strings always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

pub fn tenant(row: &DbRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

pub const TOKEN_COLUMNS: &str =
    "id, tenant_id, scopes, description, created_at, revoked_at, expires_at, constraints";

pub fn service_token(row: &DbRow) -> StoreResult<ServiceToken> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ServiceToken {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        scopes: scopes
            .split_whitespace()
            .map(|s| Scope::parse(s).ok_or_else(|| corrupt("token scope")))
            .collect::<StoreResult<_>>()?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        expires_at: row.try_get("expires_at")?,
        constraints: Constraints::from_text(&row.try_get::<String, _>("constraints")?)
            .map(std::sync::Arc::new)
            .ok_or_else(|| corrupt("token constraints"))?,
    })
}

pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn idempotency(row: &DbRow) -> StoreResult<IdempotencyRecord> {
    let key_version: i64 = row.try_get("key_version")?;
    Ok(IdempotencyRecord {
        tenant_id: row.try_get("tenant_id")?,
        request_id: row.try_get("request_id")?,
        fingerprint: row.try_get("fingerprint")?,
        key_version: u32::try_from(key_version).map_err(|_| corrupt("idempotency key version"))?,
        credential_id: row.try_get("credential_id")?,
        created_at: row.try_get("created_at")?,
    })
}

pub const PROVIDER_COLUMNS: &str = "tenant_id, id, slug, config, client_secret, last_error, last_error_at, version, created_at, updated_at";

pub fn provider(row: &DbRow) -> StoreResult<SealedProvider> {
    let config: String = row.try_get("config")?;
    Ok(SealedProvider {
        provider: Provider {
            tenant_id: row.try_get("tenant_id")?,
            id: row.try_get("id")?,
            slug: row.try_get("slug")?,
            config: serde_json::from_str::<ProviderConfig>(&config)
                .map_err(|_| corrupt("provider config"))?,
            last_error: row.try_get("last_error")?,
            last_error_at: row.try_get("last_error_at")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        },
        client_secret: row.try_get("client_secret")?,
    })
}

pub const STATE_COLUMNS: &str = "state_hash, id, tenant_id, user_id, user_email, provider, request, \
     pkce_verifier, expires_at, used_at, created_at";

pub fn oauth_state(row: &DbRow) -> StoreResult<OAuthState> {
    let request: String = row.try_get("request")?;
    Ok(OAuthState {
        state_hash: row.try_get("state_hash")?,
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        user_email: row.try_get("user_email")?,
        provider: row.try_get("provider")?,
        request: serde_json::from_str::<ConnectRequest>(&request)
            .map_err(|_| corrupt("oauth state request"))?,
        pkce_verifier: row.try_get("pkce_verifier")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        created_at: row.try_get("created_at")?,
    })
}

pub const EVENT_COLUMNS: &str = "id, tenant_id, type, credential_id, payload, created_at";

/// Event rows as read back; `kind` is one of the known event types.
pub fn event(row: &DbRow) -> StoreResult<Event> {
    let kind: String = row.try_get("type")?;
    let kind = crate::model::EVENT_TYPES
        .iter()
        .copied()
        .find(|k| *k == kind)
        .ok_or_else(|| corrupt("event type"))?;
    Ok(Event {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        kind,
        credential_id: row.try_get("credential_id")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
    })
}

pub const ENDPOINT_COLUMNS: &str = "tenant_id, id, url, event_types, enabled, disabled_reason, secret, \
     previous_secret, previous_secret_until, version, created_at, updated_at";

pub fn endpoint(row: &DbRow) -> StoreResult<SealedEndpoint> {
    let types: String = row.try_get("event_types")?;
    let enabled: i64 = row.try_get("enabled")?;
    Ok(SealedEndpoint {
        endpoint: Endpoint {
            tenant_id: row.try_get("tenant_id")?,
            id: row.try_get("id")?,
            url: row.try_get("url")?,
            event_types: serde_json::from_str(&types)
                .map_err(|_| corrupt("endpoint event types"))?,
            enabled: enabled != 0,
            disabled_reason: row.try_get("disabled_reason")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        },
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_secret_until: row.try_get("previous_secret_until")?,
    })
}

pub const DELIVERY_COLUMNS: &str = "id, tenant_id, event_id, endpoint_id, status, attempts, \
     next_attempt_at, last_status, last_error, created_at, updated_at, delivered_at, url";

pub fn delivery(row: &DbRow) -> StoreResult<Delivery> {
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        event_id: row.try_get("event_id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status"))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        delivered_at: row.try_get("delivered_at")?,
        url: row.try_get("url")?,
    })
}
