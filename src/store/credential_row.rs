//! A credential's row, decoded once for every driver that reads it: sqlx's on either
//! engine (`sql/rows.rs`) and, for SQLite's reads on the calling thread, rusqlite's
//! (`sqlite/caller_reads.rs`). Each driver's row gives its columns by name through
//! [`Columns`]; what they mean is decided here alone. A listing reads only a
//! credential's summary ([`SUMMARY_COLUMNS`]); everything else reads it whole.
use std::collections::BTreeMap;

use crate::model::{
    CredentialMeta, CredentialSummary, Kind, RefreshState, SealedCredential, Status,
};
use crate::store::{StoreError, StoreResult};

/// The columns of a credential's [`CredentialSummary`], as a literal for `concat!`.
macro_rules! summary_columns {
    () => {
        "c.id, c.user_id, u.email, c.name, c.provider, c.kind, c.status, c.labels, c.scopes, \
         c.expires_at, c.token_expires_at, c.version, c.created_at, c.updated_at"
    };
}

/// Columns of a credential's summary, selected from `credentials c` joined with
/// `end_users u`; [`credential_summary`] decodes them.
pub const SUMMARY_COLUMNS: &str = summary_columns!();

/// Columns of a credential's metadata: its summary's and the bookkeeping;
/// [`credential_meta`] decodes them.
pub const CREDENTIAL_COLUMNS: &str = concat!(
    summary_columns!(),
    ", c.tenant_id, c.next_refresh_at, c.refresh_failures, c.last_refresh_error, \
     c.refresh_lease_owner, c.refresh_lease_until, c.expiry_warned_ms"
);

/// Credentials of tenant `$1`, each joined with its end user (for the email).
pub const CREDENTIALS_OF_TENANT: &str = "FROM credentials c \
     JOIN end_users u ON u.tenant_id = c.tenant_id AND u.user_id = c.user_id \
     WHERE c.tenant_id = $1";

/// A row's columns by name, in the few types a credential's row holds.
pub trait Columns {
    fn text(&self, name: &str) -> StoreResult<String>;
    fn text_or_null(&self, name: &str) -> StoreResult<Option<String>>;
    fn int(&self, name: &str) -> StoreResult<i64>;
    fn int_or_null(&self, name: &str) -> StoreResult<Option<i64>>;
    fn bytes(&self, name: &str) -> StoreResult<Vec<u8>>;
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub fn credential_summary<R: Columns + ?Sized>(row: &R) -> StoreResult<CredentialSummary> {
    let kind = row.text("kind")?;
    let status = row.text("status")?;
    Ok(CredentialSummary {
        id: row.text("id")?,
        user_id: row.text("user_id")?,
        user_email: row.text_or_null("email")?,
        name: row.text("name")?,
        provider: row.text("provider")?,
        kind: Kind::parse(&kind).ok_or_else(|| corrupt("credential kind"))?,
        status: Status::parse(&status).ok_or_else(|| corrupt("credential status"))?,
        labels: serde_json::from_str::<BTreeMap<String, String>>(&row.text("labels")?)
            .map_err(|_| corrupt("credential labels"))?,
        scopes: serde_json::from_str(&row.text("scopes")?)
            .map_err(|_| corrupt("credential scopes"))?,
        expires_at: row.int_or_null("expires_at")?,
        token_expires_at: row.int_or_null("token_expires_at")?,
        version: row.int("version")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn credential_meta<R: Columns + ?Sized>(row: &R) -> StoreResult<CredentialMeta> {
    let s = credential_summary(row)?;
    Ok(CredentialMeta {
        tenant_id: row.text("tenant_id")?,
        id: s.id,
        user_id: s.user_id,
        user_email: s.user_email,
        name: s.name,
        provider: s.provider,
        kind: s.kind,
        status: s.status,
        labels: s.labels,
        scopes: s.scopes,
        expires_at: s.expires_at,
        token_expires_at: s.token_expires_at,
        version: s.version,
        created_at: s.created_at,
        updated_at: s.updated_at,
        refresh: RefreshState {
            next_at: row.int_or_null("next_refresh_at")?,
            failures: row.int("refresh_failures")?,
            last_error: row.text_or_null("last_refresh_error")?,
            lease_owner: row.text_or_null("refresh_lease_owner")?,
            lease_until: row.int_or_null("refresh_lease_until")?,
        },
        expiry_warned_ms: row.int_or_null("expiry_warned_ms")?,
    })
}

/// [`credential_meta`] and the sealed secret (column `secret`).
pub fn sealed_credential<R: Columns + ?Sized>(row: &R) -> StoreResult<SealedCredential> {
    Ok(SealedCredential {
        meta: credential_meta(row)?,
        blob: row.bytes("secret")?,
    })
}
