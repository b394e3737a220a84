//! What the hosted page does with a link: open it, store what the user typed (after
//! the provider's verification), run OAuth bound to the browser, and finish the link
//! with its redirect, event and notification.
use std::collections::BTreeMap;

use super::minting::page_can_serve;
use super::sign_in::SignInStep;
use super::verify::Verdict;
use super::{Connect, MAX_FAILED_ATTEMPTS};
use crate::error::{Error, Result};
use crate::ids;
use crate::model::Event;
use crate::model::SecretPayload;
use crate::model::connect::{
    ConnectLink, ConnectOutcome, ConnectSettings, ConnectedCredential, LinkChange, LinkStatus,
    LinkType, REVOKED_IDENTITY_MISMATCH, REVOKED_TOO_MANY_ATTEMPTS,
};
use crate::oauth::forms::{AuthMode, FormField, PASSWORD_FIELD, USERNAME_FIELD, default_fields};
use crate::oauth::{ConnectRequest, LinkBinding, OAuthState, SealedProvider, redirect};
use crate::service::{Caller, CredentialChanges, NewCredential, oauth_flow};
use crate::store::{AttemptCount, ConnectNotice, Window};

/// The longest value a form field takes.
pub const MAX_FIELD_CHARS: usize = 4096;

/// Why a link does not show its form (to this browser); each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Unknown,
    Expired,
    Used,
    Revoked,
    TooManyAttempts,
    /// Revoked because someone signed in as another user.
    IdentityMismatch,
    /// The link works, but this browser has not taken its sign-in step.
    SignInRequired,
}

impl Closed {
    pub fn code(self) -> &'static str {
        match self {
            Self::Unknown => "link_not_found",
            Self::Expired => "link_expired",
            Self::Used => "link_used",
            Self::Revoked => "link_revoked",
            Self::TooManyAttempts => REVOKED_TOO_MANY_ATTEMPTS,
            Self::IdentityMismatch => REVOKED_IDENTITY_MISMATCH,
            Self::SignInRequired => "sign_in_required",
        }
    }

    fn of(link: &ConnectLink, now: i64) -> Option<Self> {
        match link.status_at(now) {
            LinkStatus::Pending => None,
            LinkStatus::Expired => Some(Self::Expired),
            LinkStatus::Completed => Some(Self::Used),
            LinkStatus::Revoked => Some(match link.revoked_reason.as_deref() {
                Some(REVOKED_TOO_MANY_ATTEMPTS) => Self::TooManyAttempts,
                Some(REVOKED_IDENTITY_MISMATCH) => Self::IdentityMismatch,
                _ => Self::Revoked,
            }),
        }
    }
}

/// A provider as the page shows it.
#[derive(Debug, Clone)]
pub struct PageProvider {
    pub slug: String,
    pub display_name: String,
    pub logo_url: String,
    pub help_url: String,
    pub auth_mode: AuthMode,
    pub fields: Vec<FormField>,
    /// The registry row (its verification request, its OAuth client).
    pub sealed: SealedProvider,
}

/// An open link with what its page shows.
#[derive(Debug, Clone)]
pub struct Opened {
    pub link: ConnectLink,
    pub settings: ConnectSettings,
    pub tenant_name: String,
    pub providers: Vec<PageProvider>,
    /// The sign-in step this browser has to take before it is shown the providers.
    pub sign_in: Option<SignInStep>,
}

/// A field the user has to correct; `message` is a key of the page's text table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub field: String,
    pub message: &'static str,
}

/// Where a finished flow goes: the tenant's redirect URL, or the page's own result
/// screen when the link has none.
#[derive(Debug, Clone)]
pub struct Finished {
    pub success: bool,
    /// `CREATION_SUCCESS`, `RECONNECTED`, or the failure code.
    pub status: &'static str,
    pub credential_id: Option<String>,
    pub redirect: Option<String>,
    pub settings: ConnectSettings,
    pub tenant_name: String,
    /// The caller's opaque name (echoed in the redirect and postMessage).
    pub name: String,
}

/// How a link's flow ended: with a result (a redirect or the result screen), or on
/// a link that no longer works.
#[derive(Debug)]
pub enum Ended {
    Finished(Box<Finished>),
    Closed(Closed),
}

/// What a form post came to.
#[derive(Debug)]
pub enum Submitted {
    Ended(Ended),
    /// Fix these fields and post again.
    Invalid(Opened, Vec<FormError>),
    /// The provider rejected the key; `attempts_left` more tries.
    Rejected(Opened, i64),
    /// The provider could not be asked (timeout, 5xx): try again.
    Unverified(Opened),
}

/// What the user typed, by field name. `Debug` shows the names only, and the
/// values are wiped from memory when dropped.
#[derive(Default)]
pub struct FormValues(pub BTreeMap<String, String>);

impl std::fmt::Debug for FormValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Drop for FormValues {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            zeroize::Zeroize::zeroize(value);
        }
    }
}

impl crate::template::Values for FormValues {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl Connect {
    /// The link behind a page token, if it still shows its form, as `browser` (the
    /// nonce of its `cv_browser` cookie) sees it.
    pub async fn open(
        &self,
        token: &str,
        browser: Option<&str>,
    ) -> Result<std::result::Result<Opened, Closed>> {
        let Some(link) = self
            .vault
            .store
            .find_link_by_token(&ids::token_hash(token))
            .await?
        else {
            return Ok(Err(Closed::Unknown));
        };
        if let Some(closed) = Closed::of(&link, self.now()) {
            return Ok(Err(closed));
        }
        let sign_in = self.sign_in_step(&link, browser).await?;
        let mut opened = self.opened(link).await?;
        opened.sign_in = sign_in;
        Ok(Ok(opened))
    }

    /// [`Self::open`], for a browser that has to have taken the sign-in step.
    async fn open_signed_in(
        &self,
        token: &str,
        browser: Option<&str>,
    ) -> Result<std::result::Result<Opened, Closed>> {
        Ok(match self.open(token, browser).await? {
            Ok(opened) if opened.sign_in.is_some() => Err(Closed::SignInRequired),
            other => other,
        })
    }

    /// Why a link that was pending a moment ago no longer is.
    pub(super) async fn closed_now(&self, link: &ConnectLink) -> Result<Closed> {
        let current = self.vault.store.get_link(&link.tenant_id, &link.id).await?;
        Ok(current
            .and_then(|l| Closed::of(&l, self.now()))
            .unwrap_or(Closed::Used))
    }

    async fn opened(&self, link: ConnectLink) -> Result<Opened> {
        let settings = self.load_settings(&link.tenant_id).await?.settings;
        let tenant_name = self
            .vault
            .store
            .get_tenant(&link.tenant_id)
            .await?
            .map(|t| t.name)
            .unwrap_or_default();
        let registered = self
            .vault
            .store
            .list_providers(&link.tenant_id, Window::ALL)
            .await?;
        let all = link.request.providers.iter().any(|p| p == "*");
        let mut providers: Vec<PageProvider> = registered
            .into_iter()
            .filter(|p| all || link.request.providers.contains(&p.provider.slug))
            .filter(|p| page_can_serve(&p.provider.config))
            .map(page_provider)
            .collect();
        if !all {
            // The order the link asked for.
            providers.sort_by_key(|p| link.request.providers.iter().position(|s| *s == p.slug));
        }
        Ok(Opened {
            link,
            settings,
            tenant_name,
            providers,
            sign_in: None,
        })
    }

    /// The token's CSRF value: tied to the link (derived from its token), so a form
    /// can only be posted by someone who was shown it.
    pub fn csrf_token(token: &str) -> String {
        ids::token_hash_hex(&format!("credvault-connect-csrf:{token}"))
    }

    /// Stores what the user typed for an API-key or basic provider.
    pub async fn submit(
        &self,
        token: &str,
        browser: Option<&str>,
        provider: &str,
        values: &FormValues,
    ) -> Result<Submitted> {
        let opened = match self.open_signed_in(token, browser).await? {
            Ok(opened) => opened,
            Err(closed) => return Ok(Submitted::Ended(Ended::Closed(closed))),
        };
        let shown = opened
            .providers
            .iter()
            .find(|p| p.slug == provider && p.auth_mode != AuthMode::OAuth2)
            .cloned();
        let Some(shown) = shown else {
            let failed = self.fail(&opened, "provider_not_allowed").await?;
            return Ok(Submitted::Ended(Ended::Finished(Box::new(failed))));
        };
        let errors = check_values(&shown.fields, values);
        if !errors.is_empty() {
            return Ok(Submitted::Invalid(opened, errors));
        }
        match self.verify(&shown.sealed, values).await {
            Verdict::Valid => {}
            Verdict::Unverified => return Ok(Submitted::Unverified(opened)),
            Verdict::Rejected => return self.rejected(opened).await,
        }
        let (secret, labels) = split_fields(shown.auth_mode, &shown.fields, values);
        self.store_and_finish(opened, &shown, secret, labels).await
    }

    async fn rejected(&self, opened: Opened) -> Result<Submitted> {
        let link = &opened.link;
        let now = self.now();
        let event = Event::connect(
            link,
            ConnectOutcome::Failed(REVOKED_TOO_MANY_ATTEMPTS),
            &ConnectedCredential::default(),
            now,
        );
        let notice = notice(link, &event);
        match self
            .vault
            .store
            .count_failed_attempt(&link.tenant_id, &link.id, MAX_FAILED_ATTEMPTS, now, notice)
            .await?
        {
            AttemptCount::Counted(n) => Ok(Submitted::Rejected(opened, MAX_FAILED_ATTEMPTS - n)),
            AttemptCount::Exhausted => {
                tracing::warn!(link = %link.id, "connect link revoked after too many rejected keys");
                let failed = finished(&opened, Err(REVOKED_TOO_MANY_ATTEMPTS));
                Ok(Submitted::Ended(Ended::Finished(Box::new(failed))))
            }
            AttemptCount::NotPending => Ok(Submitted::Ended(Ended::Closed(Closed::Used))),
        }
    }

    /// Creates (or for a reconnect, replaces the secret of) the credential, then
    /// completes the link.
    async fn store_and_finish(
        &self,
        opened: Opened,
        provider: &PageProvider,
        secret: SecretPayload,
        field_labels: BTreeMap<String, String>,
    ) -> Result<Submitted> {
        let link = &opened.link;
        let caller = link_caller(link);
        let stored = match &link.request.reconnect_credential_id {
            Some(id) => {
                let current = self.vault.get_credential(&caller, id).await?;
                let mut labels = current.labels.clone();
                labels.extend(field_labels);
                let changes = CredentialChanges {
                    id: id.clone(),
                    secret: Some(secret),
                    labels: Some(labels),
                    ..CredentialChanges::default()
                };
                self.vault.update_credential(&caller, changes).await
            }
            None => {
                let mut labels = link.request.labels.clone();
                labels.extend(field_labels);
                let name = match link.request.credential_name.as_str() {
                    "" => provider.display_name.clone(),
                    name => name.to_owned(),
                };
                let request = NewCredential {
                    user_id: link.user_id.clone(),
                    user_email: link.user_email.clone(),
                    name,
                    provider: provider.slug.clone(),
                    secret: Some(secret),
                    labels,
                    expires_at: None,
                    // At most one credential per link, however often it is posted.
                    request_id: link.id.to_string(),
                };
                self.vault.create_credential(&caller, request).await
            }
        };
        let credential = match stored {
            Ok(meta) => ConnectedCredential {
                id: meta.id,
                name: meta.name,
                provider: meta.provider,
            },
            // The same link posted twice with different values: the first one won.
            Err(Error::InvalidArgument {
                field: "request_id",
                ..
            }) => {
                return Ok(Submitted::Ended(Ended::Closed(Closed::Used)));
            }
            Err(e) => return Err(e),
        };
        Ok(Submitted::Ended(self.complete(&opened, credential).await?))
    }

    /// Marks the link completed with its event and notification, atomically.
    async fn complete(&self, opened: &Opened, credential: ConnectedCredential) -> Result<Ended> {
        let link = &opened.link;
        let now = self.now();
        let outcome = match link.request.link_type {
            LinkType::Create => ConnectOutcome::Created,
            LinkType::Reconnect => ConnectOutcome::Reconnected,
        };
        let event = Event::connect(link, outcome, &credential, now);
        let change = LinkChange {
            tenant_id: &link.tenant_id,
            id: &link.id,
            status: LinkStatus::Completed,
            credential_id: Some(&credential.id),
            revoked_reason: None,
            at: now,
        };
        let audit = self.vault.audit(
            &link_caller(link),
            "connect.link.complete",
            link.id.as_str(),
            "",
        );
        let done = self
            .vault
            .store
            .finish_link(&change, &audit, Some(notice(link, &event)))
            .await?;
        if !done {
            // Revoked (or completed by another tab) while this post was in flight.
            let current = self.vault.store.get_link(&link.tenant_id, &link.id).await?;
            let same = current.as_ref().and_then(|l| l.credential_id.as_deref())
                == Some(credential.id.as_str());
            if !same {
                if link.request.link_type == LinkType::Create {
                    self.vault
                        .delete_credential(&link_caller(link), &credential.id)
                        .await?;
                }
                let closed = current
                    .and_then(|l| Closed::of(&l, now))
                    .unwrap_or(Closed::Used);
                return Ok(Ended::Closed(closed));
            }
        }
        Ok(Ended::Finished(Box::new(finished(
            opened,
            Ok(credential.id),
        ))))
    }

    /// A failure the user cannot fix on the page: the failure redirect, with a
    /// `connect.failed` event. The link stays usable until it expires.
    pub(super) async fn fail(&self, opened: &Opened, code: &'static str) -> Result<Finished> {
        let event = Event::connect(
            &opened.link,
            ConnectOutcome::Failed(code),
            &ConnectedCredential::default(),
            self.now(),
        );
        self.vault
            .store
            .insert_connect_notice(notice(&opened.link, &event))
            .await?;
        Ok(finished(opened, Err(code)))
    }

    /// Starts the provider's OAuth flow for a link, bound to the browser whose cookie
    /// holds `browser_nonce`; returns the authorization URL.
    pub async fn start_oauth(
        &self,
        token: &str,
        provider: &str,
        browser_nonce: &str,
    ) -> Result<std::result::Result<String, Ended>> {
        let opened = match self.open_signed_in(token, Some(browser_nonce)).await? {
            Ok(opened) => opened,
            Err(closed) => return Ok(Err(Ended::Closed(closed))),
        };
        let shown = opened
            .providers
            .iter()
            .find(|p| p.slug == provider && p.auth_mode == AuthMode::OAuth2);
        let Some(shown) = shown else {
            let failed = self.fail(&opened, "provider_not_allowed").await?;
            return Ok(Err(Ended::Finished(Box::new(failed))));
        };
        let link = &opened.link;
        let redirect_uri = match opened.settings.custom_base_url.as_str() {
            "" => String::new(),
            base => format!("{}/oauth/callback", base.trim_end_matches('/')),
        };
        let request = ConnectRequest {
            name: match link.request.credential_name.as_str() {
                "" => shown.display_name.clone(),
                name => name.to_owned(),
            },
            scopes: Vec::new(),
            labels: link.request.labels.clone(),
            success_redirect_url: String::new(),
            failure_redirect_url: String::new(),
            link: Some(LinkBinding {
                link_id: link.id.to_string(),
                browser_hash: oauth_flow::browser_hash(browser_nonce),
                reconnect_credential_id: link.request.reconnect_credential_id.clone(),
            }),
            redirect_uri,
        };
        let started = self
            .vault
            .begin_flow(
                &link.tenant_id,
                &link.user_id,
                &link.user_email,
                &shown.sealed,
                request,
            )
            .await?;
        Ok(Ok(started.authorization_url))
    }

    /// The end of an OAuth flow started on a link's page.
    pub async fn finish_oauth(
        &self,
        state: &OAuthState,
        result: std::result::Result<String, &'static str>,
    ) -> Result<Ended> {
        let Some(binding) = &state.request.link else {
            return Ok(Ended::Closed(Closed::Unknown));
        };
        let id = crate::model::connect::LinkId(binding.link_id.clone());
        let Some(link) = self.vault.store.get_link(&state.tenant_id, &id).await? else {
            return Ok(Ended::Closed(Closed::Unknown));
        };
        let opened = self.opened(link).await?;
        match result {
            Err(code) => Ok(Ended::Finished(Box::new(self.fail(&opened, code).await?))),
            Ok(credential_id) => {
                let credential = ConnectedCredential {
                    id: credential_id,
                    name: state.request.name.clone(),
                    provider: state.provider.clone(),
                };
                self.complete(&opened, credential).await
            }
        }
    }
}

fn page_provider(p: SealedProvider) -> PageProvider {
    let c = &p.provider.config;
    PageProvider {
        display_name: if c.display_name.is_empty() {
            p.provider.slug.clone()
        } else {
            c.display_name.clone()
        },
        slug: p.provider.slug.clone(),
        logo_url: c.logo_url.clone(),
        help_url: c.help_url.clone(),
        fields: if c.fields.is_empty() {
            default_fields(c.auth_mode)
        } else {
            c.fields.clone()
        },
        auth_mode: c.auth_mode,
        sealed: p,
    }
}

/// Every field present (or optional), not too long, matching its pattern.
fn check_values(fields: &[FormField], values: &FormValues) -> Vec<FormError> {
    let mut errors = Vec::new();
    for field in fields {
        let value = values.0.get(&field.name).map_or("", String::as_str);
        let error = |message| FormError {
            field: field.name.clone(),
            message,
        };
        if value.trim().is_empty() {
            if field.secret || !field.optional {
                errors.push(error("error_required"));
            }
            continue;
        }
        if value.chars().count() > MAX_FIELD_CHARS || value.chars().any(char::is_control) {
            errors.push(error("error_invalid"));
            continue;
        }
        if !field.pattern.is_empty() && !matches_pattern(&field.pattern, value) {
            errors.push(error("error_pattern"));
        }
    }
    errors
}

fn matches_pattern(pattern: &str, value: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

/// The sealed secret and the labels (non-secret fields) of a form post.
fn split_fields(
    mode: AuthMode,
    fields: &[FormField],
    values: &FormValues,
) -> (SecretPayload, BTreeMap<String, String>) {
    let value = |name: &str| values.0.get(name).cloned().unwrap_or_default();
    let mut labels = BTreeMap::new();
    for field in fields.iter().filter(|f| !f.secret) {
        let v = value(&field.name);
        let is_basic_user = mode == AuthMode::Basic && field.name == USERNAME_FIELD;
        if !v.is_empty() && !is_basic_user {
            labels.insert(field.name.clone(), v);
        }
    }
    let secret = match mode {
        AuthMode::Basic => SecretPayload::Basic {
            username: value(USERNAME_FIELD),
            password: value(PASSWORD_FIELD),
        },
        _ => SecretPayload::ApiKey {
            key: fields
                .iter()
                .find(|f| f.secret)
                .map(|f| value(&f.name))
                .unwrap_or_default(),
        },
    };
    (secret, labels)
}

/// Who acts when a link stores a credential (in audit records).
pub(super) fn link_caller(link: &ConnectLink) -> Caller {
    Caller {
        tenant_id: link.tenant_id.clone(),
        token_id: format!("connect:{}", link.id),
        ..Caller::default()
    }
}

pub(super) fn notice<'a>(link: &'a ConnectLink, event: &'a Event) -> ConnectNotice<'a> {
    ConnectNotice {
        event,
        link_id: &link.id,
        notify_url: &link.request.notify_url,
    }
}

/// The result of a link: the redirect (with `credential_id` or `error`, and `name`)
/// when the link has one.
pub(super) fn finished(
    opened: &Opened,
    result: std::result::Result<String, &'static str>,
) -> Finished {
    let link = &opened.link;
    let (success, status, credential_id, base, key, value) = match &result {
        Ok(id) => (
            true,
            match link.request.link_type {
                LinkType::Create => "CREATION_SUCCESS",
                LinkType::Reconnect => "RECONNECTED",
            },
            Some(id.clone()),
            &link.request.success_redirect_url,
            "credential_id",
            id.as_str(),
        ),
        Err(code) => (
            false,
            *code,
            None,
            &link.request.failure_redirect_url,
            "error",
            *code,
        ),
    };
    let redirect = (!base.is_empty()).then(|| {
        let with_result = redirect::with_param(base, key, value);
        redirect::with_param(&with_result, "name", &link.request.name)
    });
    Finished {
        success,
        status,
        credential_id,
        redirect,
        settings: opened.settings.clone(),
        tenant_name: opened.tenant_name.clone(),
        name: link.request.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormValues {
        FormValues(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn fields_are_required_bounded_and_matched_whole() {
        let mut key = FormField::new("api_key", "API key", true);
        key.pattern = "sk_[a-z0-9]+".into();
        let mut region = FormField::new("region", "Region", false);
        region.optional = true;
        let fields = [key, region];
        assert!(check_values(&fields, &form(&[("api_key", "sk_abc")])).is_empty());
        let codes = |v: &FormValues| -> Vec<&str> {
            check_values(&fields, v).iter().map(|e| e.message).collect()
        };
        assert_eq!(codes(&form(&[])), ["error_required"]);
        assert_eq!(codes(&form(&[("api_key", "xsk_abc")])), ["error_pattern"]);
        assert_eq!(codes(&form(&[("api_key", "sk_abc!")])), ["error_pattern"]);
        assert_eq!(codes(&form(&[("api_key", "sk_a\nb")])), ["error_invalid"]);
    }

    #[test]
    fn secret_fields_are_sealed_and_the_rest_are_labels() {
        let fields = [
            FormField::new("subdomain", "Subdomain", false),
            FormField::new("api_key", "API key", true),
        ];
        let (secret, labels) = split_fields(
            AuthMode::ApiKey,
            &fields,
            &form(&[("api_key", "k-1"), ("subdomain", "acme")]),
        );
        assert_eq!(secret, SecretPayload::ApiKey { key: "k-1".into() });
        assert_eq!(labels.get("subdomain").map(String::as_str), Some("acme"));
        let (secret, labels) = split_fields(
            AuthMode::Basic,
            &default_fields(AuthMode::Basic),
            &form(&[("username", "ann"), ("password", "pw")]),
        );
        assert_eq!(
            secret,
            SecretPayload::Basic {
                username: "ann".into(),
                password: "pw".into()
            }
        );
        assert!(labels.is_empty());
    }

    #[test]
    fn form_values_never_show_in_debug() {
        let shown = format!("{:?}", form(&[("api_key", "canary-typed")]));
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("api_key"));
    }
}
