//! The AAD of each sealed column's values, rebuilt from what the store reads, so a
//! value can be opened and re-sealed in place without knowing its domain type.
use crate::crypto::AadContext;
use crate::oauth::ProviderConfig;
use crate::service::{links, providers};
use crate::store::{SealedColumn, SealedValue};

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
