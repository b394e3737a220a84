//! `credvault connect …`: hosted connect links (ConnectService).
use clap::Subcommand;
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status, time, timestamp};
use crate::ClientArgs;

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ConnectCommand {
    /// Mint a link for one end user and print its URL (hand it to that user only).
    Link {
        /// Your end user's id.
        #[arg(long)]
        user: String,
        /// Your end user's email (sent in notifications).
        #[arg(long, default_value = "")]
        email: String,
        /// A provider slug the page offers (repeatable), or `*` for all.
        #[arg(long = "provider")]
        providers: Vec<String>,
        /// Reconnect this credential (cred_…) in place instead of creating one.
        #[arg(long)]
        reconnect: Option<String>,
        /// When the link stops working, RFC 3339 (default: in 30 minutes).
        #[arg(long)]
        expires_at: Option<String>,
        /// Where the browser goes after success (on the tenant's allow-list).
        #[arg(long, default_value = "")]
        success_url: String,
        /// Where the browser goes after a failure.
        #[arg(long, default_value = "")]
        failure_url: String,
        /// Gets a signed connect.succeeded / connect.failed POST.
        #[arg(long, default_value = "")]
        notify_url: String,
        /// Your own opaque name for this connection, echoed back everywhere.
        #[arg(long, default_value = "")]
        name: String,
        /// Name of the credential the link creates.
        #[arg(long, default_value = "")]
        credential_name: String,
        /// The user first signs in through this connector (ac_…) as --user.
        #[arg(long, default_value = "")]
        sign_in_connector: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List links, newest first (filter with --status, --user).
    List {
        /// pending, completed, expired or revoked.
        #[arg(long)]
        status: Option<String>,
        /// Only this end user's links.
        #[arg(long, default_value = "")]
        user: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one link.
    Get {
        /// The link's id (cl_…).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a link: it stops working at once.
    Revoke {
        /// The link's id (cl_…).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn link_json(l: &pb::ConnectLink) -> serde_json::Value {
    let name = |s: &str, prefix: &str| s.trim_start_matches(prefix).to_ascii_lowercase();
    json!({
        "id": l.id,
        "type": name(l.r#type().as_str_name(), "CONNECT_LINK_TYPE_"),
        "status": name(l.status().as_str_name(), "CONNECT_LINK_STATUS_"),
        "user_id": l.user_id,
        "providers": l.providers,
        "name": l.name,
        "credential_id": l.credential_id,
        "failed_attempts": l.failed_attempts,
        "expires_at": time(l.expires_at.as_ref()),
        "created_at": time(l.created_at.as_ref()),
        "revoked_reason": l.revoked_reason,
        "require_sign_in_connector": l.require_sign_in_connector,
        "signed_in": l.signed_in,
    })
}

fn status_filter(name: Option<String>) -> anyhow::Result<i32> {
    let Some(name) = name else { return Ok(0) };
    pb::ConnectLinkStatus::from_str_name(&format!(
        "CONNECT_LINK_STATUS_{}",
        name.to_ascii_uppercase()
    ))
    .map(i32::from)
    .ok_or_else(|| anyhow::anyhow!("--status {name}: use pending, completed, expired or revoked"))
}

pub async fn run(cmd: ConnectCommand) -> anyhow::Result<()> {
    match cmd {
        ConnectCommand::Link {
            user,
            email,
            providers,
            reconnect,
            expires_at,
            success_url,
            failure_url,
            notify_url,
            name,
            credential_name,
            sign_in_connector,
            client,
        } => {
            let mut c = client::connect_links(&client).await?;
            let link_type = if reconnect.is_some() {
                pb::ConnectLinkType::Reconnect
            } else {
                pb::ConnectLinkType::Create
            };
            let request = pb::CreateConnectLinkRequest {
                r#type: link_type.into(),
                user_id: user,
                user_email: email,
                providers,
                reconnect_credential_id: reconnect.unwrap_or_default(),
                expires_at: timestamp("expires-at", expires_at)?,
                success_redirect_url: success_url,
                failure_redirect_url: failure_url,
                notify_url,
                name,
                credential_name,
                labels: Default::default(),
                require_sign_in_connector: sign_in_connector,
            };
            let r = c
                .create_connect_link(request)
                .await
                .map_err(status)?
                .into_inner();
            let mut out = r.link.as_ref().map(link_json).unwrap_or_default();
            out["url"] = json!(r.url);
            if !r.signing_secret.is_empty() {
                out["signing_secret"] = json!(r.signing_secret);
            }
            print_json(&out);
        }
        ConnectCommand::List {
            status: filter,
            user,
            client,
        } => {
            let mut c = client::connect_links(&client).await?;
            let request = pb::ListConnectLinksRequest {
                status: status_filter(filter)?,
                user_id: user,
                ..Default::default()
            };
            let r = c.list_connect_links(request).await.map_err(status)?;
            print_json(&json!(
                r.get_ref().links.iter().map(link_json).collect::<Vec<_>>()
            ));
        }
        ConnectCommand::Get { id, client } => {
            let mut c = client::connect_links(&client).await?;
            let r = c
                .get_connect_link(pb::GetConnectLinkRequest { id })
                .await
                .map_err(status)?;
            print_json(&link_json(r.get_ref()));
        }
        ConnectCommand::Revoke { id, client } => {
            let mut c = client::connect_links(&client).await?;
            let r = c
                .revoke_connect_link(pb::RevokeConnectLinkRequest { id })
                .await
                .map_err(status)?;
            print_json(&link_json(r.get_ref()));
        }
    }
    Ok(())
}
