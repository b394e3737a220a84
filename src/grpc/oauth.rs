use tonic::{Request, Response, Status};

use super::{authorize, convert};
use crate::model::Scope;
use crate::proto::v1::{self as pb, o_auth_service_server::OAuthService};
use crate::service::{Vault, templates};

/// `credvault.v1.OAuthService`: a tenant's providers and the connect flow.
pub struct OAuthApi {
    vault: Vault,
}

impl OAuthApi {
    pub fn new(vault: Vault) -> Self {
        Self { vault }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl OAuthService for OAuthApi {
    async fn create_provider(
        &self,
        req: Request<pb::CreateProviderRequest>,
    ) -> Reply<pb::Provider> {
        let caller = authorize(&self.vault, &req, Scope::ProvidersWrite).await?;
        let provider = self
            .vault
            .create_provider(&caller, convert::new_provider(req.into_inner())?)
            .await?;
        tracing::info!(tenant = %caller.tenant_id, provider = %provider.provider.slug, "provider created");
        Ok(Response::new(convert::provider(provider)))
    }

    async fn get_provider(&self, req: Request<pb::GetProviderRequest>) -> Reply<pb::Provider> {
        let caller = authorize(&self.vault, &req, Scope::ProvidersRead).await?;
        let provider = self
            .vault
            .get_provider(&caller, &req.get_ref().slug)
            .await?;
        Ok(Response::new(convert::provider(provider)))
    }

    async fn list_providers(
        &self,
        req: Request<pb::ListProvidersRequest>,
    ) -> Reply<pb::ListProvidersResponse> {
        let caller = authorize(&self.vault, &req, Scope::ProvidersRead).await?;
        let r = req.get_ref();
        let page = self
            .vault
            .list_providers(&caller, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListProvidersResponse {
            providers: page.items.into_iter().map(convert::provider).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_provider(
        &self,
        req: Request<pb::UpdateProviderRequest>,
    ) -> Reply<pb::Provider> {
        let caller = authorize(&self.vault, &req, Scope::ProvidersWrite).await?;
        let provider = self
            .vault
            .update_provider(&caller, convert::provider_changes(req.into_inner())?)
            .await?;
        tracing::info!(tenant = %caller.tenant_id, provider = %provider.provider.slug, "provider updated");
        Ok(Response::new(convert::provider(provider)))
    }

    async fn delete_provider(
        &self,
        req: Request<pb::DeleteProviderRequest>,
    ) -> Reply<pb::DeleteProviderResponse> {
        let caller = authorize(&self.vault, &req, Scope::ProvidersWrite).await?;
        self.vault
            .delete_provider(&caller, &req.get_ref().slug)
            .await?;
        Ok(Response::new(pb::DeleteProviderResponse {}))
    }

    async fn list_provider_templates(
        &self,
        req: Request<pb::ListProviderTemplatesRequest>,
    ) -> Reply<pb::ListProviderTemplatesResponse> {
        authorize(&self.vault, &req, Scope::ProvidersRead).await?;
        Ok(Response::new(pb::ListProviderTemplatesResponse {
            templates: templates()
                .into_iter()
                .map(|(n, c)| convert::template(n, c))
                .collect(),
        }))
    }

    async fn start_o_auth(
        &self,
        req: Request<pb::StartOAuthRequest>,
    ) -> Reply<pb::StartOAuthResponse> {
        let caller = authorize(&self.vault, &req, Scope::CredentialsWrite).await?;
        let started = self
            .vault
            .start_oauth(&caller, convert::start_oauth(req.into_inner()))
            .await?;
        Ok(Response::new(pb::StartOAuthResponse {
            authorization_url: started.authorization_url,
            expires_at: Some(convert::timestamp(started.expires_at)),
        }))
    }
}
