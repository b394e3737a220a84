//! Minting, reading and revoking connect links.
use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::{Connect, DEFAULT_LINK_TTL_MS, MAX_LINK_TTL_MS, MIN_LINK_TTL_MS};
use crate::clock::Millis;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::connect::{
    ConnectLink, LINK_PREFIX, LinkChange, LinkId, LinkRequest, LinkStatus, LinkType,
    REVOKED_BY_CALLER,
};
use crate::oauth::redirect;
use crate::service::{Caller, pagination, validate};
use crate::store::{LinkFilter, Window};

/// A `CreateConnectLink` request as received.
#[derive(Debug, Default)]
pub struct NewLink {
    pub link_type: LinkType,
    pub user_id: String,
    pub user_email: String,
    pub providers: Vec<String>,
    pub reconnect_credential_id: String,
    pub expires_at: Option<Millis>,
    pub success_redirect_url: String,
    pub failure_redirect_url: String,
    pub notify_url: String,
    pub name: String,
    pub credential_name: String,
    pub labels: BTreeMap<String, String>,
    /// A connector id, or empty for no sign-in step.
    pub require_sign_in_connector: String,
}

/// A page of links, newest first.
#[derive(Debug)]
pub struct LinkPage {
    pub links: Vec<ConnectLink>,
    pub next_page_token: String,
}

/// A minted link: the stored row, its URL (the bearer token is in it: `Debug`
/// redacts it), and the notify signing secret if this call created it.
pub struct Minted {
    pub link: ConnectLink,
    pub url: SecretString,
    pub signing_secret: Option<SecretString>,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("link", &self.link)
            .field("url", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Connect {
    /// Mints a link for one end user. Nothing is stored unless every field is valid.
    pub async fn create_link(&self, caller: &Caller, req: NewLink) -> Result<Minted> {
        validate::text("user_id", &req.user_id, validate::MAX_TEXT_CHARS)?;
        if !req.user_email.is_empty() {
            validate::email("user_email", &req.user_email)?;
        }
        validate::bounded_text("name", &req.name, validate::MAX_TEXT_CHARS)?;
        validate::bounded_text(
            "credential_name",
            &req.credential_name,
            validate::MAX_TEXT_CHARS,
        )?;
        validate::labels("labels", &req.labels)?;
        let now = self.now();
        let expires_at = self.expiry(req.expires_at, now)?;
        let providers = self.link_providers(caller, &req).await?;
        if req.link_type != LinkType::Reconnect {
            // A constrained token mints links only for credentials it could see.
            for provider in &providers {
                caller.may_make(provider, &req.labels)?;
            }
        }
        let sign_in_connector = self.sign_in_connector(caller, &req).await?;
        let settings = self.load_settings(&caller.tenant_id).await?;
        for (field, url) in [
            ("success_redirect_url", &req.success_redirect_url),
            ("failure_redirect_url", &req.failure_redirect_url),
        ] {
            if !url.is_empty() && !redirect::allowed(url, &settings.settings.allowed_redirect_urls)
            {
                return Err(Error::invalid(
                    field,
                    "must be an absolute URL on the tenant's allowed_redirect_urls \
                     (SetConnectSettings)",
                ));
            }
        }
        if !req.notify_url.is_empty() {
            self.vault
                .check_endpoint_url("notify_url", &req.notify_url)
                .await?;
        }
        let signing_secret = if req.notify_url.is_empty() {
            None
        } else {
            self.ensure_signing_secret(&caller.tenant_id).await?
        };

        let token = ids::random_token();
        let link = ConnectLink {
            tenant_id: caller.tenant_id.clone(),
            id: LinkId::default(),
            token_hash: ids::token_hash(token.expose_secret()),
            user_id: req.user_id,
            user_email: req.user_email,
            request: LinkRequest {
                link_type: req.link_type,
                providers,
                reconnect_credential_id: (req.link_type == LinkType::Reconnect)
                    .then_some(req.reconnect_credential_id),
                name: req.name,
                credential_name: req.credential_name,
                labels: req.labels,
                success_redirect_url: req.success_redirect_url,
                failure_redirect_url: req.failure_redirect_url,
                notify_url: req.notify_url,
                sign_in_connector,
            },
            status: LinkStatus::Pending,
            credential_id: None,
            failed_attempts: 0,
            revoked_reason: None,
            expires_at,
            created_at: now,
            updated_at: now,
            completed_at: None,
            revoked_at: None,
            signed_in_browser: None,
        };
        let audit = self
            .vault
            .audit(caller, "connect.link.create", link.id.as_str(), "");
        self.vault.store.insert_link(&link, &audit).await?;
        let base = match settings.settings.custom_base_url.as_str() {
            "" => self.config.public_base_url.as_str(),
            custom => custom,
        };
        let url = SecretString::from(format!(
            "{}/connect/{}",
            base.trim_end_matches('/'),
            token.expose_secret()
        ));
        Ok(Minted {
            link,
            url,
            signing_secret,
        })
    }

    fn expiry(&self, asked: Option<Millis>, now: Millis) -> Result<Millis> {
        let Some(at) = asked else {
            return Ok(now + DEFAULT_LINK_TTL_MS);
        };
        if at < now + MIN_LINK_TTL_MS || at > now + MAX_LINK_TTL_MS {
            return Err(Error::invalid(
                "expires_at",
                "must be from 1 minute to 24 hours ahead (default: 30 minutes)",
            ));
        }
        Ok(at)
    }

    /// The providers the page offers: for a reconnect, the credential's own (whose
    /// owner must be the link's user); else the slugs asked for, each registered.
    async fn link_providers(&self, caller: &Caller, req: &NewLink) -> Result<Vec<String>> {
        if req.link_type == LinkType::Reconnect {
            if req.reconnect_credential_id.is_empty() {
                return Err(Error::invalid(
                    "reconnect_credential_id",
                    "is required for a RECONNECT link",
                ));
            }
            let credential = self
                .vault
                .get_credential(caller, &req.reconnect_credential_id)
                .await?;
            if credential.user_id != req.user_id {
                return Err(Error::invalid(
                    "user_id",
                    "must be the user the credential to reconnect belongs to",
                ));
            }
            self.check_servable(
                &caller.tenant_id,
                std::slice::from_ref(&credential.provider),
            )
            .await?;
            return Ok(vec![credential.provider]);
        }
        if !req.reconnect_credential_id.is_empty() {
            return Err(Error::invalid(
                "reconnect_credential_id",
                "is only for RECONNECT links",
            ));
        }
        match req.providers.as_slice() {
            [] => Err(Error::invalid(
                "providers",
                "is required: provider slugs, or [\"*\"] for every provider of the tenant",
            )),
            [all] if all == "*" => Ok(vec!["*".into()]),
            slugs => {
                if slugs.len() > 100 {
                    return Err(Error::invalid("providers", "at most 100 are allowed"));
                }
                let mut seen: Vec<String> = Vec::with_capacity(slugs.len());
                for slug in slugs {
                    validate::slug("providers", slug).map_err(|_| {
                        Error::invalid("providers", "must be slugs, or [\"*\"] alone")
                    })?;
                    if !seen.contains(slug) {
                        seen.push(slug.clone());
                    }
                }
                self.check_servable(&caller.tenant_id, &seen).await?;
                Ok(seen)
            }
        }
    }

    /// Every slug names a provider the page can offer: registered, and for OAuth
    /// with a client id (one read of the tenant's registry).
    async fn check_servable(&self, tenant_id: &str, slugs: &[String]) -> Result<()> {
        let registered = self
            .vault
            .store
            .list_providers(tenant_id, Window::ALL)
            .await?;
        for slug in slugs {
            let provider = registered
                .iter()
                .find(|p| p.provider.slug == *slug)
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "provider {slug} is not registered (CreateProvider)"
                    ))
                })?;
            if !page_can_serve(&provider.provider.config) {
                return Err(Error::FailedPrecondition(format!(
                    "provider {slug} is OAuth and has no client_id: the page cannot start its flow"
                )));
            }
        }
        Ok(())
    }

    pub async fn get_link(&self, caller: &Caller, id: &str) -> Result<ConnectLink> {
        self.link(&caller.tenant_id, id).await
    }

    pub async fn list_links(
        &self,
        caller: &Caller,
        status: Option<LinkStatus>,
        user_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<LinkPage> {
        let size = pagination::size(page_size)?;
        let before = pagination::decode(page_token, LINK_PREFIX)?;
        if !user_id.is_empty() {
            validate::text("user_id", user_id, validate::MAX_TEXT_CHARS)?;
        }
        let filter = LinkFilter {
            status,
            user_id: (!user_id.is_empty()).then(|| user_id.to_owned()),
        };
        let links = self
            .vault
            .store
            .list_links(
                &caller.tenant_id,
                &filter,
                self.now(),
                before.as_deref(),
                size + 1,
            )
            .await?;
        let (links, next_page_token) = pagination::finish(links, size, |l| l.id.as_str());
        Ok(LinkPage {
            links,
            next_page_token,
        })
    }

    /// Revokes a pending link (a revoked one is returned as is).
    pub async fn revoke_link(&self, caller: &Caller, id: &str) -> Result<ConnectLink> {
        let link = self.link(&caller.tenant_id, id).await?;
        let now = self.now();
        match link.status_at(now) {
            LinkStatus::Revoked => return Ok(link),
            LinkStatus::Completed => {
                return Err(Error::FailedPrecondition(format!(
                    "connect link {id} is already completed (credential {})",
                    link.credential_id.as_deref().unwrap_or("")
                )));
            }
            LinkStatus::Pending | LinkStatus::Expired => {}
        }
        let change = LinkChange {
            tenant_id: &caller.tenant_id,
            id: &link.id,
            status: LinkStatus::Revoked,
            credential_id: None,
            revoked_reason: Some(REVOKED_BY_CALLER),
            at: now,
        };
        let audit = self
            .vault
            .audit(caller, "connect.link.revoke", link.id.as_str(), "");
        self.vault.store.finish_link(&change, &audit, None).await?;
        self.link(&caller.tenant_id, id).await
    }
}

/// Whether the hosted page can offer a provider with these settings.
pub(super) fn page_can_serve(config: &crate::oauth::ProviderConfig) -> bool {
    use crate::oauth::forms::AuthMode;
    config.auth_mode != AuthMode::OAuth2 || !config.client_id.is_empty()
}
