//! A tenant's hosted-page settings (branding, allow-lists, custom base URL) and the
//! `whsec_` secret that signs its links' `notify_url` calls.
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{Connect, secret_aad};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::model::connect::{ConnectSettings, SealedConnectSettings};
use crate::service::webhooks::{self, RotatingSecret};
use crate::service::{Caller, Vault, validate};
use crate::webhooks::signing;

const MAX_URLS: usize = 32;

impl Connect {
    /// The tenant's settings (defaults when none are stored).
    pub(super) async fn load_settings(&self, tenant_id: &str) -> Result<SealedConnectSettings> {
        Ok(self
            .vault
            .store
            .get_connect_settings(tenant_id)
            .await?
            .unwrap_or_else(|| SealedConnectSettings {
                tenant_id: tenant_id.to_owned(),
                ..SealedConnectSettings::default()
            }))
    }

    pub async fn get_settings(&self, caller: &Caller) -> Result<SealedConnectSettings> {
        self.load_settings(&caller.tenant_id).await
    }

    /// Replaces the settings, keeping the signing secret.
    pub async fn set_settings(
        &self,
        caller: &Caller,
        settings: ConnectSettings,
        expected_version: Option<i64>,
    ) -> Result<SealedConnectSettings> {
        self.validate_settings(&settings)?;
        let current = self.load_settings(&caller.tenant_id).await?;
        if let Some(expected) = expected_version.filter(|v| *v != current.version) {
            return Err(Error::Aborted(format!(
                "connect settings are at version {}, not {expected}; re-read them and retry",
                current.version
            )));
        }
        let next = SealedConnectSettings {
            settings,
            ..current.clone()
        };
        let written = self.write_settings(&current, next).await?;
        let entry = self.vault.audit(caller, "connect.settings.update", "", "");
        self.vault.record(&entry).await?;
        Ok(written)
    }

    /// A new signing secret, shown once; the previous one keeps signing for `overlap`.
    pub async fn rotate_secret(
        &self,
        caller: &Caller,
        overlap_secs: Option<i64>,
    ) -> Result<SecretString> {
        let overlap = webhooks::overlap(overlap_secs)?;
        let current = self.load_settings(&caller.tenant_id).await?;
        let now = self.now();
        let secret = signing::new_secret();
        let keep_previous = overlap > 0 && current.secret.is_some();
        let next = SealedConnectSettings {
            secret: Some(self.seal_secret(&caller.tenant_id, &secret).await?),
            previous_secret: keep_previous.then(|| current.secret.clone()).flatten(),
            previous_secret_until: keep_previous.then(|| now + overlap * 1000),
            ..current.clone()
        };
        self.write_settings(&current, next).await?;
        let entry = self.vault.audit(caller, "connect.secret.rotate", "", "");
        self.vault.record(&entry).await?;
        Ok(secret)
    }

    /// Creates the tenant's signing secret on first use; returns it when this call
    /// created it (so it can be shown once).
    pub(super) async fn ensure_signing_secret(
        &self,
        tenant_id: &str,
    ) -> Result<Option<SecretString>> {
        let current = self.load_settings(tenant_id).await?;
        if current.secret.is_some() {
            return Ok(None);
        }
        let secret = signing::new_secret();
        let next = SealedConnectSettings {
            secret: Some(self.seal_secret(tenant_id, &secret).await?),
            ..current.clone()
        };
        match self.write_settings(&current, next).await {
            Ok(_) => Ok(Some(secret)),
            // Another request created it first: that one showed it.
            Err(Error::Aborted(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn seal_secret(&self, tenant_id: &str, secret: &SecretString) -> Result<Vec<u8>> {
        self.vault
            .tenant_keys
            .seal(&secret_aad(tenant_id), secret.expose_secret().as_bytes())
            .await
    }

    async fn write_settings(
        &self,
        current: &SealedConnectSettings,
        mut next: SealedConnectSettings,
    ) -> Result<SealedConnectSettings> {
        next.version = current.version + 1;
        next.updated_at = self.now();
        if self
            .vault
            .store
            .put_connect_settings(&next, current.version)
            .await?
        {
            Ok(next)
        } else {
            Err(Error::Aborted(
                "connect settings changed concurrently; re-read them and retry".into(),
            ))
        }
    }

    /// An absolute http(s) URL (https unless `allow_http_urls`), parsed.
    fn parsed_url(&self, field: &'static str, value: &str) -> Result<url::Url> {
        self.vault.check_url(field, value, true)?;
        url::Url::parse(value).map_err(|_| Error::invalid(field, "is not a URL"))
    }

    fn validate_settings(&self, s: &ConnectSettings) -> Result<()> {
        validate::bounded_text("display_name", &s.display_name, 100)?;
        for (field, value) in [
            ("logo_url", &s.logo_url),
            ("terms_url", &s.terms_url),
            ("privacy_url", &s.privacy_url),
            ("support_url", &s.support_url),
        ] {
            self.vault.check_url(field, value, false)?;
        }
        if !s.primary_color.is_empty() && !is_hex_colour(&s.primary_color) {
            return Err(Error::invalid(
                "primary_color",
                "must be a hex colour such as #1a73e8",
            ));
        }
        for (field, list) in [
            ("allowed_redirect_urls", &s.allowed_redirect_urls),
            ("allowed_embedding_origins", &s.allowed_embedding_origins),
        ] {
            if list.len() > MAX_URLS {
                return Err(Error::invalid(
                    field,
                    format!("at most {MAX_URLS} are allowed"),
                ));
            }
        }
        for url in &s.allowed_redirect_urls {
            self.vault.check_url("allowed_redirect_urls", url, true)?;
        }
        for origin in &s.allowed_embedding_origins {
            let url = self.parsed_url("allowed_embedding_origins", origin)?;
            if url.origin().ascii_serialization() != origin.trim_end_matches('/') {
                return Err(Error::invalid(
                    "allowed_embedding_origins",
                    "must be origins only (scheme://host[:port]), such as https://app.example.com",
                ));
            }
        }
        if !s.custom_base_url.is_empty() {
            let url = self.parsed_url("custom_base_url", &s.custom_base_url)?;
            if url.query().is_some() || url.fragment().is_some() {
                return Err(Error::invalid(
                    "custom_base_url",
                    "must not have a query or fragment",
                ));
            }
        }
        Ok(())
    }
}

/// `#rrggbb`.
fn is_hex_colour(value: &str) -> bool {
    value.len() == 7 && value.starts_with('#') && value[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The secrets that sign a tenant's notify calls now: the current one, and the
/// previous one during a rotation's overlap.
pub(in crate::service) async fn notify_secrets(
    vault: &Vault,
    tenant_id: &str,
    now: Millis,
) -> Result<Vec<Zeroizing<String>>> {
    let Some(row) = vault.store.get_connect_settings(tenant_id).await? else {
        return Ok(Vec::new());
    };
    let pair = RotatingSecret {
        current: row.secret.as_deref(),
        previous: row.previous_secret.as_deref(),
        previous_until: row.previous_secret_until,
    };
    vault
        .open_rotating(&secret_aad(tenant_id), "connect signing secret", pair, now)
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn colours_are_six_hex_digits() {
        assert!(super::is_hex_colour("#1a73E8"));
        for bad in ["1a73e8", "#1a73e", "#1a73e8a", "#gggggg", "red", "#fff;x"] {
            assert!(!super::is_hex_colour(bad), "{bad}");
        }
    }
}
