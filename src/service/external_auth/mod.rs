//! External auth: a tenant's connectors to its own REST auth system
//! ([`connectors`]), and logins passed through them ([`login`]) without the password
//! ever being stored: pre-validation, the registered-user check, shared lockouts
//! ([`crate::store::LockoutPolicy`]), a circuit breaker per connector ([`breaker`]),
//! the templated request, and what its answer means ([`answer`]).
use std::sync::Arc;

use super::Vault;
use crate::clock::Millis;
use crate::crypto::AadContext;
use crate::error::{Error, Result};
use crate::model::external_auth::{
    CONNECTOR_PREFIX, Connector, ConnectorConfig, ConnectorId, SealedConnector,
};
use crate::store::LockoutPolicy;

mod answer;
pub mod breaker;
mod connectors;
mod login;

pub use answer::{LOCKED_OUT, UPSTREAM_UNAVAILABLE};
pub use breaker::BreakerState;
pub use connectors::ConnectorSpec;
pub use login::{ForgotOutcome, Login, LoginOutcome, Subject};

/// The external auth service: connectors and logins, holding only what they use.
#[derive(Clone)]
pub struct ExternalAuth {
    vault: Vault,
    breakers: Arc<breaker::Breakers>,
    policy: LockoutPolicy,
}

/// The AAD of a connector's sealed configuration: its tenant and `ac_` id (which
/// cannot collide with a credential's).
fn aad_of<'a>(tenant_id: &'a str, id: &'a ConnectorId) -> AadContext<'a> {
    AadContext {
        tenant_id,
        user_id: "",
        credential_id: id.as_str(),
    }
}

impl ExternalAuth {
    pub fn new(vault: Vault, policy: LockoutPolicy) -> Self {
        Self {
            vault,
            breakers: Arc::default(),
            policy,
        }
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    fn now(&self) -> Millis {
        self.vault.now()
    }

    /// The tenant's connector `id`, its configuration opened; NOT_FOUND as for
    /// another tenant's.
    pub async fn connector(&self, tenant_id: &str, id: &str) -> Result<Connector> {
        if !crate::ids::is_well_formed(id, CONNECTOR_PREFIX) {
            return Err(Error::invalid(
                "connector_id",
                "must be a connector id such as ac_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
            ));
        }
        let id = ConnectorId(id.to_owned());
        let sealed = self
            .vault
            .store
            .get_connector(tenant_id, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("connector {id} not found")))?;
        self.open(sealed).await
    }

    async fn open(&self, s: SealedConnector) -> Result<Connector> {
        let text = self
            .vault
            .open_text(
                &aad_of(&s.tenant_id, &s.id),
                &s.config,
                "a connector's configuration",
            )
            .await?;
        let config: ConnectorConfig = serde_json::from_str(&text).map_err(|_| {
            Error::DataLoss(format!(
                "connector {}: stored configuration is invalid",
                s.id
            ))
        })?;
        Ok(Connector {
            tenant_id: s.tenant_id,
            id: s.id,
            name: s.name,
            config,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
    }

    async fn seal(&self, c: &Connector) -> Result<SealedConnector> {
        let json = zeroize::Zeroizing::new(serde_json::to_string(&c.config).unwrap_or_default());
        Ok(SealedConnector {
            tenant_id: c.tenant_id.clone(),
            id: c.id.clone(),
            name: c.name.clone(),
            config: self
                .vault
                .tenant_keys
                .seal(&aad_of(&c.tenant_id, &c.id), json.as_bytes())
                .await?,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        })
    }

    /// The circuit breaker's state for a connector, as this replica sees it.
    pub fn breaker_state(&self, id: &ConnectorId) -> BreakerState {
        self.breakers.state(id, self.now())
    }
}
