//! Public endpoints of well-known providers, so a tenant supplies only its client id
//! and secret. Checked against each provider's documentation; extra parameters ask
//! for refresh tokens where the provider needs to be told.
use std::collections::BTreeMap;

use super::api::ApiAccess;
use super::forms::{AuthMode, FormField, Verification};
use super::{DEFAULT_REFRESH_MARGIN_SECS, ProviderConfig, TokenAuthMethod};

struct Entry {
    name: &'static str,
    /// Where its API is, for the proxy; empty where it differs per customer.
    api_base: &'static str,
    authorization_url: &'static str,
    token_url: &'static str,
    revocation_url: &'static str,
    default_scopes: &'static [&'static str],
    scope_separator: &'static str,
    extra: &'static [(&'static str, &'static str)],
    auth: TokenAuthMethod,
}

const CATALOG: &[Entry] = &[
    Entry {
        name: "google",
        api_base: "https://www.googleapis.com",
        authorization_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        revocation_url: "https://oauth2.googleapis.com/revoke",
        default_scopes: &["openid", "email"],
        scope_separator: " ",
        extra: &[("access_type", "offline"), ("prompt", "consent")],
        auth: TokenAuthMethod::ClientSecretPost,
    },
    Entry {
        name: "microsoft",
        api_base: "https://graph.microsoft.com",
        authorization_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        revocation_url: "",
        default_scopes: &["offline_access", "User.Read"],
        scope_separator: " ",
        extra: &[],
        auth: TokenAuthMethod::ClientSecretPost,
    },
    Entry {
        name: "github",
        api_base: "https://api.github.com",
        authorization_url: "https://github.com/login/oauth/authorize",
        token_url: "https://github.com/login/oauth/access_token",
        revocation_url: "",
        default_scopes: &["read:user"],
        scope_separator: " ",
        extra: &[],
        auth: TokenAuthMethod::ClientSecretPost,
    },
    Entry {
        name: "slack",
        api_base: "https://slack.com/api",
        authorization_url: "https://slack.com/oauth/v2/authorize",
        token_url: "https://slack.com/api/oauth.v2.access",
        revocation_url: "",
        default_scopes: &["chat:write"],
        scope_separator: ",",
        extra: &[],
        auth: TokenAuthMethod::ClientSecretBasic,
    },
    Entry {
        name: "salesforce",
        api_base: "",
        authorization_url: "https://login.salesforce.com/services/oauth2/authorize",
        token_url: "https://login.salesforce.com/services/oauth2/token",
        revocation_url: "https://login.salesforce.com/services/oauth2/revoke",
        default_scopes: &["api", "refresh_token"],
        scope_separator: " ",
        extra: &[],
        auth: TokenAuthMethod::ClientSecretPost,
    },
    Entry {
        name: "hubspot",
        api_base: "https://api.hubapi.com",
        authorization_url: "https://app.hubspot.com/oauth/authorize",
        token_url: "https://api.hubapi.com/oauth/v1/token",
        revocation_url: "",
        default_scopes: &["oauth"],
        scope_separator: " ",
        extra: &[],
        auth: TokenAuthMethod::ClientSecretPost,
    },
];

/// An API-key provider: its form's one secret field and the request that checks a
/// key (a read-only call documented as needing nothing but the key).
struct KeyEntry {
    name: &'static str,
    api_base: &'static str,
    display_name: &'static str,
    help_url: &'static str,
    label: &'static str,
    placeholder: &'static str,
    pattern: &'static str,
    verify_url: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

const KEY_CATALOG: &[KeyEntry] = &[
    KeyEntry {
        name: "stripe",
        api_base: "https://api.stripe.com",
        display_name: "Stripe",
        help_url: "https://dashboard.stripe.com/apikeys",
        label: "Secret key",
        placeholder: "sk_live_…",
        pattern: "(sk|rk)_(live|test)_[A-Za-z0-9]+",
        verify_url: "https://api.stripe.com/v1/balance",
        headers: &[("Authorization", "Bearer {{api_key}}")],
    },
    KeyEntry {
        name: "openai",
        api_base: "https://api.openai.com",
        display_name: "OpenAI",
        help_url: "https://platform.openai.com/api-keys",
        label: "API key",
        placeholder: "sk-…",
        pattern: "sk-[A-Za-z0-9_-]+",
        verify_url: "https://api.openai.com/v1/models",
        headers: &[("Authorization", "Bearer {{api_key}}")],
    },
    KeyEntry {
        name: "sendgrid",
        api_base: "https://api.sendgrid.com",
        display_name: "SendGrid",
        help_url: "https://app.sendgrid.com/settings/api_keys",
        label: "API key",
        placeholder: "SG.…",
        pattern: "SG\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+",
        verify_url: "https://api.sendgrid.com/v3/scopes",
        headers: &[("Authorization", "Bearer {{api_key}}")],
    },
    KeyEntry {
        name: "airtable",
        api_base: "https://api.airtable.com",
        display_name: "Airtable",
        help_url: "https://airtable.com/create/tokens",
        label: "Personal access token",
        placeholder: "pat…",
        pattern: "pat[A-Za-z0-9.]+",
        verify_url: "https://api.airtable.com/v0/meta/whoami",
        headers: &[("Authorization", "Bearer {{api_key}}")],
    },
    KeyEntry {
        name: "notion",
        api_base: "https://api.notion.com",
        display_name: "Notion",
        help_url: "https://www.notion.so/my-integrations",
        label: "Internal integration secret",
        placeholder: "ntn_…",
        pattern: "(secret_|ntn_)[A-Za-z0-9]+",
        verify_url: "https://api.notion.com/v1/users/me",
        headers: &[
            ("Authorization", "Bearer {{api_key}}"),
            ("Notion-Version", "2022-06-28"),
        ],
    },
];

fn key_template(e: &KeyEntry) -> ProviderConfig {
    let mut field = FormField::new("api_key", e.label, true);
    field.placeholder = e.placeholder.into();
    field.pattern = e.pattern.into();
    ProviderConfig {
        template: e.name.into(),
        auth_mode: AuthMode::ApiKey,
        display_name: e.display_name.into(),
        help_url: e.help_url.into(),
        fields: vec![field],
        verification: Some(Verification {
            method: "GET".into(),
            url: e.verify_url.into(),
            headers: e
                .headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Verification::default()
        }),
        api: api(e.api_base),
        ..ProviderConfig::default()
    }
}

fn api(base: &str) -> Option<ApiAccess> {
    (!base.is_empty()).then(|| ApiAccess {
        base_url: base.into(),
        ..ApiAccess::default()
    })
}

/// The catalog entry's settings, or `None` for an unknown name.
pub fn template(name: &str) -> Option<ProviderConfig> {
    if let Some(e) = KEY_CATALOG.iter().find(|e| e.name == name) {
        return Some(key_template(e));
    }
    CATALOG
        .iter()
        .find(|e| e.name == name)
        .map(|e| ProviderConfig {
            template: e.name.into(),
            authorization_url: e.authorization_url.into(),
            token_url: e.token_url.into(),
            revocation_url: e.revocation_url.into(),
            default_scopes: e.default_scopes.iter().map(|s| (*s).to_owned()).collect(),
            scope_separator: e.scope_separator.into(),
            pkce: true,
            extra_authorize_params: e
                .extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            token_auth_method: e.auth,
            refresh_margin_secs: DEFAULT_REFRESH_MARGIN_SECS,
            api: api(e.api_base),
            ..ProviderConfig::default()
        })
}

pub fn names() -> impl Iterator<Item = &'static str> {
    CATALOG
        .iter()
        .map(|e| e.name)
        .chain(KEY_CATALOG.iter().map(|e| e.name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_entry_is_https_and_complete() {
        use crate::oauth::forms::{self, AuthMode};
        for name in super::names() {
            let t = super::template(name).unwrap();
            if let Some(api) = &t.api {
                assert!(api.base_url.starts_with("https://"), "{name}");
                api.check(t.auth_mode).unwrap();
            }
            if t.auth_mode != AuthMode::OAuth2 {
                forms::check_fields(t.auth_mode, &t.fields).unwrap();
                let names = forms::field_names(t.auth_mode, &t.fields);
                forms::check_verification(t.verification.as_ref().unwrap(), &names, false).unwrap();
                assert!(t.help_url.starts_with("https://"), "{name}");
                continue;
            }
            for url in [&t.authorization_url, &t.token_url] {
                assert!(url.starts_with("https://"), "{name}: {url}");
            }
            assert!(t.revocation_url.is_empty() || t.revocation_url.starts_with("https://"));
            assert!(!t.default_scopes.is_empty());
        }
        assert!(super::template("myspace").is_none());
        assert_eq!(super::names().count(), 11);
    }
}
