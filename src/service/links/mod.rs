//! Hosted connect: links minted for one end user ([`minting`]), a tenant's page
//! settings and notify signing secret ([`settings`]), and what the hosted page does
//! with a link ([`page`]): show the providers, verify and store what the user typed,
//! run OAuth, and report the outcome by redirect, event and signed notification.
use std::time::Duration;

use super::Vault;
use super::external_auth::ExternalAuth;
use crate::clock::Millis;
use crate::crypto::AadContext;
use crate::error::{Error, Result};
use crate::model::connect::{ConnectLink, LinkId};
use crate::outbound::Outbound;

mod minting;
mod page;
mod settings;
mod sign_in;
mod verify;

pub use minting::Minted;
pub use minting::{LinkPage, NewLink};
pub use page::{Closed, Ended, Finished, FormError, Opened, PageProvider, Submitted};
pub use page::{FormValues, MAX_FIELD_CHARS};
pub(in crate::service) use settings::notify_secrets;
pub use sign_in::{SignInForm, SignInStep, SignedIn};

/// Verifications a link survives; the next rejected one revokes it.
pub const MAX_FAILED_ATTEMPTS: i64 = 10;
pub const DEFAULT_LINK_TTL_MS: Millis = 30 * 60 * 1000;
pub const MIN_LINK_TTL_MS: Millis = 60 * 1000;
pub const MAX_LINK_TTL_MS: Millis = 24 * 60 * 60 * 1000;

/// Settings of the hosted page.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Where links are minted when the tenant has no custom base URL.
    pub public_base_url: String,
    /// Timeout of a verification request.
    pub verify_timeout: Duration,
}

/// The hosted-connect service. Credentials are stored and OAuth flows run through
/// the vault, so the page follows exactly the rules of the API.
#[derive(Clone)]
pub struct Connect {
    vault: Vault,
    outbound: Outbound,
    /// Logins of the sign-in step (sharing the gRPC service's circuit breakers).
    external_auth: ExternalAuth,
    config: ConnectConfig,
}

impl Connect {
    pub fn new(vault: Vault, external_auth: ExternalAuth, config: ConnectConfig) -> Self {
        Self {
            outbound: vault.outbound().clone(),
            vault,
            external_auth,
            config,
        }
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    fn now(&self) -> Millis {
        self.vault.now()
    }

    /// The tenant's link `id`, or NOT_FOUND (as for another tenant's).
    async fn link(&self, tenant_id: &str, id: &str) -> Result<ConnectLink> {
        if !crate::ids::is_well_formed(id, crate::model::connect::LINK_PREFIX) {
            return Err(Error::invalid(
                "id",
                "must be a connect link id such as cl_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
            ));
        }
        self.vault
            .store
            .get_link(tenant_id, &LinkId(id.to_owned()))
            .await?
            .ok_or_else(|| Error::NotFound(format!("connect link {id} not found")))
    }
}

/// The AAD of a tenant's connect signing secrets: no credential or endpoint id can
/// take the place of this fixed name.
/// The AAD id of a tenant's connect signing secret.
pub(super) const SIGNING_SECRET_ID: &str = "connect:signing-secret";

fn secret_aad(tenant_id: &str) -> AadContext<'_> {
    AadContext {
        tenant_id,
        user_id: "",
        credential_id: SIGNING_SECRET_ID,
    }
}
