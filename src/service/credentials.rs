//! Credentials: create (idempotent), read, list, update (compare-and-set), delete,
//! and reveal (open the envelope, audited).
use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{Caller, Vault, pagination, validate};
use crate::clock::Millis;
use crate::crypto::AadContext;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::{
    AuditEntry, CredentialMeta, CredentialSummary, SealedCredential, SecretPayload, Status,
};
use crate::store::{CredentialWrite, IdempotencyRecord, ListFilter, StoreError};

/// Attempts of an update that lost a race, when the caller did not pin a version.
const UPDATE_ATTEMPTS: usize = 3;

/// A create request as received (not yet validated).
#[derive(Debug, Default)]
pub struct NewCredential {
    pub user_id: String,
    pub user_email: String,
    pub name: String,
    pub provider: String,
    pub secret: Option<SecretPayload>,
    pub labels: BTreeMap<String, String>,
    pub expires_at: Option<Millis>,
    pub request_id: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryChange {
    #[default]
    Keep,
    Set(Millis),
    Clear,
}

/// An update request as received (not yet validated).
#[derive(Debug, Default)]
pub struct CredentialChanges {
    pub id: String,
    pub name: Option<String>,
    pub secret: Option<SecretPayload>,
    pub labels: Option<BTreeMap<String, String>>,
    pub expires_at: ExpiryChange,
    pub expected_version: Option<i64>,
}

#[derive(Debug, Default)]
pub struct ListRequest {
    pub user_id: String,
    pub provider: String,
    pub status: Option<Status>,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Debug)]
pub struct Page {
    pub credentials: Vec<CredentialSummary>,
    pub next_page_token: String,
}

#[derive(Debug)]
pub struct Revealed {
    pub meta: CredentialMeta,
    pub secret: SecretPayload,
}

/// What a delete did at the provider (RFC 7009), for OAuth credentials whose
/// provider has a revocation endpoint.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    pub revocation_attempted: bool,
    pub revoked: bool,
    pub revocation_error: Option<String>,
}

fn not_found(id: &str) -> Error {
    // The same words whether the id is missing or another tenant's.
    Error::NotFound(format!("credential {id} not found"))
}

pub(super) fn aad_of<'a>(meta: &'a CredentialMeta) -> AadContext<'a> {
    AadContext {
        tenant_id: &meta.tenant_id,
        user_id: &meta.user_id,
        credential_id: &meta.id,
    }
}

/// The sealed plaintext: the payload's JSON, checked against the size limit.
pub(super) fn secret_plaintext(secret: &SecretPayload) -> Result<Zeroizing<Vec<u8>>> {
    // Serialising strings and numbers cannot fail.
    let json = Zeroizing::new(serde_json::to_vec(secret).unwrap_or_default());
    if json.len() > validate::MAX_SECRET_BYTES {
        return Err(Error::ResourceExhausted(format!(
            "secret: is {} bytes; the limit is {} bytes",
            json.len(),
            validate::MAX_SECRET_BYTES
        )));
    }
    Ok(json)
}

fn validate_secret(secret: Option<&SecretPayload>) -> Result<&SecretPayload> {
    let secret = secret.ok_or_else(|| {
        Error::invalid(
            "secret",
            "exactly one of api_key, oauth2 or basic is required",
        )
    })?;
    match secret {
        SecretPayload::ApiKey { key } => {
            if key.is_empty() {
                return Err(Error::invalid("secret.api_key.key", "is required"));
            }
        }
        SecretPayload::OAuth2 {
            access_token,
            token_type,
            scopes,
            ..
        } => {
            if access_token.is_empty() {
                return Err(Error::invalid("secret.oauth2.access_token", "is required"));
            }
            validate::text("secret.oauth2.token_type", token_type, 64)?;
            validate::scopes("secret.oauth2.scopes", scopes)?;
        }
        SecretPayload::Basic { username, .. } => {
            if username.is_empty() {
                return Err(Error::invalid("secret.basic.username", "is required"));
            }
        }
    }
    Ok(secret)
}

fn validate_expiry(field: &'static str, at: Option<Millis>, now: Millis) -> Result<()> {
    match at {
        Some(at) if at <= now => Err(Error::invalid(field, "must be in the future")),
        _ => Ok(()),
    }
}

/// The canonical form of a create request, fingerprinted for idempotency.
fn request_fingerprint_input(req: &NewCredential) -> Zeroizing<Vec<u8>> {
    let canonical = serde_json::json!({
        "user_id": req.user_id,
        "user_email": req.user_email,
        "name": req.name,
        "provider": req.provider,
        "secret": req.secret,
        "labels": req.labels,
        "expires_at": req.expires_at,
    });
    Zeroizing::new(serde_json::to_vec(&canonical).unwrap_or_default())
}

impl Vault {
    /// An audit record of `caller` doing `action` to `subject` (a credential id, or
    /// the id of another resource for actions on it).
    pub(super) fn audit(
        &self,
        caller: &Caller,
        action: &'static str,
        credential_id: &str,
        request_id: &str,
    ) -> AuditEntry {
        caller.audit(self.now(), action, credential_id, request_id)
    }

    /// Writes `entry` on its own, for changes whose store write takes no audit record
    /// (a crash between the two loses the record, not the change).
    pub(super) async fn record(&self, entry: &AuditEntry) -> Result<()> {
        Ok(self.store.insert_audit(entry).await?)
    }

    /// Emails are unique per tenant: a credential may not give its user another
    /// user's email.
    async fn check_email_free(&self, tenant_id: &str, user_id: &str, email: &str) -> Result<()> {
        if email.is_empty() {
            return Ok(());
        }
        match self.store.find_user_by_email(tenant_id, email).await? {
            Some(other) if other.user_id != user_id => Err(Error::AlreadyExists(format!(
                "user_email: {email} is registered to another user of this tenant"
            ))),
            _ => Ok(()),
        }
    }

    pub async fn create_credential(
        &self,
        caller: &Caller,
        req: NewCredential,
    ) -> Result<CredentialMeta> {
        let now = self.now();
        validate::text("user_id", &req.user_id, validate::MAX_TEXT_CHARS)?;
        if !req.user_email.is_empty() {
            validate::email("user_email", &req.user_email)?;
        }
        validate::text("name", &req.name, validate::MAX_TEXT_CHARS)?;
        validate::slug("provider", &req.provider)?;
        let secret = validate_secret(req.secret.as_ref())?;
        validate::labels("labels", &req.labels)?;
        validate_expiry("expires_at", req.expires_at, now)?;
        validate::bounded_text("request_id", &req.request_id, validate::MAX_TEXT_CHARS)?;
        caller.may_make(&req.provider, &req.labels)?;
        let plaintext = secret_plaintext(secret)?;
        self.check_email_free(&caller.tenant_id, &req.user_id, &req.user_email)
            .await?;

        let meta = CredentialMeta {
            tenant_id: caller.tenant_id.clone(),
            id: ids::new_id(ids::CREDENTIAL_PREFIX),
            user_id: req.user_id.clone(),
            user_email: Some(req.user_email.clone()).filter(|e| !e.is_empty()),
            name: req.name.clone(),
            provider: req.provider.clone(),
            kind: secret.kind(),
            status: Status::Active,
            labels: req.labels.clone(),
            scopes: secret.scopes().to_vec(),
            expires_at: req.expires_at,
            token_expires_at: secret.token_expires_at(),
            version: 1,
            created_at: now,
            updated_at: now,
            refresh: self
                .fresh_refresh_state(&caller.tenant_id, &req.provider, secret)
                .await?,
            expiry_warned_ms: None,
        };
        let sealed = SealedCredential {
            blob: self.tenant_keys.seal(&aad_of(&meta), &plaintext).await?,
            meta,
        };
        let audit = self
            .audit(caller, "create", &sealed.meta.id, &req.request_id)
            .for_user(&sealed.meta.user_id);
        if req.request_id.is_empty() {
            let email = self.store.insert_credential(&sealed, None, &audit).await?;
            return Ok(CredentialMeta {
                user_email: email,
                ..sealed.meta
            });
        }

        let fingerprint_input = request_fingerprint_input(&req);
        let key_version = self.keyring.active_version();
        let record = IdempotencyRecord {
            tenant_id: caller.tenant_id.clone(),
            request_id: req.request_id.clone(),
            fingerprint: self
                .keyring
                .fingerprint(key_version, &fingerprint_input)
                .unwrap_or_default(),
            key_version,
            credential_id: sealed.meta.id.clone(),
            created_at: now,
        };
        // At most three rounds: a stale record is removed once, and a record deleted
        // between our insert and our read is retried once.
        for _ in 0..3 {
            match self
                .store
                .insert_credential(&sealed, Some(&record), &audit)
                .await
            {
                // The end user may already have had an email on file.
                Ok(email) => {
                    return Ok(CredentialMeta {
                        user_email: email,
                        ..sealed.meta
                    });
                }
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(existing) = self
                .store
                .find_idempotency(&caller.tenant_id, &req.request_id)
                .await?
            else {
                continue;
            };
            if existing.created_at < now - self.settings.idempotency_ttl_ms {
                self.store.delete_idempotency(&existing).await?;
                continue;
            }
            return self.replay(&existing, &fingerprint_input).await;
        }
        Err(Error::Aborted(
            "request_id: concurrent requests kept conflicting; retry".into(),
        ))
    }

    /// Answers a retried create from what the first one stored.
    async fn replay(
        &self,
        existing: &IdempotencyRecord,
        fingerprint_input: &[u8],
    ) -> Result<CredentialMeta> {
        let same = self
            .keyring
            .fingerprint_matches(existing.key_version, &existing.fingerprint, fingerprint_input)
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "request_id: was recorded under master key version {}, which is not in the keyring",
                    existing.key_version
                ))
            })?;
        if !same {
            return Err(Error::invalid(
                "request_id",
                "was already used for a different request; use a new request_id for a new credential",
            ));
        }
        self.store
            .get_credential(&existing.tenant_id, &existing.credential_id)
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "request_id: the credential {} created under it has since been deleted",
                    existing.credential_id
                ))
            })
    }

    pub async fn get_credential(&self, caller: &Caller, id: &str) -> Result<CredentialMeta> {
        validate::credential_id(id)?;
        self.store
            .get_credential(&caller.tenant_id, id)
            .await?
            .filter(|meta| caller.sees(meta))
            .ok_or_else(|| not_found(id))
    }

    /// The credential `id` with its sealed secret, if the caller may see it.
    pub(super) async fn sealed_for(&self, caller: &Caller, id: &str) -> Result<SealedCredential> {
        validate::credential_id(id)?;
        self.store
            .get_sealed(&caller.tenant_id, id)
            .await?
            .filter(|sealed| caller.sees(&sealed.meta))
            .ok_or_else(|| not_found(id))
    }

    pub async fn list_credentials(&self, caller: &Caller, req: ListRequest) -> Result<Page> {
        if !req.user_id.is_empty() {
            validate::text("user_id", &req.user_id, validate::MAX_TEXT_CHARS)?;
        }
        if !req.provider.is_empty() {
            validate::slug("provider", &req.provider)?;
        }
        let page_size = pagination::size(req.page_size)?;
        let after = pagination::decode(&req.page_token, ids::CREDENTIAL_PREFIX)?;
        let filter = ListFilter {
            user_id: Some(req.user_id).filter(|s| !s.is_empty()),
            provider: Some(req.provider).filter(|s| !s.is_empty()),
            status: req.status,
            within: caller.constraints.clone(),
        };
        let rows = self
            .store
            .list_credentials(&caller.tenant_id, &filter, after.as_deref(), page_size + 1)
            .await?;
        let (credentials, next_page_token) = pagination::finish(rows, page_size, |c| &c.id);
        Ok(Page {
            credentials,
            next_page_token,
        })
    }

    pub async fn update_credential(
        &self,
        caller: &Caller,
        req: CredentialChanges,
    ) -> Result<CredentialMeta> {
        let now = self.now();
        validate::credential_id(&req.id)?;
        if let Some(name) = &req.name {
            validate::text("name", name, validate::MAX_TEXT_CHARS)?;
        }
        let secret = match req.secret.as_ref() {
            Some(s) => Some((validate_secret(Some(s))?, secret_plaintext(s)?)),
            None => None,
        };
        if let Some(labels) = &req.labels {
            validate::labels("labels", labels)?;
        }
        if let ExpiryChange::Set(at) = req.expires_at {
            validate_expiry("expires_at", Some(at), now)?;
        }
        if req.name.is_none()
            && secret.is_none()
            && req.labels.is_none()
            && req.expires_at == ExpiryChange::Keep
        {
            return Err(Error::invalid(
                "update",
                "nothing to change: set name, secret, labels, expires_at or clear_expires_at",
            ));
        }

        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_credential(caller, &req.id).await?;
            if let Some(expected) = req.expected_version.filter(|v| *v != current.version) {
                return Err(stale(&current, expected));
            }
            let mut next = current.clone();
            next.version = current.version + 1;
            next.updated_at = now;
            if let Some(name) = &req.name {
                next.name.clone_from(name);
            }
            if let Some(labels) = &req.labels {
                caller.may_make(&current.provider, labels)?;
                next.labels.clone_from(labels);
            }
            match req.expires_at {
                ExpiryChange::Keep => {}
                ExpiryChange::Set(at) => next.expires_at = Some(at),
                ExpiryChange::Clear => next.expires_at = None,
            }
            // A later expiry revives a credential that had expired.
            if next.status == Status::Expired && req.expires_at != ExpiryChange::Keep {
                next.status = Status::Active;
            }
            let mut blob = None;
            if let Some((secret, plaintext)) = &secret {
                if secret.kind() != current.kind {
                    return Err(Error::invalid(
                        "secret",
                        format!(
                            "must be of the credential's kind ({}); create a new credential for another kind",
                            current.kind.as_str()
                        ),
                    ));
                }
                // A user who re-enters a secret makes the credential usable again.
                next.status = Status::Active;
                next.scopes = secret.scopes().to_vec();
                next.token_expires_at = secret.token_expires_at();
                next.refresh = self
                    .fresh_refresh_state(&caller.tenant_id, &current.provider, secret)
                    .await?;
                blob = Some(self.tenant_keys.seal(&aad_of(&next), plaintext).await?);
            }
            let write = CredentialWrite {
                meta: next,
                blob,
                expected_version: current.version,
            };
            let audit = self
                .audit(caller, "update", &req.id, "")
                .for_user(&write.meta.user_id);
            if self
                .store
                .update_credential(&write, Some(&audit), &[])
                .await?
            {
                return Ok(write.meta);
            }
            if let Some(expected) = req.expected_version {
                let current = self.get_credential(caller, &req.id).await?;
                return Err(stale(&current, expected));
            }
        }
        Err(Error::Aborted(format!(
            "credential {} kept changing concurrently; re-read it and retry",
            req.id
        )))
    }

    /// Deletes the credential; an OAuth credential is then revoked at its provider
    /// when the provider has a revocation endpoint. A failed revocation is reported,
    /// not fatal: the credential is gone from the vault either way.
    pub async fn delete_credential(&self, caller: &Caller, id: &str) -> Result<Deleted> {
        let sealed = self.sealed_for(caller, id).await?;
        // OAuth tokens are decrypted before deleting, for the revocation; nothing else
        // needs its plaintext, and a row that no longer decrypts can still be deleted.
        let secret = if sealed.meta.kind == crate::model::Kind::OAuth2 {
            self.open_secret(&sealed.meta, &sealed.blob).await.ok()
        } else {
            None
        };
        let audit = self
            .audit(caller, "delete", id, "")
            .for_user(&sealed.meta.user_id);
        if !self
            .store
            .delete_credential(&caller.tenant_id, id, &audit)
            .await?
        {
            return Err(not_found(id));
        }
        match secret {
            Some(secret @ SecretPayload::OAuth2 { .. }) => {
                Ok(self.revoke_at_provider(&sealed.meta, &secret).await)
            }
            _ => Ok(Deleted::default()),
        }
    }

    async fn revoke_at_provider(&self, meta: &CredentialMeta, secret: &SecretPayload) -> Deleted {
        let SecretPayload::OAuth2 {
            access_token,
            refresh_token,
            ..
        } = secret
        else {
            return Deleted::default();
        };
        let provider = match self
            .store
            .get_provider(&meta.tenant_id, &meta.provider)
            .await
        {
            Ok(Some(p)) if !p.provider.config.revocation_url.is_empty() => p,
            _ => return Deleted::default(),
        };
        // Revoking the refresh token revokes its access tokens too (RFC 7009 §2.1).
        let (token, hint) = match refresh_token {
            Some(rt) => (rt, "refresh_token"),
            None => (access_token, "access_token"),
        };
        let result = match self.open_provider_secret(&provider).await {
            Ok(client_secret) => {
                self.token_client
                    .revoke(
                        &provider.provider.config,
                        client_secret.as_deref().map(String::as_str),
                        token,
                        hint,
                    )
                    .await
            }
            Err(_) => Err("the provider's client secret could not be decrypted".to_owned()),
        };
        if let Err(e) = &result {
            tracing::warn!(credential = %meta.id, error = %e, "revocation at the provider failed");
        }
        Deleted {
            revocation_attempted: true,
            revoked: result.is_ok(),
            revocation_error: result.err(),
        }
    }

    /// Opens a credential's sealed secret and parses its payload.
    pub(super) async fn open_secret(
        &self,
        meta: &CredentialMeta,
        blob: &[u8],
    ) -> Result<SecretPayload> {
        let plaintext = self.tenant_keys.open(&aad_of(meta), blob).await?;
        serde_json::from_slice(&plaintext).map_err(|_| {
            Error::DataLoss(format!(
                "credential {} decrypted to an unreadable payload",
                meta.id
            ))
        })
    }

    pub async fn reveal_credential(
        &self,
        caller: &Caller,
        id: &str,
        request_id: &str,
    ) -> Result<Revealed> {
        validate::bounded_text("request_id", request_id, validate::MAX_TEXT_CHARS)?;
        let sealed = self.sealed_for(caller, id).await?;
        let (meta, secret) = self.usable_secret(sealed).await?;
        // The audit record is written before the secret leaves: no record, no secret.
        self.store
            .insert_audit(
                &self
                    .audit(caller, "reveal", id, request_id)
                    .for_user(&meta.user_id),
            )
            .await?;
        Ok(Revealed { meta, secret })
    }

    /// The secret of a credential that may be used now (active, not past its own
    /// expiry), opened, and refreshed first if it is an OAuth token inside its margin.
    pub(super) async fn usable_secret(
        &self,
        sealed: SealedCredential,
    ) -> Result<(CredentialMeta, SecretPayload)> {
        let meta = sealed.meta;
        let id = &meta.id;
        match meta.status {
            Status::Active if meta.expires_at.is_some_and(|at| at <= self.now()) => {
                return Err(Error::FailedPrecondition(format!(
                    "credential {id} has expired; update it with a new secret or expiry"
                )));
            }
            Status::Active => {}
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "credential {id} is {}; the user has to reconnect it (update it with a new secret)",
                    other.as_str()
                )));
            }
        }
        let secret = self.open_secret(&meta, &sealed.blob).await?;
        self.fresh_secret(meta, secret).await
    }
}

fn stale(current: &CredentialMeta, expected: i64) -> Error {
    Error::Aborted(format!(
        "credential {} is at version {}, not {expected}; re-read it and retry",
        current.id, current.version
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_secrets_are_resource_exhausted() {
        let big = SecretPayload::ApiKey {
            key: "k".repeat(validate::MAX_SECRET_BYTES),
        };
        let err = secret_plaintext(&big).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(!err.to_string().contains("kkkk"));
    }
}
