//! OAuth refresh with single flight.
//!
//! Every caller first notes the row as it found it (its *baseline*). Within a process,
//! one async lock per credential makes concurrent callers queue behind the one
//! refresh; across replicas, a lease on the row (taken by compare-and-set) picks one
//! refresher while the others poll the row. Either way a caller that finds the row
//! moved past its baseline — a new version (a refresh landed, or the credential went
//! `NEEDS_REAUTH`) or a new recorded failure — shares that outcome instead of calling
//! the provider again: 30 concurrent `RefreshCredential` calls make one request.
//! The provider is called holding no database lock, and the result is written by
//! compare-and-set on `version`, so a worker whose lease lapsed cannot overwrite a
//! newer token.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rand::Rng;

use super::{Caller, Vault};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::model::{
    CredentialMeta, EVENT_NEEDS_REAUTH, Event, Kind, RefreshState, SecretPayload, Status, rfc3339,
};
use crate::oauth::DEFAULT_REFRESH_MARGIN_SECS;
use crate::oauth::client::TokenError;
use crate::store::CredentialWrite;

/// First retry after a transient failure; doubles per failure up to [`MAX_BACKOFF_MS`].
const BASE_BACKOFF_MS: Millis = 30_000;
const MAX_BACKOFF_MS: Millis = 60 * 60 * 1000;
/// How long a misconfigured provider is left alone before the refresher tries again
/// (fixing the provider with `UpdateProvider` ends the wait at once).
const MISCONFIGURED_BACKOFF_MS: Millis = 60 * 60 * 1000;

/// Recorded reasons that an operator, not time, has to fix.
const NO_PROVIDER: &str = "no provider registered";
const CLIENT_REJECTED: &str = "provider rejected the client";

/// One async lock per credential, dropped when nobody holds or waits for it.
#[derive(Default)]
pub(crate) struct Flights(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl Flights {
    fn lock_for(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        if map.len() >= 1024 {
            map.retain(|_, weak| weak.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key, Arc::downgrade(&lock));
        lock
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Refresh if due, unless backing off (background refresher; reveal inside the
    /// margin while the token still works).
    IfDue,
    /// Refresh now, whatever the back-off: `RefreshCredential`, and a reveal whose
    /// access token has expired.
    Now,
}

/// The row as a caller found it before joining a flight: if it has moved on by the
/// time the caller's turn comes, the caller shares that outcome.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    version: i64,
    failures: i64,
}

impl Baseline {
    fn of(meta: &CredentialMeta) -> Self {
        Self {
            version: meta.version,
            failures: meta.refresh.failures,
        }
    }

    fn passed_by(&self, meta: &CredentialMeta) -> bool {
        meta.version > self.version || meta.refresh.failures > self.failures
    }
}

/// Whether an OAuth credential's refresh time has come.
pub(super) fn is_due(meta: &CredentialMeta, now: Millis) -> bool {
    meta.kind == Kind::OAuth2
        && meta.status == Status::Active
        && meta.refresh.next_at.is_some_and(|t| t <= now)
}

/// Whether an OAuth credential's access token has run out.
fn token_expired(meta: &CredentialMeta, now: Millis) -> bool {
    meta.kind == Kind::OAuth2 && meta.token_expires_at.is_some_and(|at| at <= now)
}

/// When to refresh `secret` ahead of its expiry: `margin` before it, up to a tenth of
/// the margin (at most a minute) earlier still, so a batch of tokens issued together
/// does not come due at one instant. `None` when it cannot be refreshed.
pub(super) fn schedule(secret: &SecretPayload, margin_ms: Millis) -> Option<Millis> {
    let SecretPayload::OAuth2 {
        refresh_token: Some(_),
        expires_at: Some(expires_at),
        ..
    } = secret
    else {
        return None;
    };
    let spread = (margin_ms / 10).clamp(0, 60_000);
    let jitter = if spread > 0 {
        rand::thread_rng().gen_range(0..=spread)
    } else {
        0
    };
    Some(expires_at - margin_ms - jitter)
}

fn backoff_ms(failures: i64) -> Millis {
    let exp = u32::try_from(failures.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let base = BASE_BACKOFF_MS.saturating_mul(1 << exp).min(MAX_BACKOFF_MS);
    // ±20% jitter so replicas and credentials spread their retries.
    let jitter = rand::thread_rng().gen_range(-(base / 5)..=base / 5);
    base + jitter
}

impl Vault {
    /// The refresh margin of the tenant's provider `slug` (the default if none is registered).
    pub(super) async fn refresh_margin_ms(&self, tenant_id: &str, slug: &str) -> Result<Millis> {
        let provider = self.store.get_provider(tenant_id, slug).await?;
        Ok(provider.map_or(DEFAULT_REFRESH_MARGIN_SECS * 1000, |p| {
            p.provider.config.refresh_margin_ms()
        }))
    }

    /// The refresh bookkeeping of a credential just given `secret`.
    pub(super) async fn fresh_refresh_state(
        &self,
        tenant_id: &str,
        slug: &str,
        secret: &SecretPayload,
    ) -> Result<RefreshState> {
        let next_at = match secret {
            SecretPayload::OAuth2 {
                refresh_token: Some(_),
                expires_at: Some(_),
                ..
            } => schedule(secret, self.refresh_margin_ms(tenant_id, slug).await?),
            _ => None,
        };
        Ok(RefreshState {
            next_at,
            ..RefreshState::default()
        })
    }

    /// For reveal: the secret, refreshed first when it is due. An access token past
    /// its expiry is never returned: it is refreshed now (single flight, whatever the
    /// back-off), and if that fails the caller gets the failure. A token still valid
    /// is returned when a due refresh fails.
    pub(super) async fn fresh_secret(
        &self,
        meta: CredentialMeta,
        secret: SecretPayload,
    ) -> Result<(CredentialMeta, SecretPayload)> {
        let now = self.now();
        let baseline = Baseline::of(&meta);
        if token_expired(&meta, now) {
            return self
                .refresh_flight(&meta.tenant_id, &meta.id, Mode::Now, Some(baseline))
                .await
                .map_err(|err| expired_token_error(&meta, err));
        }
        if !is_due(&meta, now) {
            return Ok((meta, secret));
        }
        match self
            .refresh_flight(&meta.tenant_id, &meta.id, Mode::IfDue, Some(baseline))
            .await
        {
            Ok(fresh) => Ok(fresh),
            Err(err) => {
                tracing::warn!(credential = %meta.id, error = %err, "refresh failed; the current access token is still valid");
                Ok((meta, secret))
            }
        }
    }

    /// `RefreshCredential`: refreshes now, whatever the back-off. A call that arrives
    /// while a refresh of the credential is running (here or on another replica)
    /// waits for it and shares its result.
    pub async fn refresh_credential(
        &self,
        caller: &super::Caller,
        id: &str,
    ) -> Result<CredentialMeta> {
        super::validate::credential_id(id)?;
        // Existence (and tenancy) first, so a missing id is NOT_FOUND like elsewhere.
        let arrived = self.get_credential(caller, id).await?;
        let (meta, _) = self
            .refresh_flight(
                &caller.tenant_id,
                id,
                Mode::Now,
                Some(Baseline::of(&arrived)),
            )
            .await?;
        Ok(meta)
    }

    /// After a provider refused the access token of `used` (HTTP 401): refreshes now,
    /// whatever the back-off, unless the row has moved past `used` meanwhile (a call
    /// here or on another replica refreshed it already): then that token is shared.
    pub(super) async fn refresh_refused(
        &self,
        used: &CredentialMeta,
    ) -> Result<(CredentialMeta, SecretPayload)> {
        self.refresh_flight(
            &used.tenant_id,
            &used.id,
            Mode::Now,
            Some(Baseline::of(used)),
        )
        .await
    }

    /// The background refresher's unit of work: refresh if still due.
    pub async fn refresh_if_due(&self, tenant_id: &str, id: &str) -> Result<()> {
        self.refresh_flight(tenant_id, id, Mode::IfDue, None)
            .await
            .map(|_| ())
    }

    async fn refresh_flight(
        &self,
        tenant_id: &str,
        id: &str,
        mode: Mode,
        baseline: Option<Baseline>,
    ) -> Result<(CredentialMeta, SecretPayload)> {
        let lock = self.flights.lock_for(format!("{tenant_id}/{id}"));
        let _flight = lock.lock().await;
        let deadline = Instant::now() + self.settings.refresh_wait;
        let mut poll = Duration::from_millis(20);
        let mut baseline = baseline;
        loop {
            let sealed = self
                .store
                .get_sealed(tenant_id, id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("credential {id} not found")))?;
            let secret = self.open_secret(&sealed.meta, &sealed.blob).await?;
            let meta = sealed.meta;
            let now = self.now();
            let base = *baseline.get_or_insert(Baseline::of(&meta));
            // A flight finished (here or on another replica) while we waited: share it.
            if base.passed_by(&meta) {
                return settled(meta, secret, base);
            }
            if mode == Mode::IfDue && !is_due(&meta, now) {
                return Ok((meta, secret));
            }
            let refresh_token = refreshable(&meta, &secret)?;
            let leased = self
                .store
                .acquire_refresh_lease(
                    tenant_id,
                    id,
                    meta.version,
                    &self.instance,
                    now,
                    now + self.settings.refresh_lease_ms,
                )
                .await?;
            if !leased {
                // Another replica is refreshing, or just finished (the row moved since
                // it was read): wait for its result, bounded, and re-read.
                if Instant::now() + poll > deadline {
                    return Err(Error::Unavailable(format!(
                        "credential {id} is being refreshed elsewhere; retry shortly"
                    )));
                }
                tokio::time::sleep(poll).await;
                poll = (poll * 2).min(Duration::from_millis(250));
                continue;
            }
            let called = self.call_provider(&meta, &refresh_token).await;
            self.metrics.refreshed(match &called {
                Ok(_) => "ok",
                Err(failure) => failure.class(),
            });
            match called {
                Ok((tokens, margin_ms)) => {
                    if let Some(done) = self.commit_tokens(meta, secret, tokens, margin_ms).await? {
                        return Ok(done);
                    }
                }
                Err(failure) => self.record_failure(&meta, failure).await?,
            }
        }
    }

    /// Exchanges the refresh token at the provider. No database lock is held here.
    /// Returns the tokens and the provider's refresh margin (for the next schedule).
    async fn call_provider(
        &self,
        meta: &CredentialMeta,
        refresh_token: &str,
    ) -> Result<(crate::oauth::client::Tokens, Millis), Failure> {
        let provider = self
            .store
            .get_provider(&meta.tenant_id, &meta.provider)
            .await
            .map_err(|e| Failure::Storage(e.into()))?
            .ok_or(Failure::NoProvider)?;
        let secret = self
            .open_provider_secret(&provider)
            .await
            .map_err(Failure::Storage)?;
        let config = &provider.provider.config;
        let tokens = self
            .token_client
            .refresh(config, secret.as_deref().map(String::as_str), refresh_token)
            .await
            .map_err(Failure::Token)?;
        Ok((tokens, config.refresh_margin_ms()))
    }

    /// Writes new tokens if the row is still at the version we leased. `None` when
    /// another writer got there first (the caller re-reads and returns theirs).
    async fn commit_tokens(
        &self,
        meta: CredentialMeta,
        old: SecretPayload,
        tokens: crate::oauth::client::Tokens,
        margin_ms: Millis,
    ) -> Result<Option<(CredentialMeta, SecretPayload)>> {
        let now = self.now();
        let SecretPayload::OAuth2 {
            refresh_token: old_refresh,
            scopes: old_scopes,
            ..
        } = &old
        else {
            return Ok(None);
        };
        let expires_in_ms = tokens
            .expires_in
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let secret = SecretPayload::OAuth2 {
            access_token: tokens.access_token.clone(),
            // Providers that do not rotate refresh tokens send none back: keep ours.
            refresh_token: tokens.refresh_token.clone().or_else(|| old_refresh.clone()),
            token_type: tokens.token_type.clone(),
            scopes: tokens.scopes.clone().unwrap_or_else(|| old_scopes.clone()),
            expires_at: expires_in_ms.map(|ms| now.saturating_add(ms)),
        };
        let plaintext = super::credentials::secret_plaintext(&secret)?;
        let mut next = meta.clone();
        next.version = meta.version + 1;
        next.updated_at = now;
        next.scopes = secret.scopes().to_vec();
        next.token_expires_at = secret.token_expires_at();
        next.refresh = RefreshState {
            next_at: schedule(&secret, margin_ms),
            ..RefreshState::default()
        };
        let write = CredentialWrite {
            blob: Some(
                self.tenant_keys
                    .seal(&super::credentials::aad_of(&next), &plaintext)
                    .await?,
            ),
            meta: next,
            expected_version: meta.version,
        };
        let audit = Caller::system(&meta.tenant_id)
            .audit(self.now(), "refresh", &meta.id, "")
            .for_user(&meta.user_id);
        if self
            .store
            .update_credential(&write, Some(&audit), &[])
            .await?
        {
            tracing::info!(credential = %meta.id, version = write.meta.version, "credential refreshed");
            Ok(Some((write.meta, secret)))
        } else {
            Ok(None)
        }
    }

    async fn record_failure(&self, meta: &CredentialMeta, failure: Failure) -> Result<()> {
        let now = self.now();
        let failures = meta.refresh.failures + 1;
        let (retry_at, reason, error) = match failure {
            Failure::Storage(e) => return Err(e),
            Failure::Token(TokenError::InvalidGrant) => return self.invalid_grant(meta).await,
            Failure::NoProvider => (
                now + MISCONFIGURED_BACKOFF_MS,
                NO_PROVIDER.to_owned(),
                Error::FailedPrecondition(format!(
                    "credential {} cannot be refreshed: no OAuth provider `{}` is registered in this tenant",
                    meta.id, meta.provider
                )),
            ),
            Failure::Token(TokenError::Misconfigured(code)) => {
                let event =
                    Event::provider_misconfigured(&meta.tenant_id, &meta.provider, code, now);
                if self
                    .store
                    .record_provider_error(&meta.tenant_id, &meta.provider, &event, code)
                    .await?
                {
                    tracing::warn!(provider = %meta.provider, tenant = %meta.tenant_id, error = code, "provider misconfigured");
                }
                (
                    now + MISCONFIGURED_BACKOFF_MS,
                    format!("{CLIENT_REJECTED}: {code}"),
                    Error::FailedPrecondition(format!(
                        "credential {} cannot be refreshed: provider `{}` rejected the client ({code}); \
                         fix the provider's settings",
                        meta.id, meta.provider
                    )),
                )
            }
            Failure::Token(TokenError::Transient {
                reason,
                retry_after,
            }) => {
                let asked =
                    retry_after.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                let at = now + backoff_ms(failures).max(asked);
                let error = Error::Unavailable(format!(
                    "could not refresh credential {}: {reason}; next attempt after {}",
                    meta.id,
                    rfc3339(at)
                ));
                (at, reason, error)
            }
        };
        self.store
            .record_refresh_failure(
                &meta.tenant_id,
                &meta.id,
                meta.version,
                failures,
                retry_at,
                &reason,
            )
            .await?;
        Err(error)
    }

    /// `invalid_grant`: unless another replica rotated the token meanwhile (then the
    /// loop re-reads and returns theirs), the user has to connect again.
    async fn invalid_grant(&self, meta: &CredentialMeta) -> Result<()> {
        let current = self.store.get_credential(&meta.tenant_id, &meta.id).await?;
        if current.is_some_and(|c| c.version != meta.version) {
            return Ok(());
        }
        let now = self.now();
        let mut next = meta.clone();
        next.status = Status::NeedsReauth;
        next.version = meta.version + 1;
        next.updated_at = now;
        next.refresh = RefreshState {
            last_error: Some("invalid_grant".into()),
            ..RefreshState::default()
        };
        let event = Event::credential(EVENT_NEEDS_REAUTH, &next, now);
        let write = CredentialWrite {
            meta: next,
            blob: None,
            expected_version: meta.version,
        };
        let audit = Caller::system(&meta.tenant_id)
            .audit(now, "refresh.rejected", &meta.id, "")
            .for_user(&meta.user_id);
        if self
            .store
            .update_credential(&write, Some(&audit), &[event])
            .await?
        {
            tracing::warn!(credential = %meta.id, "refresh token rejected (invalid_grant): credential needs re-auth");
            return Err(Error::FailedPrecondition(format!(
                "credential {} needs re-authorization: the provider rejected its refresh token",
                meta.id
            )));
        }
        Ok(())
    }
}

/// The refresh token of a credential that may be refreshed now.
fn refreshable(meta: &CredentialMeta, secret: &SecretPayload) -> Result<String> {
    if meta.status != Status::Active {
        return Err(Error::FailedPrecondition(format!(
            "credential {} is {}; the user has to reconnect it",
            meta.id,
            meta.status.as_str()
        )));
    }
    match secret {
        SecretPayload::OAuth2 {
            refresh_token: Some(refresh_token),
            ..
        } => Ok(refresh_token.clone()),
        _ => Err(Error::FailedPrecondition(format!(
            "credential {} has no refresh token to refresh with; the user has to reconnect it",
            meta.id
        ))),
    }
}

/// The outcome of a flight that finished while a caller waited, read off the row.
fn settled(
    meta: CredentialMeta,
    secret: SecretPayload,
    base: Baseline,
) -> Result<(CredentialMeta, SecretPayload)> {
    if meta.status != Status::Active {
        return Err(Error::FailedPrecondition(format!(
            "credential {} needs re-authorization: it is {}",
            meta.id,
            meta.status.as_str()
        )));
    }
    if meta.version > base.version {
        return Ok((meta, secret));
    }
    // A failure was recorded: the same verdict the refresher got.
    let reason = meta
        .refresh
        .last_error
        .as_deref()
        .unwrap_or("an earlier failure");
    let message = format!("could not refresh credential {}: {reason}", meta.id);
    Err(
        if reason.starts_with(NO_PROVIDER) || reason.starts_with(CLIENT_REJECTED) {
            Error::FailedPrecondition(format!("{message}; fix the provider's settings"))
        } else {
            Error::Unavailable(match meta.refresh.next_at {
                Some(at) => format!("{message}; next attempt after {}", rfc3339(at)),
                None => message,
            })
        },
    )
}

/// A reveal of an expired access token whose refresh failed: the same code (
/// UNAVAILABLE for a transient failure, FAILED_PRECONDITION when someone has to act),
/// and a message that says the token has expired.
fn expired_token_error(meta: &CredentialMeta, err: Error) -> Error {
    let at = meta.token_expires_at.map(rfc3339).unwrap_or_default();
    let say = |m: String| format!("the access token expired at {at} and refreshing failed: {m}");
    match err {
        Error::Unavailable(m) => Error::Unavailable(say(m)),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(say(m)),
        other => other,
    }
}

enum Failure {
    Token(TokenError),
    NoProvider,
    Storage(Error),
}

impl Failure {
    /// The outcome class `/metrics` counts it under.
    fn class(&self) -> &'static str {
        match self {
            Failure::Token(TokenError::InvalidGrant) => "reauth",
            Failure::Token(TokenError::Misconfigured(_)) | Failure::NoProvider => "misconfigured",
            Failure::Token(TokenError::Transient { .. }) | Failure::Storage(_) => "transient",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff_ms(1);
        assert!((24_000..=36_000).contains(&first), "{first}");
        let third = backoff_ms(3);
        assert!((96_000..=144_000).contains(&third), "{third}");
        assert!(backoff_ms(50) <= MAX_BACKOFF_MS * 6 / 5);
    }

    #[test]
    fn schedule_needs_a_refresh_token_and_an_expiry() {
        let oauth = |rt: Option<&str>, exp: Option<Millis>| SecretPayload::OAuth2 {
            access_token: "a".into(),
            refresh_token: rt.map(str::to_owned),
            token_type: "Bearer".into(),
            scopes: vec![],
            expires_at: exp,
        };
        let at = schedule(&oauth(Some("r"), Some(3_600_000)), 600_000).unwrap();
        assert!((3_000_000 - 60_000..=3_000_000).contains(&at), "{at}");
        assert_eq!(schedule(&oauth(None, Some(1)), 600_000), None);
        assert_eq!(schedule(&oauth(Some("r"), None), 600_000), None);
        assert_eq!(
            schedule(&SecretPayload::ApiKey { key: "k".into() }, 600_000),
            None
        );
    }
}
