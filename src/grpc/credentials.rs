use tonic::{Request, Response, Status};

use super::{authorize, convert};
use crate::model::Scope;
use crate::proto::v1::{self as pb, credential_service_server::CredentialService};
use crate::service::Vault;

/// `credvault.v1.CredentialService`.
pub struct CredentialApi {
    vault: Vault,
}

impl CredentialApi {
    pub fn new(vault: Vault) -> Self {
        Self { vault }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CredentialService for CredentialApi {
    async fn create_credential(
        &self,
        req: Request<pb::CreateCredentialRequest>,
    ) -> Reply<pb::Credential> {
        let caller = authorize(&self.vault, &req, Scope::CredentialsWrite).await?;
        let input = convert::new_credential(req.into_inner())?;
        let meta = self.vault.create_credential(&caller, input).await?;
        tracing::info!(tenant = %caller.tenant_id, credential = %meta.id, "credential created");
        Ok(Response::new(convert::credential(meta)))
    }

    async fn get_credential(
        &self,
        req: Request<pb::GetCredentialRequest>,
    ) -> Reply<pb::Credential> {
        let caller = authorize(&self.vault, &req, Scope::CredentialsRead).await?;
        let meta = self
            .vault
            .get_credential(&caller, &req.get_ref().id)
            .await?;
        Ok(Response::new(convert::credential(meta)))
    }

    async fn list_credentials(
        &self,
        req: Request<pb::ListCredentialsRequest>,
    ) -> Reply<pb::ListCredentialsResponse> {
        let caller = authorize(&self.vault, &req, Scope::CredentialsRead).await?;
        let page = self
            .vault
            .list_credentials(&caller, convert::list_request(req.into_inner())?)
            .await?;
        Ok(Response::new(pb::ListCredentialsResponse {
            credentials: page
                .credentials
                .into_iter()
                .map(convert::credential)
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_credential(
        &self,
        req: Request<pb::UpdateCredentialRequest>,
    ) -> Reply<pb::Credential> {
        let caller = authorize(&self.vault, &req, Scope::CredentialsWrite).await?;
        let meta = self
            .vault
            .update_credential(&caller, convert::changes(req.into_inner())?)
            .await?;
        tracing::info!(tenant = %caller.tenant_id, credential = %meta.id, version = meta.version, "credential updated");
        Ok(Response::new(convert::credential(meta)))
    }

    async fn delete_credential(
        &self,
        req: Request<pb::DeleteCredentialRequest>,
    ) -> Reply<pb::DeleteCredentialResponse> {
        let caller = authorize(&self.vault, &req, Scope::CredentialsWrite).await?;
        let id = &req.get_ref().id;
        let deleted = self.vault.delete_credential(&caller, id).await?;
        tracing::info!(tenant = %caller.tenant_id, credential = %id, revoked = deleted.revoked, "credential deleted");
        Ok(Response::new(convert::deleted(deleted)))
    }

    async fn reveal_credential(
        &self,
        req: Request<pb::RevealCredentialRequest>,
    ) -> Reply<pb::RevealCredentialResponse> {
        let caller = authorize(&self.vault, &req, Scope::CredentialsReveal).await?;
        let r = req.get_ref();
        let revealed = self
            .vault
            .reveal_credential(&caller, &r.id, &r.request_id)
            .await?;
        tracing::info!(tenant = %caller.tenant_id, credential = %r.id, actor = %caller.token_id, "credential revealed");
        Ok(Response::new(pb::RevealCredentialResponse {
            secret: Some(convert::secret_out(&revealed.secret)),
            credential: Some(convert::credential(revealed.meta)),
        }))
    }

    async fn refresh_credential(
        &self,
        req: Request<pb::RefreshCredentialRequest>,
    ) -> Reply<pb::Credential> {
        let caller = authorize(&self.vault, &req, Scope::CredentialsWrite).await?;
        let meta = self
            .vault
            .refresh_credential(&caller, &req.get_ref().id)
            .await?;
        Ok(Response::new(convert::credential(meta)))
    }
}
