//! Decoding rows into domain types, and the text forms of list columns.
use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{IdempotencyRecord, StoreError, StoreResult};
use crate::model::{CredentialMeta, Kind, Scope, SealedCredential, ServiceToken, Status, Tenant};

/// Columns of a credential's metadata, selected from `credentials c` joined with
/// `end_users u`; [`credential_meta`] decodes them.
pub const CREDENTIAL_COLUMNS: &str = "c.tenant_id, c.id, c.user_id, u.email, c.name, c.provider, \
     c.kind, c.status, c.labels, c.scopes, c.expires_at, c.token_expires_at, c.version, \
     c.created_at, c.updated_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub fn credential_meta(row: &AnyRow) -> StoreResult<CredentialMeta> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let labels: String = row.try_get("labels")?;
    let scopes: String = row.try_get("scopes")?;
    Ok(CredentialMeta {
        tenant_id: row.try_get("tenant_id")?,
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        user_email: row.try_get("email")?,
        name: row.try_get("name")?,
        provider: row.try_get("provider")?,
        kind: Kind::parse(&kind).ok_or_else(|| corrupt("credential kind"))?,
        status: Status::parse(&status).ok_or_else(|| corrupt("credential status"))?,
        labels: serde_json::from_str::<BTreeMap<String, String>>(&labels)
            .map_err(|_| corrupt("credential labels"))?,
        scopes: serde_json::from_str(&scopes).map_err(|_| corrupt("credential scopes"))?,
        expires_at: row.try_get("expires_at")?,
        token_expires_at: row.try_get("token_expires_at")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn sealed_credential(row: &AnyRow) -> StoreResult<SealedCredential> {
    Ok(SealedCredential {
        meta: credential_meta(row)?,
        blob: row.try_get("secret")?,
    })
}

pub fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Maps of strings and lists of strings always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

pub fn tenant(row: &AnyRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

pub const TOKEN_COLUMNS: &str = "id, tenant_id, scopes, description, created_at, revoked_at";

pub fn service_token(row: &AnyRow) -> StoreResult<ServiceToken> {
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
    })
}

pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn idempotency(row: &AnyRow) -> StoreResult<IdempotencyRecord> {
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
