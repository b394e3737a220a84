//! Tenants and service tokens, and the bootstrap of an empty vault.
//!
//! `admin` tokens are the vault's operators; `tenant:admin` tokens manage the tokens
//! of their own tenant and nothing else.
use secrecy::SecretString;

use super::pagination::{Cursor, Page};
use super::{Caller, Vault, validate};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::{Constraints, Scope, ServiceToken, Tenant};
use crate::store::{Change, Revocation, StoreError};

/// The tenant an empty vault creates for its bootstrap token.
pub const BOOTSTRAP_TENANT: &str = "default";

/// A token to mint, as received.
#[derive(Debug, Default)]
pub struct NewToken {
    /// Tenant id (`ten_…`) or name.
    pub tenant: String,
    pub scopes: Vec<String>,
    pub description: String,
    pub expires_at: Option<Millis>,
    /// Which credentials the token may touch (empty: all of its tenant's).
    pub constraints: Constraints,
}

/// At most this many providers in a token's constraints.
const MAX_CONSTRAINED_PROVIDERS: usize = 64;

/// Checks constraints and puts them in their canonical form (providers sorted, once
/// each). Tokens that mint tokens or run the vault cannot be constrained: they could
/// mint themselves an unconstrained one.
fn check_constraints(mut c: Constraints, scopes: &[Scope]) -> Result<Constraints> {
    if c.is_empty() {
        return Ok(c);
    }
    if let Some(s) = scopes
        .iter()
        .find(|s| matches!(s, Scope::Admin | Scope::TenantAdmin))
    {
        return Err(Error::invalid(
            "constraints",
            format!(
                "a token with the `{}` scope cannot be constrained (it could mint an \
                 unconstrained token)",
                s.as_str()
            ),
        ));
    }
    if c.providers.len() > MAX_CONSTRAINED_PROVIDERS {
        return Err(Error::invalid(
            "constraints.providers",
            format!("at most {MAX_CONSTRAINED_PROVIDERS} are allowed"),
        ));
    }
    for provider in &c.providers {
        validate::slug("constraints.providers", provider)?;
    }
    c.providers.sort();
    c.providers.dedup();
    validate::labels("constraints.labels", &c.labels)?;
    Ok(c)
}

fn parse_scopes(scopes: &[String]) -> Result<Vec<Scope>> {
    if scopes.is_empty() {
        return Err(Error::invalid("scopes", "name at least one scope"));
    }
    let mut parsed = scopes
        .iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| {
                Error::invalid(
                    "scopes",
                    format!("unknown scope; use any of {}", Scope::names()),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

impl Vault {
    pub async fn create_tenant(&self, caller: &Caller, name: &str) -> Result<Tenant> {
        validate::slug("name", name)?;
        if name.starts_with(ids::TENANT_PREFIX) {
            return Err(Error::invalid(
                "name",
                format!(
                    "must not start with `{}`, which marks tenant ids",
                    ids::TENANT_PREFIX
                ),
            ));
        }
        let tenant = Tenant {
            id: ids::new_id(ids::TENANT_PREFIX),
            name: name.to_owned(),
            created_at: self.now(),
        };
        match self.store.insert_tenant(&tenant).await {
            Ok(()) => {
                let entry = self.audit(caller, "tenant.create", &tenant.id, "");
                self.record(&entry.in_tenant(&tenant.id)).await?;
                Ok(tenant)
            }
            Err(StoreError::Conflict) => Err(Error::AlreadyExists(format!(
                "tenant name `{name}` is taken"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a tenant by crypto-shredding: its key is destroyed first (a committed
    /// write of its own), then every row of it goes, the tenant's included. A deletion
    /// that stops between the two leaves nothing that opens and is finished by asking
    /// again. The record goes to the caller's tenant's log: the deleted tenant's log
    /// goes with it. Returns the tenant and how many rows went.
    pub async fn delete_tenant(&self, caller: &Caller, tenant: &str) -> Result<(Tenant, u64)> {
        let tenant = self.tenant(tenant).await?;
        if tenant.id == caller.tenant_id {
            return Err(Error::FailedPrecondition(
                "a token cannot delete its own tenant; use an `admin` token of another tenant"
                    .into(),
            ));
        }
        self.tenant_keys.destroy(&tenant.id).await?;
        let mut entry = self.audit(caller, "tenant.delete", &tenant.id, "");
        entry.detail = format!("name={}", tenant.name);
        let deleted = self.store.delete_tenant_rows(&tenant.id, &entry).await;
        // Even if the rows stay: the key is gone, and no replica should keep it.
        self.announce(&Change::Tenant(tenant.id.clone())).await;
        let deleted = deleted?;
        tracing::info!(tenant = %tenant.id, rows = deleted, "tenant deleted; its key was destroyed first");
        Ok((tenant, deleted))
    }

    pub async fn list_tenants(&self, page_size: i32, page_token: &str) -> Result<Page<Tenant>> {
        let cursor = Cursor::new(page_size, page_token, ids::TENANT_PREFIX)?;
        let tenants = self.store.list_tenants(cursor.window()).await?;
        Ok(cursor.finish(tenants, |t| &t.id))
    }

    /// A tenant by id (`ten_…`, which names cannot start with) or else by name.
    pub(super) async fn tenant(&self, id_or_name: &str) -> Result<Tenant> {
        validate::text("tenant", id_or_name, validate::MAX_TEXT_CHARS)?;
        let found = if ids::is_well_formed(id_or_name, ids::TENANT_PREFIX) {
            self.store.get_tenant(id_or_name).await?
        } else {
            self.store.find_tenant_by_name(id_or_name).await?
        };
        found.ok_or_else(|| Error::NotFound(format!("tenant {id_or_name} not found")))
    }

    /// The tenant `caller` may manage tokens of: any for `admin`, its own for
    /// `tenant:admin`.
    async fn managed_tenant(&self, caller: &Caller, tenant: &str) -> Result<Tenant> {
        let tenant = self.tenant(tenant).await?;
        if caller.scopes.contains(&Scope::Admin) || tenant.id == caller.tenant_id {
            Ok(tenant)
        } else {
            Err(Error::PermissionDenied(
                "a `tenant:admin` token manages the tokens of its own tenant only".into(),
            ))
        }
    }

    /// Mints a token. The secret is returned once.
    pub async fn create_token(
        &self,
        caller: &Caller,
        req: NewToken,
    ) -> Result<(ServiceToken, SecretString)> {
        let scopes = parse_scopes(&req.scopes)?;
        if scopes.contains(&Scope::Admin) && !caller.scopes.contains(&Scope::Admin) {
            return Err(Error::PermissionDenied(
                "only an `admin` token can grant the `admin` scope".into(),
            ));
        }
        validate::bounded_text("description", &req.description, validate::MAX_TEXT_CHARS)?;
        if req.expires_at.is_some_and(|at| at <= self.now()) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        let constraints = check_constraints(req.constraints, &scopes)?;
        let tenant = self.managed_tenant(caller, &req.tenant).await?;
        let mut token = self.new_token(&tenant, scopes, &req.description, req.expires_at);
        token.constraints = std::sync::Arc::new(constraints);
        let (token, secret) = self.store_token(token).await?;
        let entry = self.audit(caller, "token.create", &token.id, "");
        self.record(&entry.in_tenant(&tenant.id)).await?;
        Ok((token, secret))
    }

    /// Stores a new token under the hash of a fresh secret; returns both, once.
    async fn store_token(&self, token: ServiceToken) -> Result<(ServiceToken, SecretString)> {
        let secret = ids::new_token_secret();
        self.store
            .insert_token(
                &token,
                &ids::token_hash(secrecy::ExposeSecret::expose_secret(&secret)),
            )
            .await?;
        Ok((token, secret))
    }

    fn new_token(
        &self,
        tenant: &Tenant,
        scopes: Vec<Scope>,
        description: &str,
        expires_at: Option<Millis>,
    ) -> ServiceToken {
        ServiceToken {
            id: ids::new_id(ids::TOKEN_ID_PREFIX),
            tenant_id: tenant.id.clone(),
            scopes,
            description: description.to_owned(),
            created_at: self.now(),
            revoked_at: None,
            expires_at,
            constraints: Default::default(),
        }
    }

    pub async fn list_tokens(
        &self,
        caller: &Caller,
        tenant: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<ServiceToken>> {
        let cursor = Cursor::new(page_size, page_token, ids::TOKEN_ID_PREFIX)?;
        let tenant = self.managed_tenant(caller, tenant).await?;
        let tokens = self.store.list_tokens(&tenant.id, cursor.window()).await?;
        Ok(cursor.finish(tokens, |t| &t.id))
    }

    /// Revokes a token; a `tenant:admin` caller only its own tenant's (another
    /// tenant's answers NOT_FOUND, like a missing one). The last working vault
    /// `admin` token cannot be revoked: that would lock every operator out.
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<ServiceToken> {
        if !ids::is_well_formed(id, ids::TOKEN_ID_PREFIX) {
            return Err(Error::invalid(
                "id",
                "must be a token id such as tok_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
            ));
        }
        let not_found = || Error::NotFound(format!("token {id} not found"));
        if !caller.scopes.contains(&Scope::Admin) {
            let token = self.store.get_token(id).await?;
            if token.is_none_or(|t| t.tenant_id != caller.tenant_id) {
                return Err(not_found());
            }
        }
        match self.store.revoke_token(id, self.now()).await? {
            Revocation::Revoked(token) => {
                self.announce(&Change::Token(token.id.clone())).await;
                let entry = self.audit(caller, "token.revoke", id, "");
                self.record(&entry.in_tenant(&token.tenant_id)).await?;
                Ok(token)
            }
            Revocation::NotFound => Err(not_found()),
            Revocation::LastAdmin => Err(Error::FailedPrecondition(format!(
                "token {id} is the last working `admin` token; mint another admin token first \
                 (or use `credvault admin recover`)"
            ))),
        }
    }

    /// On a vault with no tenants: creates the `default` tenant and an all-scopes
    /// token in one transaction, and returns the token once. `None` when the vault
    /// already has tenants (including when another replica bootstrapped it first).
    pub async fn bootstrap(&self) -> Result<Option<(ServiceToken, SecretString)>> {
        let tenant = Tenant {
            id: ids::new_id(ids::TENANT_PREFIX),
            name: BOOTSTRAP_TENANT.to_owned(),
            created_at: self.now(),
        };
        let token = self.new_token(&tenant, Scope::ALL.to_vec(), "bootstrap admin token", None);
        let secret = ids::new_token_secret();
        let hash = ids::token_hash(secrecy::ExposeSecret::expose_secret(&secret));
        if self.store.bootstrap(&tenant, &token, &hash).await? {
            Ok(Some((token, secret)))
        } else {
            Ok(None)
        }
    }

    /// Offline recovery (`credvault admin recover`): a new all-scopes token in
    /// `tenant`, with no caller. Only reachable by someone holding the database and
    /// the master keys (the keyring was checked against the database at open).
    pub async fn recover_admin(&self, tenant: &str) -> Result<(ServiceToken, SecretString)> {
        let tenant = self.tenant(tenant).await?;
        let token = self.new_token(&tenant, Scope::ALL.to_vec(), "recovery admin token", None);
        self.store_token(token).await
    }
}
