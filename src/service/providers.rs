//! OAuth providers of a tenant: settings in clear, the client secret sealed.
use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::pagination::{Cursor, Page};
use super::{Caller, Vault, validate};
use crate::crypto::{AadContext, TENANT_FORMAT_VERSION, format_of};
use crate::error::{Error, Result};
use crate::ids;
use crate::model::Scope;
use crate::oauth::api::ApiAccess;
use crate::oauth::forms::{AuthMode, FormField, Verification};
use crate::oauth::{
    Provider, ProviderConfig, SealedProvider, TokenAuthMethod, catalog, forms, redirect,
};
use crate::store::{StoreError, Window};

const MAX_REDIRECT_URLS: usize = 32;
const MAX_EXTRA_PARAMS: usize = 32;
const MAX_MARGIN_SECS: i64 = 24 * 60 * 60;
/// Authorization parameters credvault sets itself; a provider may not override them.
const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
];

/// A create request as received.
#[derive(Debug, Default)]
pub struct NewProvider {
    pub slug: String,
    pub template: String,
    pub config: ProviderConfig,
    /// Whether each optional setting was given (else the template's or the default).
    pub pkce: Option<bool>,
    pub token_auth_method: Option<TokenAuthMethod>,
    pub auth_mode: Option<AuthMode>,
    /// `Debug` prints `[REDACTED]`.
    pub client_secret: SecretString,
}

/// An update request as received; `None` keeps a setting.
#[derive(Debug, Default)]
pub struct ProviderChanges {
    pub slug: String,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub default_scopes: Option<Vec<String>>,
    pub scope_separator: Option<String>,
    pub pkce: Option<bool>,
    pub extra_authorize_params: Option<BTreeMap<String, String>>,
    pub token_auth_method: Option<TokenAuthMethod>,
    pub refresh_margin_secs: Option<i64>,
    pub allowed_redirect_urls: Option<Vec<String>>,
    pub allow_private_network: Option<bool>,
    pub expected_version: Option<i64>,
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub help_url: Option<String>,
    pub fields: Option<Vec<FormField>>,
    /// `Some(None)` removes the verification request.
    pub verification: Option<Option<Verification>>,
    /// `Some(None)` removes the API settings.
    pub api: Option<Option<ApiAccess>>,
}

fn provider_not_found(slug: &str) -> Error {
    Error::NotFound(format!("provider {slug} not found"))
}

/// Where the client secret may be sent: the origins of the provider's endpoints,
/// bound into the sealed secret's AAD. A row edited in the database to point an
/// endpoint elsewhere no longer opens, so the secret cannot be redirected.
/// The AAD "user" of a provider's client secret: the origins of its authorization,
/// token and revocation URLs, in that order.
pub(super) fn endpoint_binding(c: &ProviderConfig) -> String {
    let origins: Vec<String> = [&c.authorization_url, &c.token_url, &c.revocation_url]
        .iter()
        .map(|u| origin_of(u))
        .collect();
    format!("endpoints {}", origins.join(" "))
}

fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// Seals or opens with the AAD of `p`: tenant, the endpoint binding (in the place of
/// a user id), and the `prov_` id (which cannot collide with a credential id).
/// The AAD of a provider's client secret: its tenant, the endpoints it is bound to
/// (`binding`, from [`endpoint_binding`]) and its id.
fn secret_aad<'a>(p: &'a Provider, binding: &'a str) -> AadContext<'a> {
    AadContext {
        tenant_id: &p.tenant_id,
        user_id: binding,
        credential_id: &p.id,
    }
}

/// The AAD of secrets sealed before endpoints were bound (upgraded at start).
fn legacy_aad(p: &Provider) -> AadContext<'_> {
    AadContext {
        tenant_id: &p.tenant_id,
        user_id: "",
        credential_id: &p.id,
    }
}

impl Vault {
    /// An absolute http(s) URL without credentials, https unless `allow_http_urls`,
    /// at most 2048 characters; empty only when not `required`.
    pub(super) fn check_url(&self, field: &'static str, value: &str, required: bool) -> Result<()> {
        if value.len() > 2048 {
            return Err(Error::invalid(field, "must be at most 2048 characters"));
        }
        if value.is_empty() {
            return if required {
                Err(Error::invalid(field, "is required"))
            } else {
                Ok(())
            };
        }
        let url = redirect::absolute(value).ok_or_else(|| {
            Error::invalid(field, "must be an absolute http(s) URL without credentials")
        })?;
        if url.scheme() != "https" && !self.settings.allow_http_urls {
            return Err(Error::invalid(field, "must use https"));
        }
        Ok(())
    }

    fn validate_config(&self, c: &ProviderConfig) -> Result<()> {
        self.validate_page_settings(c)?;
        if let Some(api) = &c.api {
            self.validate_api(c, api)?;
        }
        if c.auth_mode != AuthMode::OAuth2 {
            return Ok(());
        }
        validate::text("client_id", &c.client_id, validate::MAX_TEXT_CHARS)?;
        self.check_url("authorization_url", &c.authorization_url, true)?;
        self.check_url("token_url", &c.token_url, true)?;
        self.check_url("revocation_url", &c.revocation_url, false)?;
        // The endpoints that receive the client secret and refresh tokens: an address
        // the policy refuses is refused now (names are checked again at every send).
        let guard = self.token_client.guard(c);
        for (field, value) in [
            ("token_url", &c.token_url),
            ("revocation_url", &c.revocation_url),
        ] {
            if let Ok(url) = url::Url::parse(value)
                && let Err(blocked) = guard.check_literal(&url)
            {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{blocked}; a vault admin can allow it with allow_private_network \
                         (an on-premises authorization server)"
                    ),
                ));
            }
        }
        validate::scopes("default_scopes", &c.default_scopes)?;
        if !matches!(c.scope_separator.as_str(), " " | "," | "+") {
            return Err(Error::invalid(
                "scope_separator",
                "must be \" \", \",\" or \"+\"",
            ));
        }
        if c.extra_authorize_params.len() > MAX_EXTRA_PARAMS {
            return Err(Error::invalid(
                "extra_authorize_params",
                format!("at most {MAX_EXTRA_PARAMS} are allowed"),
            ));
        }
        for (key, value) in &c.extra_authorize_params {
            validate::text("extra_authorize_params", key, 64)?;
            validate::bounded_text("extra_authorize_params", value, validate::MAX_TEXT_CHARS)?;
            if RESERVED_PARAMS.contains(&key.as_str()) {
                return Err(Error::invalid(
                    "extra_authorize_params",
                    format!("`{key}` is set by credvault"),
                ));
            }
        }
        if !(0..=MAX_MARGIN_SECS).contains(&c.refresh_margin_secs) {
            return Err(Error::invalid(
                "refresh_margin_seconds",
                format!("must be from 0 to {MAX_MARGIN_SECS}"),
            ));
        }
        if c.allowed_redirect_urls.len() > MAX_REDIRECT_URLS {
            return Err(Error::invalid(
                "allowed_redirect_urls",
                format!("at most {MAX_REDIRECT_URLS} are allowed"),
            ));
        }
        for url in &c.allowed_redirect_urls {
            self.check_url("allowed_redirect_urls", url, true)?;
        }
        Ok(())
    }

    /// The API the proxy calls: shape and key placement, https, and an address the
    /// policy allows (names are checked again at every send).
    fn validate_api(&self, c: &ProviderConfig, api: &ApiAccess) -> Result<()> {
        self.check_url("api.base_url", &api.base_url, true)?;
        api.check(c.auth_mode)?;
        if let Ok(url) = url::Url::parse(&api.base_url)
            && let Err(blocked) = self.token_client.guard(c).check_literal(&url)
        {
            return Err(Error::invalid(
                "api.base_url",
                format!(
                    "{blocked}; a vault admin can allow it with allow_private_network \
                     (an on-premises API)"
                ),
            ));
        }
        Ok(())
    }

    /// What the hosted page shows of a provider, and its form and verification.
    fn validate_page_settings(&self, c: &ProviderConfig) -> Result<()> {
        validate::bounded_text("display_name", &c.display_name, 100)?;
        self.check_url("logo_url", &c.logo_url, false)?;
        self.check_url("help_url", &c.help_url, false)?;
        forms::check_fields(c.auth_mode, &c.fields)?;
        if let Some(v) = &c.verification {
            if c.auth_mode == AuthMode::OAuth2 {
                return Err(Error::invalid(
                    "verification",
                    "is for API_KEY and BASIC providers (an OAuth token is verified by its exchange)",
                ));
            }
            let names = forms::field_names(c.auth_mode, &c.fields);
            forms::check_verification(v, &names, self.settings.allow_http_urls)?;
        }
        Ok(())
    }

    async fn seal_client_secret(&self, p: &Provider, secret: &str) -> Result<Option<Vec<u8>>> {
        if secret.is_empty() {
            return Ok(None);
        }
        let binding = endpoint_binding(&p.config);
        let aad = secret_aad(p, &binding);
        Ok(Some(self.tenant_keys.seal(&aad, secret.as_bytes()).await?))
    }

    /// The provider's client secret, if it has one.
    pub(super) async fn open_provider_secret(
        &self,
        p: &SealedProvider,
    ) -> Result<Option<Zeroizing<String>>> {
        let Some(blob) = &p.client_secret else {
            return Ok(None);
        };
        let binding = endpoint_binding(&p.provider.config);
        let aad = secret_aad(&p.provider, &binding);
        let plaintext = self.tenant_keys.open(&aad, blob).await?;
        String::from_utf8(plaintext.to_vec())
            .map(|s| Some(Zeroizing::new(s)))
            .map_err(|_| {
                Error::DataLoss(format!("provider {} secret is not text", p.provider.slug))
            })
    }

    pub async fn create_provider(
        &self,
        caller: &Caller,
        req: NewProvider,
    ) -> Result<SealedProvider> {
        validate::slug("slug", &req.slug)?;
        let mut config = if req.template.is_empty() {
            ProviderConfig::default()
        } else {
            catalog::template(&req.template).ok_or_else(|| {
                let names: Vec<_> = catalog::names().collect();
                Error::invalid(
                    "template",
                    format!("unknown; use one of {}", names.join(", ")),
                )
            })?
        };
        let from_template = config.clone();
        // Fields given in the request override the template.
        let given = req.config;
        config.client_id = given.client_id;
        for (field, value) in [
            (&mut config.authorization_url, given.authorization_url),
            (&mut config.token_url, given.token_url),
            (&mut config.revocation_url, given.revocation_url),
        ] {
            if !value.is_empty() {
                *field = value;
            }
        }
        if !given.default_scopes.is_empty() {
            config.default_scopes = given.default_scopes;
        }
        if !given.scope_separator.is_empty() {
            config.scope_separator = given.scope_separator;
        }
        config
            .extra_authorize_params
            .extend(given.extra_authorize_params);
        if given.refresh_margin_secs != 0 {
            config.refresh_margin_secs = given.refresh_margin_secs;
        }
        config.allowed_redirect_urls = given.allowed_redirect_urls;
        config.allow_private_network = given.allow_private_network;
        if config.allow_private_network {
            require_admin_for_private_network(caller)?;
        }
        config.pkce = req.pkce.unwrap_or(config.pkce);
        config.token_auth_method = req.token_auth_method.unwrap_or(config.token_auth_method);
        config.auth_mode = req.auth_mode.unwrap_or(config.auth_mode);
        for (field, value) in [
            (&mut config.display_name, given.display_name),
            (&mut config.logo_url, given.logo_url),
            (&mut config.help_url, given.help_url),
        ] {
            if !value.is_empty() {
                *field = value;
            }
        }
        if !given.fields.is_empty() {
            config.fields = given.fields;
        }
        if given.verification.is_some() {
            config.verification = given.verification;
        }
        if given.api.is_some() {
            config.api = given.api;
        }
        self.validate_config(&config)?;
        check_api_move(caller, &from_template, &config)?;
        validate::bounded_text("client_secret", req.client_secret.expose_secret(), 4096)?;

        let now = self.now();
        let provider = Provider {
            tenant_id: caller.tenant_id.clone(),
            id: ids::new_id(ids::PROVIDER_PREFIX),
            slug: req.slug.clone(),
            config,
            last_error: None,
            last_error_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let sealed = SealedProvider {
            client_secret: self
                .seal_client_secret(&provider, req.client_secret.expose_secret())
                .await?,
            provider,
        };
        let audit = self.audit(caller, "provider.create", &sealed.provider.slug, "");
        match self.store.insert_provider(&sealed, &audit).await {
            Ok(()) => Ok(sealed),
            Err(StoreError::Conflict) => Err(Error::AlreadyExists(format!(
                "provider {} already exists",
                req.slug
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_provider(&self, caller: &Caller, slug: &str) -> Result<SealedProvider> {
        validate::slug("slug", slug)?;
        self.store
            .get_provider(&caller.tenant_id, slug)
            .await?
            .ok_or_else(|| provider_not_found(slug))
    }

    pub async fn list_providers(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<SealedProvider>> {
        let cursor = Cursor::with(page_size, page_token, |slug| {
            validate::slug("page_token", slug).is_ok()
        })?;
        let providers = self
            .store
            .list_providers(&caller.tenant_id, cursor.window())
            .await?;
        Ok(cursor.finish(providers, |p| &p.provider.slug))
    }

    /// Applies the changes (compare-and-set) and clears any recorded error, since an
    /// operator has now looked at the provider; its credentials' refresh back-off ends
    /// too. Moving an endpoint to another origin needs the client secret in the same
    /// request: otherwise `providers:write` alone could send the sealed secret and
    /// every refresh token to a host of its choosing.
    pub async fn update_provider(
        &self,
        caller: &Caller,
        req: ProviderChanges,
    ) -> Result<SealedProvider> {
        let current = self.get_provider(caller, &req.slug).await?;
        if let Some(expected) = req
            .expected_version
            .filter(|v| *v != current.provider.version)
        {
            return Err(Error::Aborted(format!(
                "provider {} is at version {}, not {expected}; re-read it and retry",
                req.slug, current.provider.version
            )));
        }
        let mut next = current.provider.clone();
        apply_changes(&mut next.config, &req);
        self.validate_config(&next.config)?;
        if next.config.allow_private_network && !current.provider.config.allow_private_network {
            require_admin_for_private_network(caller)?;
        }
        check_api_move(caller, &current.provider.config, &next.config)?;
        let moved = endpoint_binding(&next.config) != endpoint_binding(&current.provider.config);
        if moved && req.client_secret.is_none() && current.client_secret.is_some() {
            return Err(Error::invalid(
                "client_secret",
                "is required when an endpoint (authorization_url, token_url, revocation_url) \
                 moves to another origin: send the client secret again with the change",
            ));
        }
        next.version += 1;
        next.updated_at = self.now();
        next.last_error = None;
        next.last_error_at = None;
        let client_secret = match &req.client_secret {
            Some(secret) => {
                validate::bounded_text("client_secret", secret.expose_secret(), 4096)?;
                self.seal_client_secret(&next, secret.expose_secret())
                    .await?
            }
            None => current.client_secret.clone(),
        };
        let sealed = SealedProvider {
            provider: next,
            client_secret,
        };
        let audit = self.audit(caller, "provider.update", &sealed.provider.slug, "");
        if self
            .store
            .update_provider(&sealed, current.provider.version, &audit)
            .await?
        {
            Ok(sealed)
        } else {
            Err(Error::Aborted(format!(
                "provider {} changed concurrently; re-read it and retry",
                req.slug
            )))
        }
    }

    /// Re-seals client secrets sealed before endpoint origins were bound into their
    /// AAD (run once per start; a no-op when there are none).
    pub async fn upgrade_provider_secrets(&self) -> Result<usize> {
        let mut upgraded = 0;
        for tenant in self.store.list_tenants(Window::ALL).await? {
            for p in self.store.list_providers(&tenant.id, Window::ALL).await? {
                let Some(blob) = &p.client_secret else {
                    continue;
                };
                // Sealed under a tenant key, so after the binding: nothing to upgrade,
                // and no tenant key to read at every start.
                if format_of(blob) == Some(TENANT_FORMAT_VERSION) {
                    continue;
                }
                if self.open_provider_secret(&p).await.is_ok() {
                    continue;
                }
                let Ok(plaintext) = self.keyring.open(&legacy_aad(&p.provider), blob) else {
                    continue;
                };
                let binding = endpoint_binding(&p.provider.config);
                let aad = secret_aad(&p.provider, &binding);
                // A tenant being deleted gets no new key: leave its secret as it is.
                let Ok(resealed) = self.tenant_keys.seal(&aad, &plaintext).await else {
                    continue;
                };
                if self
                    .store
                    .replace_provider_secret(&p.provider.tenant_id, &p.provider.id, blob, &resealed)
                    .await?
                {
                    upgraded += 1;
                }
            }
        }
        Ok(upgraded)
    }

    pub async fn delete_provider(&self, caller: &Caller, slug: &str) -> Result<()> {
        validate::slug("slug", slug)?;
        let audit = self.audit(caller, "provider.delete", slug, "");
        if self
            .store
            .delete_provider(&caller.tenant_id, slug, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(provider_not_found(slug))
        }
    }
}

/// Applies the settings a change names; `None` keeps each.
fn apply_changes(c: &mut ProviderConfig, req: &ProviderChanges) {
    let replace = |field: &mut String, value: &Option<String>| {
        if let Some(v) = value {
            field.clone_from(v);
        }
    };
    replace(&mut c.client_id, &req.client_id);
    replace(&mut c.authorization_url, &req.authorization_url);
    replace(&mut c.token_url, &req.token_url);
    replace(&mut c.revocation_url, &req.revocation_url);
    replace(&mut c.scope_separator, &req.scope_separator);
    if let Some(v) = &req.default_scopes {
        c.default_scopes.clone_from(v);
    }
    if let Some(v) = &req.extra_authorize_params {
        c.extra_authorize_params.clone_from(v);
    }
    if let Some(v) = &req.allowed_redirect_urls {
        c.allowed_redirect_urls.clone_from(v);
    }
    c.pkce = req.pkce.unwrap_or(c.pkce);
    c.token_auth_method = req.token_auth_method.unwrap_or(c.token_auth_method);
    c.refresh_margin_secs = req.refresh_margin_secs.unwrap_or(c.refresh_margin_secs);
    c.allow_private_network = req.allow_private_network.unwrap_or(c.allow_private_network);
    replace(&mut c.display_name, &req.display_name);
    replace(&mut c.logo_url, &req.logo_url);
    replace(&mut c.help_url, &req.help_url);
    if let Some(v) = &req.fields {
        c.fields.clone_from(v);
    }
    if let Some(v) = &req.verification {
        c.verification.clone_from(v);
    }
    if let Some(v) = &req.api {
        c.api.clone_from(v);
    }
}

/// Where the proxy sends a provider's credentials: the API base URL. Pointing it
/// somewhere new is as good as reading every credential of the provider, so it takes
/// `credentials:reveal` (and a token without constraints) besides `providers:write`.
/// A base URL the provider had already (or its catalog template has) is not a move.
fn check_api_move(caller: &Caller, before: &ProviderConfig, after: &ProviderConfig) -> Result<()> {
    let base = |c: &ProviderConfig| c.api.as_ref().map(|a| a.base_url.clone());
    let Some(new_base) = base(after) else {
        return Ok(());
    };
    if base(before).as_ref() == Some(&new_base) {
        return Ok(());
    }
    caller.require(Scope::CredentialsReveal).map_err(|_| {
        Error::PermissionDenied(
            "api.base_url: setting where the proxy sends this provider's credentials needs \
             the `credentials:reveal` scope as well (it is as good as reading them)"
                .into(),
        )
    })?;
    caller
        .require_unconstrained("set api.base_url (where every credential of the provider is sent)")
}

fn require_admin_for_private_network(caller: &Caller) -> Result<()> {
    caller.require(Scope::Admin).map_err(|_| {
        Error::PermissionDenied(
            "allow_private_network: letting a provider reach private addresses needs a vault \
             `admin` token"
                .into(),
        )
    })
}

/// The catalog, as providers with no client.
pub fn templates() -> Vec<(String, ProviderConfig)> {
    catalog::names()
        .filter_map(|n| catalog::template(n).map(|c| (n.to_owned(), c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_requests_redact_the_client_secret() {
        let new = NewProvider {
            client_secret: SecretString::from("canary-client-secret"),
            ..NewProvider::default()
        };
        let changes = ProviderChanges {
            client_secret: Some(SecretString::from("canary-client-secret")),
            ..ProviderChanges::default()
        };
        assert!(!format!("{new:?} {changes:?}").contains("canary"));
    }
}
