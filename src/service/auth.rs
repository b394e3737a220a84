//! Who is calling, and may they: bearer tokens to a tenant-scoped [`Caller`].
use super::Vault;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::Scope;

/// An authenticated caller: a service token of one tenant.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub token_id: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "this token lacks the `{}` scope",
                scope.as_str()
            )))
        }
    }
}

/// Length of `cvt_` + base64url of 32 bytes.
const TOKEN_LEN: usize = ids::TOKEN_SECRET_PREFIX.len() + 43;

impl Vault {
    /// Authenticates an `authorization` header value and checks one scope.
    pub async fn authorize(&self, authorization: Option<&str>, scope: Scope) -> Result<Caller> {
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
        let found = self
            .store
            .find_token_by_hash(&ids::token_hash(token))
            .await?;
        let token = found
            .filter(|t| t.revoked_at.is_none())
            .ok_or(Error::Unauthenticated("invalid or revoked token"))?;
        let caller = Caller {
            tenant_id: token.tenant_id,
            token_id: token.id,
            scopes: token.scopes,
        };
        caller.require(scope)?;
        Ok(caller)
    }
}
