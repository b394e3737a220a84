//! The provider's verification request: filled from the form through the request
//! template engine and sent through the SSRF-guarded client, before anything is
//! stored.
use super::Connect;
use super::page::FormValues;
use crate::oauth::SealedProvider;
use crate::oauth::forms::{self, Verification};
use crate::outbound::Guard;
use crate::template::request::BuildError;

/// What the provider said of the typed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx, or the provider has no verification request.
    Valid,
    /// 401 or 403: the provider refused the key.
    Rejected,
    /// No answer, or another status: the key may be fine; try again.
    Unverified,
}

impl Connect {
    pub(super) async fn verify(&self, provider: &SealedProvider, values: &FormValues) -> Verdict {
        let config = &provider.provider.config;
        let Some(verification) = &config.verification else {
            return Verdict::Valid;
        };
        let request = match self.build(verification, values) {
            Ok(request) => request,
            Err(e) => {
                // A value the template cannot carry (a line break in a header):
                // nothing was sent, and the provider never saw it.
                tracing::info!(provider = %provider.provider.slug, error = %e, "verification request not built");
                return Verdict::Rejected;
            }
        };
        let guard = Guard {
            allow_http: self.vault.settings.allow_http_urls,
            allow_private: config.allow_private_network
                || self.vault.settings.provider_allow_private,
        };
        match self
            .outbound
            .send(request, guard, self.config.verify_timeout)
            .await
        {
            Ok(response) => match response.status().as_u16() {
                200..=299 => Verdict::Valid,
                401 | 403 => Verdict::Rejected,
                status => {
                    tracing::warn!(provider = %provider.provider.slug, status, "verification answered neither 2xx nor 401/403");
                    Verdict::Unverified
                }
            },
            Err(e) => {
                tracing::warn!(provider = %provider.provider.slug, error = %e, "verification request failed");
                Verdict::Unverified
            }
        }
    }

    fn build(&self, v: &Verification, values: &FormValues) -> Result<reqwest::Request, BuildError> {
        let method = forms::method(&v.method).ok_or(BuildError::Url)?;
        v.request(&method)
            .build(values, |method, url| self.outbound.request(method, url))?
            .build()
            .map_err(|_| BuildError::Url)
    }
}
