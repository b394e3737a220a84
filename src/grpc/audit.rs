//! `credvault.v1.AuditService`: the audit log, listed and verified.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::authorize_any;
use super::convert::{millis, timestamp};
use crate::model::{AuditRecord, Scope};
use crate::proto::v1::{self as pb, audit_service_server::AuditService};
use crate::service::Vault;
use crate::service::audit::{AuditLog, Verification};
use crate::store::AuditFilter;

type Reply<T> = Result<Response<T>, Status>;

/// Who may call: a tenant's `audit:read` token, or `admin`.
const SCOPES: &[Scope] = &[Scope::AuditRead, Scope::Admin];

pub struct AuditApi {
    vault: Vault,
    audit: Arc<AuditLog>,
}

impl AuditApi {
    pub fn new(vault: Vault, audit: Arc<AuditLog>) -> Self {
        Self { vault, audit }
    }
}

/// An empty filter field matches everything.
fn set(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn record_out(r: AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        tenant_id: r.tenant_id,
        seq: r.seq.unwrap_or_default(),
        at: Some(timestamp(r.at)),
        actor: r.actor,
        action: r.action,
        subject: r.credential_id,
        user_id: r.user_id,
        request_id: r.request_id,
        source: r.source,
        outcome: r.outcome,
        detail: r.detail,
        hash: r.hash.as_deref().map(crate::ids::hex).unwrap_or_default(),
    }
}

fn chain_out(v: Verification) -> pb::ChainVerification {
    pb::ChainVerification {
        tenant_id: v.tenant_id,
        records: v.records,
        first_seq: v.first_seq,
        last_seq: v.last_seq,
        checkpoints: v.checkpoints,
        unverifiable_checkpoints: v.unverifiable_checkpoints,
        unchained: v.unchained,
        intact: v.problem.is_none(),
        problem: v.problem.map(|p| pb::AuditProblem {
            kind: p.kind.as_str().into(),
            seq: p.seq,
            detail: p.detail,
        }),
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_records(
        &self,
        req: Request<pb::ListAuditRecordsRequest>,
    ) -> Reply<pb::ListAuditRecordsResponse> {
        let caller = authorize_any(&self.vault, &req, SCOPES).await?;
        let r = req.into_inner();
        let filter = AuditFilter {
            tenant_id: r.tenant_id,
            credential_id: set(r.credential_id),
            user_id: set(r.user_id),
            actor: set(r.actor),
            action: set(r.action),
            since: millis("since", r.since)?,
            until: millis("until", r.until)?,
        };
        let page = self
            .audit
            .list(&caller, filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: page.items.into_iter().map(record_out).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn verify_audit_log(
        &self,
        req: Request<pb::VerifyAuditLogRequest>,
    ) -> Reply<pb::VerifyAuditLogResponse> {
        let caller = authorize_any(&self.vault, &req, SCOPES).await?;
        let r = req.get_ref();
        let chains = self.audit.verify(&caller, &r.tenant_id, r.all).await?;
        Ok(Response::new(pb::VerifyAuditLogResponse {
            chains: chains.into_iter().map(chain_out).collect(),
        }))
    }
}
