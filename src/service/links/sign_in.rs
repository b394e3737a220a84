//! The hosted sign-in step: a link minted with `require_sign_in_connector` shows its
//! providers only to the browser that signed in through that connector as the
//! link's user. The login runs exactly as `Authenticate` does (pre-validation,
//! lockouts, circuit breaker, audit, `user.*` events); signing in as anyone else
//! revokes the link (`identity_mismatch`).
use zeroize::Zeroizing;

use super::page::{Ended, Opened, finished, link_caller, notice};
use super::{Connect, NewLink};
use crate::error::{Error, Result};
use crate::ids;
use crate::model::Event;
use crate::model::connect::{
    ConnectLink, ConnectOutcome, ConnectedCredential, LinkChange, LinkStatus,
    REVOKED_IDENTITY_MISMATCH,
};
use crate::model::external_auth::{CONNECTOR_PREFIX, ConnectorId, Device, SignInPage};
use crate::service::Caller;
use crate::service::external_auth::{Login, LoginOutcome, Subject};

/// What the page needs to show the sign-in form.
#[derive(Debug, Clone)]
pub struct SignInStep {
    pub connector_id: ConnectorId,
    /// The connector's texts and links (defaults if it was deleted since).
    pub page: SignInPage,
    /// The registered email of the link's user, to fill in.
    pub identifier: String,
}

/// What the user typed into the sign-in form. `Debug` never shows the password.
pub struct SignInForm {
    /// An email, or else a user id.
    pub identifier: String,
    pub password: Zeroizing<String>,
    pub device: Device,
}

impl std::fmt::Debug for SignInForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInForm")
            .field("identifier", &self.identifier)
            .field("password", &"[redacted]")
            .field("device", &self.device)
            .finish()
    }
}

/// What a sign-in post came to.
#[derive(Debug)]
pub enum SignedIn {
    /// This browser may now see the providers (or never had to sign in).
    Done,
    /// Not signed in; show the form again with the outcome's message.
    Refused(Box<Opened>, LoginOutcome),
    Ended(Ended),
}

/// The code of a link whose connector was deleted after it was minted.
const SIGN_IN_UNAVAILABLE: &str = "sign_in_unavailable";

impl Connect {
    /// The connector a new link requires sign-in through: an id of the tenant's,
    /// for a registered user (the login checks the user on file).
    pub(super) async fn sign_in_connector(
        &self,
        caller: &Caller,
        req: &NewLink,
    ) -> Result<Option<String>> {
        let id = req.require_sign_in_connector.as_str();
        if id.is_empty() {
            return Ok(None);
        }
        if !ids::is_well_formed(id, CONNECTOR_PREFIX) {
            return Err(Error::invalid(
                "require_sign_in_connector",
                "must be a connector id such as ac_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
            ));
        }
        self.external_auth.connector(&caller.tenant_id, id).await?;
        let registered = self
            .vault
            .store
            .get_user(&caller.tenant_id, &req.user_id)
            .await?;
        if registered.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "user {} is not registered: a link with a sign-in step needs a registered \
                 user (UserService.RegisterUser)",
                req.user_id
            )));
        }
        Ok(Some(id.to_owned()))
    }

    /// The sign-in step `browser` still has to take on `link`, if any.
    pub(super) async fn sign_in_step(
        &self,
        link: &ConnectLink,
        browser: Option<&str>,
    ) -> Result<Option<SignInStep>> {
        let Some(connector_id) = &link.request.sign_in_connector else {
            return Ok(None);
        };
        if signed_in_here(link, browser) {
            return Ok(None);
        }
        let page = match self
            .external_auth
            .connector(&link.tenant_id, connector_id)
            .await
        {
            Ok(connector) => connector.config.page,
            Err(Error::NotFound(_)) => SignInPage::default(),
            Err(e) => return Err(e),
        };
        let identifier = self
            .vault
            .store
            .get_user(&link.tenant_id, &link.user_id)
            .await?
            .and_then(|u| u.email)
            .unwrap_or_else(|| link.user_email.clone());
        Ok(Some(SignInStep {
            connector_id: ConnectorId(connector_id.clone()),
            page,
            identifier,
        }))
    }

    /// Signs `browser_nonce`'s browser in to the link behind `token`.
    #[tracing::instrument(name = "connect.sign_in", skip_all, fields(link = tracing::field::Empty, outcome))]
    pub async fn sign_in(
        &self,
        token: &str,
        browser_nonce: &str,
        form: SignInForm,
    ) -> Result<SignedIn> {
        let opened = match self.open(token, Some(browser_nonce)).await? {
            Ok(opened) => opened,
            Err(closed) => return Ok(SignedIn::Ended(Ended::Closed(closed))),
        };
        tracing::Span::current().record("link", tracing::field::display(&opened.link.id));
        let Some(step) = opened.sign_in.clone() else {
            return Ok(SignedIn::Done);
        };
        let outcome = match self.login(&opened.link, &step, form).await? {
            Some(outcome) => outcome,
            None => {
                let failed = self.fail(&opened, SIGN_IN_UNAVAILABLE).await?;
                return Ok(SignedIn::Ended(Ended::Finished(Box::new(failed))));
            }
        };
        let span = tracing::Span::current();
        if !outcome.authenticated {
            span.record("outcome", outcome.error_code.as_str());
            return Ok(SignedIn::Refused(Box::new(opened), outcome));
        }
        if outcome.user_id != opened.link.user_id {
            span.record("outcome", REVOKED_IDENTITY_MISMATCH);
            return self.identity_mismatch(&opened).await;
        }
        span.record("outcome", "signed_in");
        self.remember_browser(&opened.link, browser_nonce).await
    }

    /// The login of the sign-in form, through the step's connector; `None` when the
    /// connector no longer exists.
    async fn login(
        &self,
        link: &ConnectLink,
        step: &SignInStep,
        form: SignInForm,
    ) -> Result<Option<LoginOutcome>> {
        let identifier = form.identifier.trim().to_owned();
        let subject = if identifier.contains('@') {
            Subject::Email(identifier)
        } else {
            Subject::UserId(identifier)
        };
        let login = Login {
            connector_id: step.connector_id.to_string(),
            subject,
            password: form.password,
            device: form.device,
            request_id: link.id.to_string(),
        };
        match self
            .external_auth
            .authenticate(&link_caller(link), login)
            .await
        {
            Ok(outcome) => Ok(Some(outcome)),
            // Nothing the connector could be asked with: empty, too long, not an email.
            Err(Error::InvalidArgument { .. }) => Ok(Some(LoginOutcome {
                error_code: "invalid_input".into(),
                ..LoginOutcome::default()
            })),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records that `browser_nonce`'s browser signed in to `link`.
    async fn remember_browser(&self, link: &ConnectLink, browser_nonce: &str) -> Result<SignedIn> {
        let hash = ids::token_hash(browser_nonce);
        let marked = self
            .vault
            .store
            .mark_link_signed_in(&link.tenant_id, &link.id, &hash, self.now())
            .await?;
        if !marked {
            let closed = self.closed_now(link).await?;
            return Ok(SignedIn::Ended(Ended::Closed(closed)));
        }
        Ok(SignedIn::Done)
    }

    /// Someone signed in as another user: the link is revoked, with a
    /// `connect.failed` event, and the flow ends in failure.
    async fn identity_mismatch(&self, opened: &Opened) -> Result<SignedIn> {
        let link = &opened.link;
        tracing::warn!(link = %link.id, "connect link revoked: signed in as another user");
        let now = self.now();
        let event = Event::connect(
            link,
            ConnectOutcome::Failed(REVOKED_IDENTITY_MISMATCH),
            &ConnectedCredential::default(),
            now,
        );
        let change = LinkChange {
            tenant_id: &link.tenant_id,
            id: &link.id,
            status: LinkStatus::Revoked,
            credential_id: None,
            revoked_reason: Some(REVOKED_IDENTITY_MISMATCH),
            at: now,
        };
        let audit = self.vault.audit(
            &link_caller(link),
            "connect.link.revoke",
            link.id.as_str(),
            "",
        );
        let revoked = self
            .vault
            .store
            .finish_link(&change, &audit, Some(notice(link, &event)))
            .await?;
        if !revoked {
            let closed = self.closed_now(link).await?;
            return Ok(SignedIn::Ended(Ended::Closed(closed)));
        }
        let failed = finished(opened, Err(REVOKED_IDENTITY_MISMATCH));
        Ok(SignedIn::Ended(Ended::Finished(Box::new(failed))))
    }
}

/// Whether `browser` is the one that signed in to `link`.
fn signed_in_here(link: &ConnectLink, browser: Option<&str>) -> bool {
    match (&link.signed_in_browser, browser) {
        (Some(stored), Some(nonce)) => {
            subtle::ConstantTimeEq::ct_eq(stored.as_slice(), ids::token_hash(nonce).as_slice())
                .into()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug() {
        let form = SignInForm {
            identifier: "ann@example.com".into(),
            password: Zeroizing::new("canary-password".into()),
            device: Device::default(),
        };
        let shown = format!("{form:?}");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("ann@example.com"));
    }
}
