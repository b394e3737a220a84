//! Public endpoints of well-known providers, so a tenant supplies only its client id
//! and secret. Checked against each provider's documentation; extra parameters ask
//! for refresh tokens where the provider needs to be told.
use std::collections::BTreeMap;

use super::{DEFAULT_REFRESH_MARGIN_SECS, ProviderConfig, TokenAuthMethod};

struct Entry {
    name: &'static str,
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
        authorization_url: "https://app.hubspot.com/oauth/authorize",
        token_url: "https://api.hubapi.com/oauth/v1/token",
        revocation_url: "",
        default_scopes: &["oauth"],
        scope_separator: " ",
        extra: &[],
        auth: TokenAuthMethod::ClientSecretPost,
    },
];

/// The catalog entry's settings, or `None` for an unknown name.
pub fn template(name: &str) -> Option<ProviderConfig> {
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
            ..ProviderConfig::default()
        })
}

pub fn names() -> impl Iterator<Item = &'static str> {
    CATALOG.iter().map(|e| e.name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_entry_is_https_and_complete() {
        for name in super::names() {
            let t = super::template(name).unwrap();
            for url in [&t.authorization_url, &t.token_url] {
                assert!(url.starts_with("https://"), "{name}: {url}");
            }
            assert!(t.revocation_url.is_empty() || t.revocation_url.starts_with("https://"));
            assert!(!t.default_scopes.is_empty());
        }
        assert!(super::template("myspace").is_none());
        assert_eq!(super::names().count(), 6);
    }
}
