//! `credvault audit …`: the audit log over gRPC (scope `audit:read`, or `admin` for
//! any tenant). What the records hold and how the chain works: docs/audit.md.
use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, PAGE_SIZE, print_json, status, time, timestamp};
use crate::ClientArgs;

/// Which records: the filters `list` and `export` share.
#[derive(Args)]
pub struct RecordFilter {
    /// Another tenant's log (admin only); default: the token's own tenant.
    #[arg(long, default_value = "")]
    tenant: String,
    /// Only records about this credential (or other resource id).
    #[arg(long, default_value = "")]
    subject: String,
    /// Only records about this end user.
    #[arg(long, default_value = "")]
    user: String,
    /// Only records of this caller (a token id, `system` or `operator`).
    #[arg(long, default_value = "")]
    actor: String,
    /// Only this action, e.g. `reveal` or `token.create`.
    #[arg(long, default_value = "")]
    action: String,
    /// Written at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Written before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Records in the order they were written (one page; --all for every page).
    List {
        #[command(flatten)]
        filter: RecordFilter,
        /// Records per page.
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// Every page, not only the first.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Walks the hash chain and its signed checkpoints; exits 1 if anything was
    /// changed, deleted, inserted, reordered, cut off or rewritten.
    Verify {
        /// Another tenant's log (admin only); default: the token's own tenant.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Every tenant's chain and the operator's (admin only).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every matching record as JSON lines on stdout, for a SIEM.
    Export {
        #[command(flatten)]
        filter: RecordFilter,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn request(
    f: &RecordFilter,
    page_size: i32,
    page_token: String,
) -> anyhow::Result<pb::ListAuditRecordsRequest> {
    Ok(pb::ListAuditRecordsRequest {
        tenant_id: f.tenant.clone(),
        credential_id: f.subject.clone(),
        user_id: f.user.clone(),
        actor: f.actor.clone(),
        action: f.action.clone(),
        since: timestamp("since", f.since.clone())?,
        until: timestamp("until", f.until.clone())?,
        page_size,
        page_token,
    })
}

fn record_json(r: &pb::AuditRecord) -> serde_json::Value {
    json!({
        "tenant_id": r.tenant_id,
        "seq": r.seq,
        "at": time(r.at.as_ref()),
        "actor": r.actor,
        "action": r.action,
        "subject": r.subject,
        "user_id": r.user_id,
        "request_id": r.request_id,
        "source": r.source,
        "outcome": r.outcome,
        "detail": r.detail,
        "hash": r.hash,
    })
}

fn chain_json(c: &pb::ChainVerification) -> serde_json::Value {
    json!({
        "tenant_id": c.tenant_id,
        "intact": c.intact,
        "records": c.records,
        "first_seq": c.first_seq,
        "last_seq": c.last_seq,
        "checkpoints": c.checkpoints,
        "unverifiable_checkpoints": c.unverifiable_checkpoints,
        "unchained": c.unchained,
        "problem": c.problem.as_ref().map(|p| json!({
            "kind": p.kind, "seq": p.seq, "detail": p.detail,
        })),
    })
}

/// Pages through the records `filter` names, handing each page to `out`; stops
/// after the first page unless `all`.
async fn pages(
    client: &ClientArgs,
    filter: &RecordFilter,
    page_size: i32,
    all: bool,
    mut out: impl FnMut(&[pb::AuditRecord]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut c = client::audit(client).await?;
    let mut token = String::new();
    loop {
        let r = c
            .list_audit_records(request(filter, page_size, token)?)
            .await
            .map_err(status)?
            .into_inner();
        out(&r.records)?;
        if !all || r.next_page_token.is_empty() {
            return Ok(());
        }
        token = r.next_page_token;
    }
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::List {
            filter,
            limit,
            all,
            client,
        } => {
            let mut records = Vec::new();
            pages(&client, &filter, limit, all, |page| {
                records.extend(page.iter().map(record_json));
                Ok(())
            })
            .await?;
            print_json(&json!({ "records": records }));
        }
        AuditCommand::Export { filter, client } => {
            let stdout = std::io::stdout();
            pages(&client, &filter, PAGE_SIZE, true, |page| {
                let mut out = stdout.lock();
                for r in page {
                    writeln!(out, "{}", record_json(r))?;
                }
                Ok(())
            })
            .await?;
        }
        AuditCommand::Verify {
            tenant,
            all,
            client,
        } => {
            let mut c = client::audit(&client).await?;
            let r = c
                .verify_audit_log(pb::VerifyAuditLogRequest {
                    tenant_id: tenant,
                    all,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_json(&json!({ "chains": r.chains.iter().map(chain_json).collect::<Vec<_>>() }));
            if let Some(bad) = r.chains.iter().find(|c| !c.intact) {
                let p = bad.problem.clone().unwrap_or_default();
                bail!(
                    "the audit chain of tenant {:?} is broken: {}",
                    bad.tenant_id,
                    p.detail
                );
            }
        }
    }
    Ok(())
}
