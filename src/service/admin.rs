//! Tenants and service tokens, and the bootstrap of an empty vault.
use secrecy::SecretString;

use super::{Vault, validate};
use crate::error::{Error, Result};
use crate::ids;
use crate::model::{Scope, ServiceToken, Tenant};
use crate::store::StoreError;

/// The tenant an empty vault creates for its bootstrap token.
pub const BOOTSTRAP_TENANT: &str = "default";

impl Vault {
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        validate::slug("name", name)?;
        let tenant = Tenant {
            id: ids::new_id(ids::TENANT_PREFIX),
            name: name.to_owned(),
            created_at: self.now(),
        };
        match self.store.insert_tenant(&tenant).await {
            Ok(()) => Ok(tenant),
            Err(StoreError::Conflict) => Err(Error::AlreadyExists(format!(
                "tenant name `{name}` is taken"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self.store.list_tenants().await?)
    }

    async fn tenant(&self, id_or_name: &str) -> Result<Tenant> {
        validate::text("tenant", id_or_name, validate::MAX_TEXT_CHARS)?;
        self.store
            .find_tenant(id_or_name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant {id_or_name} not found")))
    }

    /// Mints a token for a tenant (by id or name). The secret is returned once.
    pub async fn create_token(
        &self,
        tenant: &str,
        scopes: &[String],
        description: &str,
    ) -> Result<(ServiceToken, SecretString)> {
        if scopes.is_empty() {
            return Err(Error::invalid("scopes", "name at least one scope"));
        }
        let mut parsed = scopes
            .iter()
            .map(|s| {
                Scope::parse(s).ok_or_else(|| {
                    let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                    Error::invalid(
                        "scopes",
                        format!("unknown scope; use any of {}", known.join(", ")),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        parsed.sort();
        parsed.dedup();
        validate::bounded_text("description", description, validate::MAX_TEXT_CHARS)?;
        let tenant = self.tenant(tenant).await?;
        let token = ServiceToken {
            id: ids::new_id(ids::TOKEN_ID_PREFIX),
            tenant_id: tenant.id,
            scopes: parsed,
            description: description.to_owned(),
            created_at: self.now(),
            revoked_at: None,
        };
        let secret = ids::new_token_secret();
        self.store
            .insert_token(
                &token,
                &ids::token_hash(secrecy::ExposeSecret::expose_secret(&secret)),
            )
            .await?;
        Ok((token, secret))
    }

    pub async fn list_tokens(&self, tenant: &str) -> Result<Vec<ServiceToken>> {
        let tenant = self.tenant(tenant).await?;
        Ok(self.store.list_tokens(&tenant.id).await?)
    }

    pub async fn revoke_token(&self, id: &str) -> Result<ServiceToken> {
        if !ids::is_well_formed(id, ids::TOKEN_ID_PREFIX) {
            return Err(Error::invalid(
                "id",
                "must be a token id such as tok_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
            ));
        }
        self.store
            .revoke_token(id, self.now())
            .await?
            .ok_or_else(|| Error::NotFound(format!("token {id} not found")))
    }

    /// On a vault with no tenants: creates the `default` tenant and an all-scopes
    /// token, returned once. `None` when the vault already has tenants (including
    /// when another replica bootstrapped it first).
    pub async fn bootstrap(&self) -> Result<Option<(ServiceToken, SecretString)>> {
        if !self.store.list_tenants().await?.is_empty() {
            return Ok(None);
        }
        match self.create_tenant(BOOTSTRAP_TENANT).await {
            Ok(_) => {}
            Err(Error::AlreadyExists(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        let scopes: Vec<String> = Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect();
        self.create_token(BOOTSTRAP_TENANT, &scopes, "bootstrap admin token")
            .await
            .map(Some)
    }
}
