//! Who is calling, and may they: bearer tokens to a tenant-scoped [`Caller`].
use std::sync::Arc;

use super::Vault;
use super::token_cache::Lookup;
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::audit::OUTCOME_OK;
use crate::model::{AuditEntry, Constraints, CredentialMeta, Scope, ServiceToken};

/// An authenticated caller: a service token of one tenant, and where its request
/// came from (for audit records).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub tenant_id: String,
    pub token_id: String,
    pub scopes: Vec<Scope>,
    /// Which of its tenant's credentials the token may touch.
    pub constraints: Arc<Constraints>,
    /// The peer's address (`ip:port`); empty when not over the network.
    pub source: String,
    /// The request's `x-request-id` metadata, if it sent one.
    pub request_id: String,
}

impl Caller {
    /// The operator acting in-process (offline CLI commands, tests): vault `admin`.
    pub fn operator() -> Self {
        Self {
            token_id: "operator".into(),
            scopes: vec![Scope::Admin],
            ..Self::default()
        }
    }

    /// The vault's own background work on behalf of `tenant_id` (audit actor `system`).
    pub fn system(tenant_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            token_id: "system".into(),
            ..Self::default()
        }
    }

    /// The audit record of this caller doing `action` to `subject` at `at`, with
    /// outcome `ok`. `request_id` is the call's own request id where it takes one;
    /// otherwise the request's `x-request-id` is recorded.
    pub fn audit(
        &self,
        at: Millis,
        action: &'static str,
        subject: &str,
        request_id: &str,
    ) -> AuditEntry {
        let request_id = if request_id.is_empty() {
            &self.request_id
        } else {
            request_id
        };
        AuditEntry {
            tenant_id: self.tenant_id.clone(),
            at,
            actor: self.token_id.clone(),
            action,
            credential_id: subject.to_owned(),
            user_id: String::new(),
            request_id: request_id.to_owned(),
            source: self.source.clone(),
            outcome: OUTCOME_OK,
            detail: String::new(),
        }
    }

    /// Whether the token's constraints let it see `meta` (one outside them is
    /// answered NOT_FOUND, like another tenant's).
    pub fn sees(&self, meta: &CredentialMeta) -> bool {
        self.constraints.admits(meta)
    }

    /// Refuses to make a credential of `provider` with `labels` that this token
    /// could not see afterwards.
    pub fn may_make(
        &self,
        provider: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        if self.constraints.admit(provider, labels) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "this token is limited to credentials with {}; this one would be outside that",
            self.constraints.describe()
        )))
    }

    /// Refuses what only a token without constraints may do (`what` says it).
    pub fn require_unconstrained(&self, what: &str) -> Result<()> {
        if self.constraints.is_empty() {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "this token is limited to credentials with {}, so it cannot {what}",
            self.constraints.describe()
        )))
    }

    pub fn require(&self, scope: Scope) -> Result<()> {
        self.require_any(&[scope])
    }

    /// Passes when the token holds any of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<()> {
        if scopes.iter().any(|s| self.scopes.contains(s)) {
            return Ok(());
        }
        let names: Vec<_> = scopes.iter().map(|s| format!("`{}`", s.as_str())).collect();
        Err(Error::PermissionDenied(format!(
            "this token lacks the {} scope",
            names.join(" or ")
        )))
    }
}

/// Length of `cvt_` + base64url of 32 bytes.
const TOKEN_LEN: usize = ids::TOKEN_SECRET_PREFIX.len() + 43;

const INVALID: Error = Error::Unauthenticated("invalid, revoked or expired token");

impl Vault {
    /// Authenticates an `authorization` header value and checks one scope.
    pub async fn authorize(&self, authorization: Option<&str>, scope: Scope) -> Result<Caller> {
        self.authorize_any(authorization, &[scope]).await
    }

    /// Authenticates an `authorization` header value; the token must hold one of
    /// `scopes`.
    pub async fn authorize_any(
        &self,
        authorization: Option<&str>,
        scopes: &[Scope],
    ) -> Result<Caller> {
        self.check_storage()?;
        let header = authorization.ok_or(Error::Unauthenticated(
            "missing credentials: send the metadata `authorization: Bearer <token>`",
        ))?;
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| t.len() == TOKEN_LEN && t.starts_with(ids::TOKEN_SECRET_PREFIX))
            .ok_or(Error::Unauthenticated(
                "malformed authorization metadata: expected `Bearer cvt_…`",
            ))?;
        let now = self.now();
        let token = self
            .token(token)
            .await?
            .filter(|t| t.works_at(now))
            .ok_or(INVALID)?;
        let caller = Caller {
            tenant_id: token.tenant_id.clone(),
            token_id: token.id.clone(),
            scopes: token.scopes.clone(),
            constraints: token.constraints.clone(),
            ..Caller::default()
        };
        if let Err(retry_after) = self.token_limiter.check(&caller.token_id) {
            self.metrics.rate_limited("token");
            return Err(Error::RateLimited { retry_after });
        }
        caller.require_any(scopes)?;
        Ok(caller)
    }

    /// The token whose secret is `secret`, as this replica cached it lately or else
    /// as stored.
    async fn token(&self, secret: &str) -> Result<Option<Arc<ServiceToken>>> {
        let hash = ids::token_hash(secret);
        let generation = match self.tokens.get(&hash) {
            Lookup::Hit(token) => {
                self.metrics.token_cache(true);
                return Ok(Some(token));
            }
            Lookup::Miss(generation) => generation,
        };
        self.metrics.token_cache(false);
        let Some(token) = self.store.find_token_by_hash(&hash).await? else {
            return Ok(None);
        };
        let token = Arc::new(token);
        self.tokens.put(hash, token.clone(), generation);
        Ok(Some(token))
    }

    /// Whether the caller's token still works (not revoked, not expired): long-lived
    /// streams ask again from time to time.
    pub async fn recheck(&self, caller: &Caller) -> Result<()> {
        let now = self.now();
        match self.store.get_token(&caller.token_id).await? {
            Some(token) if token.works_at(now) => Ok(()),
            _ => Err(INVALID),
        }
    }
}
