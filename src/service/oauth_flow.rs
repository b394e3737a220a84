//! The connect flow: `StartOAuth` stores a single-use `state` (hashed) and a sealed
//! PKCE verifier; the browser comes back to `/oauth/callback`, which redeems the
//! state, exchanges the code and stores the credential.
use std::collections::BTreeMap;

use secrecy::ExposeSecret;

use super::{Caller, CredentialChanges, NewCredential, Vault, validate};
use crate::clock::Millis;
use crate::crypto::AadContext;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::SecretPayload;
use crate::oauth::{ConnectRequest, OAuthState, SealedProvider, StateLookup, client, redirect};

/// A `StartOAuth` request as received.
#[derive(Debug, Default)]
pub struct StartOAuth {
    pub user_id: String,
    pub user_email: String,
    pub provider: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub success_redirect_url: String,
    pub failure_redirect_url: String,
    pub labels: BTreeMap<String, String>,
}

/// A started flow. `authorization_url` carries the single-use `state`, so `Debug`
/// leaves it out.
pub struct Started {
    pub authorization_url: String,
    pub expires_at: Millis,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("authorization_url", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The query of a callback, as the browser brought it. The `state` and the
/// authorization `code` are bearer values: `Debug` redacts them.
#[derive(Default, serde::Deserialize)]
pub struct CallbackQuery {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

impl std::fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("CallbackQuery")
            .field("state", &redacted(&self.state))
            .field("code", &redacted(&self.code))
            .field("error", &self.error)
            .finish()
    }
}

/// What the callback answers: a redirect, or (when there is nowhere safe to
/// redirect to) an error page with a fixed code. A flow started on a connect page
/// hands its result back to that page's link.
#[derive(Debug, PartialEq, Eq)]
pub enum CallbackOutcome {
    Redirect(String),
    ErrorPage(&'static str),
    Link {
        state: Box<OAuthState>,
        result: Result<String, &'static str>,
    },
}

fn aad_of(state: &OAuthState) -> AadContext<'_> {
    AadContext {
        tenant_id: &state.tenant_id,
        user_id: &state.user_id,
        credential_id: &state.id,
    }
}

impl Vault {
    pub async fn start_oauth(&self, caller: &Caller, req: StartOAuth) -> Result<Started> {
        validate::text("user_id", &req.user_id, validate::MAX_TEXT_CHARS)?;
        if !req.user_email.is_empty() {
            validate::email("user_email", &req.user_email)?;
        }
        validate::text("name", &req.name, validate::MAX_TEXT_CHARS)?;
        validate::slug("provider", &req.provider)?;
        validate::scopes("scopes", &req.scopes)?;
        validate::labels("labels", &req.labels)?;
        caller.may_make(&req.provider, &req.labels)?;
        let provider = self
            .store
            .get_provider(&caller.tenant_id, &req.provider)
            .await?
            .ok_or_else(|| Error::NotFound(format!("provider {} not found", req.provider)))?;
        let config = &provider.provider.config;
        for (field, url) in [
            ("success_redirect_url", &req.success_redirect_url),
            ("failure_redirect_url", &req.failure_redirect_url),
        ] {
            if !redirect::allowed(url, &config.allowed_redirect_urls) {
                return Err(Error::invalid(
                    field,
                    "must be an absolute URL on the provider's allowed_redirect_urls",
                ));
            }
        }
        let request = ConnectRequest {
            name: req.name,
            scopes: req.scopes,
            labels: req.labels,
            success_redirect_url: req.success_redirect_url,
            failure_redirect_url: req.failure_redirect_url,
            link: None,
            redirect_uri: String::new(),
        };
        let started = self
            .begin_flow(
                &caller.tenant_id,
                &req.user_id,
                &req.user_email,
                &provider,
                request,
            )
            .await?;
        let entry = self
            .audit(caller, "oauth.start", &provider.provider.slug, "")
            .for_user(&req.user_id);
        self.record(&entry).await?;
        Ok(started)
    }

    /// Stores a new flow's state (hashed) and sealed PKCE verifier; returns the
    /// provider's authorization URL. Empty `request.scopes` take the provider's
    /// defaults.
    pub(super) async fn begin_flow(
        &self,
        tenant_id: &str,
        user_id: &str,
        user_email: &str,
        provider: &SealedProvider,
        mut request: ConnectRequest,
    ) -> Result<Started> {
        let config = &provider.provider.config;
        if request.scopes.is_empty() {
            request.scopes.clone_from(&config.default_scopes);
        }
        let now = self.now();
        let state_token = ids::random_token();
        let (authorization_url, verifier) = client::authorize_url(
            config,
            self.redirect_uri(&request),
            state_token.expose_secret(),
            &request.scopes,
        )
        .map_err(|e| {
            Error::FailedPrecondition(format!("provider {}: {e}", provider.provider.slug))
        })?;
        let mut state = OAuthState {
            state_hash: ids::token_hash(state_token.expose_secret()),
            id: ids::new_id(ids::STATE_PREFIX),
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            user_email: user_email.to_owned(),
            provider: provider.provider.slug.clone(),
            request,
            pkce_verifier: None,
            expires_at: now + self.settings.oauth_state_ttl_ms,
            used_at: None,
            created_at: now,
        };
        if let Some(v) = verifier {
            state.pkce_verifier = Some(self.tenant_keys.seal(&aad_of(&state), v.as_bytes()).await?);
        }
        self.store.insert_oauth_state(&state).await?;
        Ok(Started {
            authorization_url,
            expires_at: state.expires_at,
        })
    }

    fn redirect_uri<'a>(&'a self, request: &'a ConnectRequest) -> &'a str {
        if request.redirect_uri.is_empty() {
            &self.settings.callback_url
        } else {
            &request.redirect_uri
        }
    }

    /// Handles the browser's return from the provider. No token request is made
    /// unless the state is redeemed here for the first time, unexpired, and (for a
    /// flow started on a connect page) by the browser that started it: `browser` is
    /// the nonce of that browser's cookie.
    pub async fn complete_oauth(
        &self,
        query: CallbackQuery,
        browser: Option<&str>,
    ) -> CallbackOutcome {
        let Some(state_token) = query.state.filter(|s| !s.is_empty()) else {
            return CallbackOutcome::ErrorPage("missing_state");
        };
        let lookup = self
            .store
            .consume_oauth_state(&ids::token_hash(&state_token), self.now())
            .await;
        let state = match lookup {
            Ok(StateLookup::Consumed(state)) => state,
            Ok(StateLookup::Unknown) => return CallbackOutcome::ErrorPage("unknown_state"),
            Ok(StateLookup::Expired(state)) => return failure(state, "expired_state"),
            Ok(StateLookup::Replayed(state)) => return failure(state, "state_already_used"),
            Err(e) => {
                tracing::error!(error = %e, "redeeming an OAuth state failed");
                return CallbackOutcome::ErrorPage("server_error");
            }
        };
        if let Some(binding) = &state.request.link {
            let presented = browser.map(browser_hash);
            if presented.as_deref() != Some(binding.browser_hash.as_str()) {
                tracing::warn!(state = %state.id, "OAuth callback from another browser than the one that started the flow");
                return failure(state, "browser_mismatch");
            }
        }
        if let Some(error) = query.error {
            // Only the one standard code is passed on; anything else the provider says
            // is not echoed into the tenant's URL.
            let code = if error == "access_denied" {
                "access_denied"
            } else {
                "provider_error"
            };
            return failure(state, code);
        }
        let Some(code) = query.code.filter(|c| !c.is_empty()) else {
            return failure(state, "missing_code");
        };
        match self.finish_connect(&state, &code).await {
            Ok(credential_id) => success(state, credential_id),
            Err(reason) => {
                tracing::warn!(state = %state.id, provider = %state.provider, reason, "OAuth connect failed");
                failure(state, reason)
            }
        }
    }

    async fn finish_connect(&self, state: &OAuthState, code: &str) -> Result<String, &'static str> {
        let provider = match self
            .store
            .get_provider(&state.tenant_id, &state.provider)
            .await
        {
            Ok(Some(p)) => p,
            _ => return Err("provider_not_found"),
        };
        let verifier = match &state.pkce_verifier {
            Some(blob) => Some(
                self.tenant_keys
                    .open(&aad_of(state), blob)
                    .await
                    .ok()
                    .and_then(|v| String::from_utf8(v.to_vec()).ok())
                    .ok_or("server_error")?,
            ),
            None => None,
        };
        let client_secret = self
            .open_provider_secret(&provider)
            .await
            .map_err(|_| "server_error")?;
        let tokens = self
            .token_client
            .exchange_code(
                &provider.provider.config,
                client_secret.as_deref().map(String::as_str),
                self.redirect_uri(&state.request),
                code,
                verifier.as_deref(),
            )
            .await
            .map_err(|e| {
                tracing::warn!(provider = %state.provider, error = %e, "code exchange failed");
                "token_exchange_failed"
            })?;
        let now = self.now();
        let expires_in_ms = tokens
            .expires_in
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let secret = SecretPayload::OAuth2 {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            token_type: tokens.token_type.clone(),
            scopes: tokens
                .scopes
                .clone()
                .unwrap_or_else(|| state.request.scopes.clone()),
            expires_at: expires_in_ms.map(|ms| now.saturating_add(ms)),
        };
        let caller = Caller {
            tenant_id: state.tenant_id.clone(),
            token_id: format!("oauth:{}", state.id),
            ..Caller::default()
        };
        let link = state.request.link.as_ref();
        if let Some(id) = link.and_then(|l| l.reconnect_credential_id.clone()) {
            let changes = CredentialChanges {
                id: id.clone(),
                secret: Some(secret),
                ..CredentialChanges::default()
            };
            return self
                .update_credential(&caller, changes)
                .await
                .map(|_| id)
                .map_err(|_| "store_failed");
        }
        let request = NewCredential {
            user_id: state.user_id.clone(),
            user_email: state.user_email.clone(),
            name: state.request.name.clone(),
            provider: state.provider.clone(),
            secret: Some(secret),
            labels: state.request.labels.clone(),
            expires_at: None,
            // A link stores at most one credential, however often its flow completes.
            request_id: link.map(|l| l.link_id.clone()).unwrap_or_default(),
        };
        self.create_credential(&caller, request)
            .await
            .map(|c| c.id)
            .map_err(|_| "store_failed")
    }
}

/// The hex SHA-256 of a browser nonce, as a [`crate::oauth::LinkBinding`] stores it.
pub fn browser_hash(nonce: &str) -> String {
    ids::token_hash_hex(nonce)
}

fn success(state: OAuthState, credential_id: String) -> CallbackOutcome {
    if state.request.link.is_some() {
        return CallbackOutcome::Link {
            state: Box::new(state),
            result: Ok(credential_id),
        };
    }
    CallbackOutcome::Redirect(redirect::with_param(
        &state.request.success_redirect_url,
        "credential_id",
        &credential_id,
    ))
}

fn failure(state: OAuthState, code: &'static str) -> CallbackOutcome {
    if state.request.link.is_some() {
        return CallbackOutcome::Link {
            state: Box::new(state),
            result: Err(code),
        };
    }
    CallbackOutcome::Redirect(redirect::with_param(
        &state.request.failure_redirect_url,
        "error",
        code,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_values_are_redacted_in_debug() {
        let q = CallbackQuery {
            state: Some("state-canary".into()),
            code: Some("code-canary".into()),
            error: Some("access_denied".into()),
        };
        let s = Started {
            authorization_url: "https://idp.test/authorize?state=url-canary".into(),
            expires_at: 1,
        };
        let shown = format!("{q:?} {s:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("access_denied"));
    }
}
