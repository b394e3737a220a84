//! The key RPCs of `credvault.v1.AdminService` (scope `admin`): status, activation,
//! retirement and rewrap of master key versions.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{authorize, convert};
use crate::model::Scope;
use crate::proto::v1 as pb;
use crate::service::Vault;
use crate::service::keys::lifecycle::{KeyLifecycle, KeyStatus};
use crate::service::keys::rewrap::Rewrap;

type Reply<T> = Result<Response<T>, Status>;

/// What the key RPCs are served from.
#[derive(Clone)]
pub struct KeysApi {
    vault: Vault,
    keys: Arc<KeyLifecycle>,
    rewrap: Arc<Rewrap>,
}

impl KeysApi {
    pub fn new(vault: Vault, keys: Arc<KeyLifecycle>, rewrap: Arc<Rewrap>) -> Self {
        Self {
            vault,
            keys,
            rewrap,
        }
    }

    pub async fn status(&self, req: Request<pb::GetKeyStatusRequest>) -> Reply<pb::KeyStatus> {
        authorize(&self.vault, &req, Scope::Admin).await?;
        Ok(Response::new(status(self.keys.status().await?)))
    }

    pub async fn activate(&self, req: Request<pb::ActivateKeyRequest>) -> Reply<pb::KeyStatus> {
        let caller = authorize(&self.vault, &req, Scope::Admin).await?;
        let version = version(req.get_ref().version)?;
        self.keys.activate(&caller, version).await?;
        Ok(Response::new(status(self.keys.status().await?)))
    }

    pub async fn retire(&self, req: Request<pb::RetireKeyRequest>) -> Reply<pb::KeyStatus> {
        let caller = authorize(&self.vault, &req, Scope::Admin).await?;
        let version = version(req.get_ref().version)?;
        self.keys.retire(&caller, version).await?;
        Ok(Response::new(status(self.keys.status().await?)))
    }

    pub async fn rewrap(
        &self,
        req: Request<pb::RewrapSecretsRequest>,
    ) -> Reply<pb::RewrapSecretsResponse> {
        let caller = authorize(&self.vault, &req, Scope::Admin).await?;
        let pass = self.rewrap.pass().await?;
        self.keys.record_rewrap(&caller).await?;
        if let Some(p) = pass {
            tracing::info!(
                rewrapped = p.rewrapped,
                raced = p.raced,
                failed = p.failed,
                "rewrap pass"
            );
        }
        let p = pass.unwrap_or_default();
        Ok(Response::new(pb::RewrapSecretsResponse {
            rewrapped: p.rewrapped,
            raced: p.raced,
            failed: p.failed,
            remaining: self.keys.stale().await?,
            running_elsewhere: pass.is_none(),
        }))
    }
}

fn version(v: u32) -> Result<u32, Status> {
    if v == 0 {
        return Err(Status::invalid_argument(
            "version: must be a key version from 1 to 4294967295",
        ));
    }
    Ok(v)
}

fn status(s: KeyStatus) -> pb::KeyStatus {
    let versions = s
        .versions
        .iter()
        .map(|v| pb::KeyVersionStatus {
            version: v.version,
            state: v.state.clone(),
            seals: v.seals,
            legacy_seals: v.legacy_seals,
            values: s.values_under(v.version),
        })
        .collect();
    pb::KeyStatus {
        active_version: s.active,
        versions,
        sealed: s
            .sealed
            .iter()
            .map(|c| pb::SealedValues {
                column: c.column.name().to_owned(),
                format: u32::from(c.format),
                key_version: c.key_version,
                values: c.values,
            })
            .collect(),
        replicas: s
            .replicas
            .into_iter()
            .map(|r| pb::Replica {
                id: r.id,
                key_versions: r.versions,
                seen_at: Some(convert::timestamp(r.seen_at)),
            })
            .collect(),
    }
}
