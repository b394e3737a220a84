//! `credvault keys …`: master key versions over gRPC (admin scope). The procedure
//! (add → activate → rewrap → retire) is in docs/operations.md.
use clap::Subcommand;
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status, time};
use crate::ClientArgs;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Per key version and column: how many values it seals; the seal counters; the
    /// live replicas and the versions each holds.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make VERSION the cluster's active key version (refused until every live
    /// replica holds it).
    Activate {
        version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-seal every value not in the current format under the active version (one
    /// pass now; the background job repeats it).
    Rewrap {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Mark VERSION retired (refused while it is active or seals anything); then
    /// remove it from every replica's keyring.
    Retire {
        version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn status_json(s: &pb::KeyStatus) -> serde_json::Value {
    json!({
        "active_version": s.active_version,
        "versions": s.versions.iter().map(|v| json!({
            "version": v.version,
            "state": v.state,
            "values": v.values,
            "seals": v.seals,
            "legacy_seals": v.legacy_seals,
        })).collect::<Vec<_>>(),
        "sealed": s.sealed.iter().map(|c| json!({
            "column": c.column,
            "format": c.format,
            "key_version": c.key_version,
            "values": c.values,
        })).collect::<Vec<_>>(),
        "replicas": s.replicas.iter().map(|r| json!({
            "id": r.id,
            "key_versions": r.key_versions,
            "seen_at": time(r.seen_at.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

pub async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Status { client } => {
            let mut c = client::admin(&client).await?;
            let r = c
                .get_key_status(pb::GetKeyStatusRequest {})
                .await
                .map_err(status)?;
            print_json(&status_json(r.get_ref()));
        }
        KeysCommand::Activate { version, client } => {
            let mut c = client::admin(&client).await?;
            let r = c
                .activate_key(pb::ActivateKeyRequest { version })
                .await
                .map_err(status)?;
            print_json(&status_json(r.get_ref()));
        }
        KeysCommand::Rewrap { client } => {
            let mut c = client::admin(&client).await?;
            let r = c
                .rewrap_secrets(pb::RewrapSecretsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            print_json(&json!({
                "rewrapped": r.rewrapped,
                "raced": r.raced,
                "failed": r.failed,
                "remaining": r.remaining,
                "running_elsewhere": r.running_elsewhere,
            }));
        }
        KeysCommand::Retire { version, client } => {
            let mut c = client::admin(&client).await?;
            let r = c
                .retire_key(pb::RetireKeyRequest { version })
                .await
                .map_err(status)?;
            print_json(&status_json(r.get_ref()));
        }
    }
    Ok(())
}
