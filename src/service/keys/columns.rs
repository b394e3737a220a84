//! The AAD of each sealed column's values, rebuilt from what the store reads, so a
//! value can be opened and re-sealed in place without knowing its domain type; and
//! the header each column's values have once rewrapped.
use crate::crypto::{AadContext, FORMAT_VERSION, TENANT_FORMAT_VERSION, tenant_key_aad};
use crate::oauth::ProviderConfig;
use crate::service::{links, providers};
use crate::store::{SealedColumn, SealedCount, SealedValue};

/// The owned parts of a value's AAD.
pub(super) struct Aad {
    tenant_id: String,
    user_id: String,
    id: String,
}

impl Aad {
    /// The AAD `value` of `column` was sealed with, as the column's own service
    /// builds it.
    pub(super) fn of(column: SealedColumn, value: &SealedValue) -> Aad {
        let (user_id, id) = match column {
            SealedColumn::CredentialSecret | SealedColumn::OAuthStateVerifier => {
                (value.context.clone(), value.id.clone())
            }
            // A config that does not parse binds nothing: the value then fails to open
            // and is reported, never re-sealed under a wrong binding.
            SealedColumn::ProviderClientSecret => (
                serde_json::from_str::<ProviderConfig>(&value.context)
                    .map(|c| providers::endpoint_binding(&c))
                    .unwrap_or_default(),
                value.id.clone(),
            ),
            SealedColumn::WebhookSecret
            | SealedColumn::WebhookPreviousSecret
            | SealedColumn::ConnectorConfig => (String::new(), value.id.clone()),
            SealedColumn::ConnectSecret | SealedColumn::ConnectPreviousSecret => {
                (String::new(), links::SIGNING_SECRET_ID.to_owned())
            }
            SealedColumn::TenantKey => {
                let aad = tenant_key_aad(&value.tenant_id);
                (aad.user_id.to_owned(), aad.credential_id.to_owned())
            }
        };
        Aad {
            tenant_id: value.tenant_id.clone(),
            user_id,
            id,
        }
    }

    pub(super) fn context(&self) -> AadContext<'_> {
        AadContext {
            tenant_id: &self.tenant_id,
            user_id: &self.user_id,
            credential_id: &self.id,
        }
    }
}

/// The header (format byte and key version) of `column`'s values once rewrapped:
/// tenant keys in format 2 under the active master key, every other value in format 3
/// under its tenant's key (key version 0).
pub(super) fn current_head(column: SealedColumn, active: u32) -> Vec<u8> {
    let (format, version) = match column {
        SealedColumn::TenantKey => (FORMAT_VERSION, active),
        _ => (TENANT_FORMAT_VERSION, 0),
    };
    let mut head = vec![format];
    head.extend_from_slice(&version.to_be_bytes());
    head
}

/// Whether values counted as `count` need no rewrap while `active` is active.
pub(super) fn is_current(count: &SealedCount, active: u32) -> bool {
    let head = current_head(count.column, active);
    count.format == head[0] && count.key_version.to_be_bytes() == head[1..]
}
