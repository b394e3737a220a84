use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};

use super::{authorize, convert};
use crate::model::Scope;
use crate::proto::v1::{self as pb, admin_service_server::AdminService};
use crate::service::Vault;

/// `credvault.v1.AdminService`: vault-wide, `admin` scope only.
pub struct AdminApi {
    vault: Vault,
}

impl AdminApi {
    pub fn new(vault: Vault) -> Self {
        Self { vault }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_tenant(&self, req: Request<pb::CreateTenantRequest>) -> Reply<pb::Tenant> {
        authorize(&self.vault, &req, Scope::Admin).await?;
        let tenant = self.vault.create_tenant(&req.get_ref().name).await?;
        tracing::info!(tenant = %tenant.id, name = %tenant.name, "tenant created");
        Ok(Response::new(convert::tenant(tenant)))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Reply<pb::ListTenantsResponse> {
        authorize(&self.vault, &req, Scope::Admin).await?;
        let tenants = self.vault.list_tenants().await?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(convert::tenant).collect(),
        }))
    }

    async fn create_service_token(
        &self,
        req: Request<pb::CreateServiceTokenRequest>,
    ) -> Reply<pb::CreateServiceTokenResponse> {
        authorize(&self.vault, &req, Scope::Admin).await?;
        let r = req.get_ref();
        let (token, secret) = self
            .vault
            .create_token(&r.tenant, &r.scopes, &r.description)
            .await?;
        tracing::info!(token = %token.id, tenant = %token.tenant_id, "service token created");
        Ok(Response::new(pb::CreateServiceTokenResponse {
            token: Some(convert::service_token(token)),
            secret: secret.expose_secret().to_owned(),
        }))
    }

    async fn list_service_tokens(
        &self,
        req: Request<pb::ListServiceTokensRequest>,
    ) -> Reply<pb::ListServiceTokensResponse> {
        authorize(&self.vault, &req, Scope::Admin).await?;
        let tokens = self.vault.list_tokens(&req.get_ref().tenant).await?;
        Ok(Response::new(pb::ListServiceTokensResponse {
            tokens: tokens.into_iter().map(convert::service_token).collect(),
        }))
    }

    async fn revoke_service_token(
        &self,
        req: Request<pb::RevokeServiceTokenRequest>,
    ) -> Reply<pb::ServiceToken> {
        authorize(&self.vault, &req, Scope::Admin).await?;
        let token = self.vault.revoke_token(&req.get_ref().id).await?;
        tracing::info!(token = %token.id, "service token revoked");
        Ok(Response::new(convert::service_token(token)))
    }
}
