use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};

use super::convert::{millis, timestamp};
use super::{authorize, authorize_any};
use crate::error::{Error, Result};
use crate::model::Scope;
use crate::model::connect::{
    ConnectLink, ConnectSettings, LinkStatus, LinkType, SealedConnectSettings,
};
use crate::proto::v1::{self as pb, connect_service_server::ConnectService};
use crate::service::links::{Connect, NewLink};

/// `credvault.v1.ConnectService`: connect links and the hosted page's settings.
pub struct ConnectApi {
    connect: Connect,
}

impl ConnectApi {
    pub fn new(connect: Connect) -> Self {
        Self { connect }
    }
}

type Reply<T> = Result<Response<T>, Status>;

const SETTINGS_SCOPES: &[Scope] = &[Scope::TenantAdmin, Scope::Admin];

fn link_type(value: i32) -> Result<LinkType> {
    match pb::ConnectLinkType::try_from(value) {
        Ok(pb::ConnectLinkType::Unspecified | pb::ConnectLinkType::Create) => Ok(LinkType::Create),
        Ok(pb::ConnectLinkType::Reconnect) => Ok(LinkType::Reconnect),
        Err(_) => Err(Error::invalid("type", "is not a ConnectLinkType value")),
    }
}

fn status_filter(value: i32) -> Result<Option<LinkStatus>> {
    match pb::ConnectLinkStatus::try_from(value) {
        Ok(pb::ConnectLinkStatus::Unspecified) => Ok(None),
        Ok(pb::ConnectLinkStatus::Pending) => Ok(Some(LinkStatus::Pending)),
        Ok(pb::ConnectLinkStatus::Completed) => Ok(Some(LinkStatus::Completed)),
        Ok(pb::ConnectLinkStatus::Expired) => Ok(Some(LinkStatus::Expired)),
        Ok(pb::ConnectLinkStatus::Revoked) => Ok(Some(LinkStatus::Revoked)),
        Err(_) => Err(Error::invalid("status", "is not a ConnectLinkStatus value")),
    }
}

fn link_out(l: ConnectLink, now: i64) -> pb::ConnectLink {
    let status = match l.status_at(now) {
        LinkStatus::Pending => pb::ConnectLinkStatus::Pending,
        LinkStatus::Completed => pb::ConnectLinkStatus::Completed,
        LinkStatus::Expired => pb::ConnectLinkStatus::Expired,
        LinkStatus::Revoked => pb::ConnectLinkStatus::Revoked,
    };
    let r = l.request;
    pb::ConnectLink {
        id: l.id.0,
        r#type: match r.link_type {
            LinkType::Create => pb::ConnectLinkType::Create,
            LinkType::Reconnect => pb::ConnectLinkType::Reconnect,
        }
        .into(),
        status: status.into(),
        user_id: l.user_id,
        user_email: l.user_email,
        providers: r.providers,
        reconnect_credential_id: r.reconnect_credential_id.unwrap_or_default(),
        name: r.name,
        credential_name: r.credential_name,
        labels: r.labels.into_iter().collect(),
        success_redirect_url: r.success_redirect_url,
        failure_redirect_url: r.failure_redirect_url,
        notify_url: r.notify_url,
        credential_id: l.credential_id.unwrap_or_default(),
        failed_attempts: i32::try_from(l.failed_attempts).unwrap_or(i32::MAX),
        expires_at: Some(timestamp(l.expires_at)),
        created_at: Some(timestamp(l.created_at)),
        completed_at: l.completed_at.map(timestamp),
        revoked_at: l.revoked_at.map(timestamp),
        revoked_reason: l.revoked_reason.unwrap_or_default(),
        require_sign_in_connector: r.sign_in_connector.unwrap_or_default(),
        signed_in: l.signed_in_browser.is_some(),
    }
}

fn settings_out(s: SealedConnectSettings) -> pb::ConnectSettings {
    let c = s.settings;
    pb::ConnectSettings {
        display_name: c.display_name,
        logo_url: c.logo_url,
        primary_color: c.primary_color,
        terms_url: c.terms_url,
        privacy_url: c.privacy_url,
        support_url: c.support_url,
        allowed_redirect_urls: c.allowed_redirect_urls,
        allowed_embedding_origins: c.allowed_embedding_origins,
        custom_base_url: c.custom_base_url,
        has_signing_secret: s.secret.is_some(),
        version: s.version,
        updated_at: (s.version > 0).then(|| timestamp(s.updated_at)),
    }
}

fn settings_in(s: pb::ConnectSettings) -> ConnectSettings {
    ConnectSettings {
        display_name: s.display_name,
        logo_url: s.logo_url,
        primary_color: s.primary_color,
        terms_url: s.terms_url,
        privacy_url: s.privacy_url,
        support_url: s.support_url,
        allowed_redirect_urls: s.allowed_redirect_urls,
        allowed_embedding_origins: s.allowed_embedding_origins,
        custom_base_url: s.custom_base_url,
    }
}

#[tonic::async_trait]
impl ConnectService for ConnectApi {
    async fn create_connect_link(
        &self,
        req: Request<pb::CreateConnectLinkRequest>,
    ) -> Reply<pb::CreateConnectLinkResponse> {
        let caller = authorize(self.connect.vault(), &req, Scope::ConnectWrite).await?;
        let r = req.into_inner();
        let new = NewLink {
            link_type: link_type(r.r#type)?,
            expires_at: millis("expires_at", r.expires_at)?,
            user_id: r.user_id,
            user_email: r.user_email,
            providers: r.providers,
            reconnect_credential_id: r.reconnect_credential_id,
            success_redirect_url: r.success_redirect_url,
            failure_redirect_url: r.failure_redirect_url,
            notify_url: r.notify_url,
            name: r.name,
            credential_name: r.credential_name,
            labels: r.labels.into_iter().collect(),
            require_sign_in_connector: r.require_sign_in_connector,
        };
        let minted = self.connect.create_link(&caller, new).await?;
        let expires_at = Some(timestamp(minted.link.expires_at));
        Ok(Response::new(pb::CreateConnectLinkResponse {
            link: Some(link_out(minted.link, self.connect.vault().now())),
            url: minted.url.expose_secret().to_owned(),
            expires_at,
            signing_secret: minted
                .signing_secret
                .map(|s| s.expose_secret().to_owned())
                .unwrap_or_default(),
        }))
    }

    async fn get_connect_link(
        &self,
        req: Request<pb::GetConnectLinkRequest>,
    ) -> Reply<pb::ConnectLink> {
        let caller = authorize(self.connect.vault(), &req, Scope::ConnectRead).await?;
        let link = self.connect.get_link(&caller, &req.get_ref().id).await?;
        Ok(Response::new(link_out(link, self.connect.vault().now())))
    }

    async fn list_connect_links(
        &self,
        req: Request<pb::ListConnectLinksRequest>,
    ) -> Reply<pb::ListConnectLinksResponse> {
        let caller = authorize(self.connect.vault(), &req, Scope::ConnectRead).await?;
        let r = req.into_inner();
        let page = self
            .connect
            .list_links(
                &caller,
                status_filter(r.status)?,
                &r.user_id,
                r.page_size,
                &r.page_token,
            )
            .await?;
        let now = self.connect.vault().now();
        Ok(Response::new(pb::ListConnectLinksResponse {
            links: page.links.into_iter().map(|l| link_out(l, now)).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn revoke_connect_link(
        &self,
        req: Request<pb::RevokeConnectLinkRequest>,
    ) -> Reply<pb::ConnectLink> {
        let caller = authorize(self.connect.vault(), &req, Scope::ConnectWrite).await?;
        let link = self.connect.revoke_link(&caller, &req.get_ref().id).await?;
        Ok(Response::new(link_out(link, self.connect.vault().now())))
    }

    async fn get_connect_settings(
        &self,
        req: Request<pb::GetConnectSettingsRequest>,
    ) -> Reply<pb::ConnectSettings> {
        let caller = authorize_any(self.connect.vault(), &req, SETTINGS_SCOPES).await?;
        let settings = self.connect.get_settings(&caller).await?;
        Ok(Response::new(settings_out(settings)))
    }

    async fn set_connect_settings(
        &self,
        req: Request<pb::SetConnectSettingsRequest>,
    ) -> Reply<pb::ConnectSettings> {
        let caller = authorize_any(self.connect.vault(), &req, SETTINGS_SCOPES).await?;
        let r = req.into_inner();
        let settings = settings_in(r.settings.unwrap_or_default());
        let stored = self
            .connect
            .set_settings(&caller, settings, r.expected_version)
            .await?;
        Ok(Response::new(settings_out(stored)))
    }

    async fn rotate_connect_secret(
        &self,
        req: Request<pb::RotateConnectSecretRequest>,
    ) -> Reply<pb::RotateConnectSecretResponse> {
        let caller = authorize_any(self.connect.vault(), &req, SETTINGS_SCOPES).await?;
        let secret = self
            .connect
            .rotate_secret(&caller, req.get_ref().overlap_seconds)
            .await?;
        Ok(Response::new(pb::RotateConnectSecretResponse {
            secret: secret.expose_secret().to_owned(),
        }))
    }
}
