use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};

use super::keys::KeysApi;
use super::{authorize, authorize_any, convert};
use crate::model::Scope;
use crate::proto::v1::{self as pb, admin_service_server::AdminService};
use crate::service::{NewToken, Vault};

/// Token calls accept a vault operator or a tenant's own administrator.
const TOKEN_ADMINS: &[Scope] = &[Scope::Admin, Scope::TenantAdmin];

/// `credvault.v1.AdminService`: tenants need `admin`; tokens `admin` or
/// `tenant:admin` (its own tenant); keys `admin`.
pub struct AdminApi {
    vault: Vault,
    keys: KeysApi,
}

impl AdminApi {
    pub fn new(vault: Vault, keys: KeysApi) -> Self {
        Self { vault, keys }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_tenant(&self, req: Request<pb::CreateTenantRequest>) -> Reply<pb::Tenant> {
        let caller = authorize(&self.vault, &req, Scope::Admin).await?;
        let tenant = self
            .vault
            .create_tenant(&caller, &req.get_ref().name)
            .await?;
        tracing::info!(tenant = %tenant.id, name = %tenant.name, "tenant created");
        Ok(Response::new(convert::tenant(tenant)))
    }

    async fn delete_tenant(
        &self,
        req: Request<pb::DeleteTenantRequest>,
    ) -> Reply<pb::DeleteTenantResponse> {
        let caller = authorize(&self.vault, &req, Scope::Admin).await?;
        let (tenant, deleted_rows) = self
            .vault
            .delete_tenant(&caller, &req.get_ref().tenant)
            .await?;
        Ok(Response::new(pb::DeleteTenantResponse {
            tenant: Some(convert::tenant(tenant)),
            deleted_rows,
        }))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Reply<pb::ListTenantsResponse> {
        authorize(&self.vault, &req, Scope::Admin).await?;
        let r = req.get_ref();
        let page = self.vault.list_tenants(r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: page.items.into_iter().map(convert::tenant).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_service_token(
        &self,
        req: Request<pb::CreateServiceTokenRequest>,
    ) -> Reply<pb::CreateServiceTokenResponse> {
        let caller = authorize_any(&self.vault, &req, TOKEN_ADMINS).await?;
        let r = req.into_inner();
        let new = NewToken {
            tenant: r.tenant,
            scopes: r.scopes,
            description: r.description,
            expires_at: convert::millis("expires_at", r.expires_at)?,
            constraints: r.constraints.map(convert::constraints).unwrap_or_default(),
        };
        let (token, secret) = self.vault.create_token(&caller, new).await?;
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
        let caller = authorize_any(&self.vault, &req, TOKEN_ADMINS).await?;
        let r = req.get_ref();
        let page = self
            .vault
            .list_tokens(&caller, &r.tenant, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListServiceTokensResponse {
            tokens: page.items.into_iter().map(convert::service_token).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn revoke_service_token(
        &self,
        req: Request<pb::RevokeServiceTokenRequest>,
    ) -> Reply<pb::ServiceToken> {
        let caller = authorize_any(&self.vault, &req, TOKEN_ADMINS).await?;
        let token = self.vault.revoke_token(&caller, &req.get_ref().id).await?;
        tracing::info!(token = %token.id, "service token revoked");
        Ok(Response::new(convert::service_token(token)))
    }

    async fn get_key_status(&self, req: Request<pb::GetKeyStatusRequest>) -> Reply<pb::KeyStatus> {
        self.keys.status(req).await
    }

    async fn activate_key(&self, req: Request<pb::ActivateKeyRequest>) -> Reply<pb::KeyStatus> {
        self.keys.activate(req).await
    }

    async fn retire_key(&self, req: Request<pb::RetireKeyRequest>) -> Reply<pb::KeyStatus> {
        self.keys.retire(req).await
    }

    async fn rewrap_secrets(
        &self,
        req: Request<pb::RewrapSecretsRequest>,
    ) -> Reply<pb::RewrapSecretsResponse> {
        self.keys.rewrap(req).await
    }
}
