//! `credvault cred …`: the CredentialService over gRPC. A secret flag given as `-`
//! is read from standard input, which keeps it out of shell history and `ps`.
use std::collections::HashMap;
use std::io::BufRead;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status, time, timestamp};
use crate::ClientArgs;

/// The secret, as flags of exactly one kind.
#[derive(clap::Args, Debug, Default)]
pub struct SecretArgs {
    /// An API key (`-` reads it from stdin).
    #[arg(long)]
    api_key: Option<String>,
    /// Basic auth username.
    #[arg(long, requires = "password")]
    username: Option<String>,
    /// Basic auth password (`-` reads it from stdin).
    #[arg(long, requires = "username")]
    password: Option<String>,
    /// OAuth2 access token (`-` reads it from stdin).
    #[arg(long)]
    access_token: Option<String>,
    /// OAuth2 refresh token (`-` reads it from stdin).
    #[arg(long, requires = "access_token")]
    refresh_token: Option<String>,
    /// OAuth2 token type (default Bearer).
    #[arg(long, requires = "access_token")]
    token_type: Option<String>,
    /// OAuth2 granted scope (repeatable).
    #[arg(long = "scope", requires = "access_token")]
    scopes: Vec<String>,
    /// OAuth2 access-token expiry, RFC 3339.
    #[arg(long, requires = "access_token")]
    token_expires_at: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The end user's id in your product (for list: only theirs).
    #[arg(long)]
    user_id: String,
    /// The end user's email (used in notifications).
    #[arg(long, default_value = "")]
    user_email: String,
    /// Human label, e.g. "Acme Salesforce".
    #[arg(long)]
    name: String,
    /// Provider slug, e.g. salesforce.
    #[arg(long)]
    provider: String,
    #[command(flatten)]
    secret: SecretArgs,
    /// Non-secret label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = client::parse_label)]
    labels: Vec<(String, String)>,
    /// When the credential stops being valid, RFC 3339.
    #[arg(long)]
    expires_at: Option<String>,
    /// Idempotency key: retrying with the same one returns the same credential.
    #[arg(long, default_value = "")]
    request_id: String,
}

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// The credential's id (cred_…).
    id: String,
    /// A new human label, e.g. "Acme Salesforce".
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    secret: SecretArgs,
    /// Replace all labels with these KEY=VALUE pairs (repeatable).
    #[arg(long = "label", value_parser = client::parse_label)]
    labels: Vec<(String, String)>,
    /// Remove all labels.
    #[arg(long, conflicts_with = "labels")]
    clear_labels: bool,
    /// A new expiry for the credential, RFC 3339.
    #[arg(long)]
    expires_at: Option<String>,
    /// Remove the credential's expiry.
    #[arg(long, conflicts_with = "expires_at")]
    clear_expires_at: bool,
    /// Fail (ABORTED) unless the credential is still at this version.
    #[arg(long)]
    expected_version: Option<i64>,
}

#[derive(Subcommand)]
pub enum CredCommand {
    /// Store a credential.
    Create {
        #[command(flatten)]
        args: Box<CreateArgs>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a credential's metadata.
    Get {
        /// The credential's id (cred_…).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List credentials' metadata, a page at a time.
    List {
        /// The end user's id in your product (for list: only theirs).
        #[arg(long, default_value = "")]
        user_id: String,
        /// Only credentials of this provider slug.
        #[arg(long, default_value = "")]
        provider: String,
        /// active, expired, needs_reauth or revoked.
        #[arg(long)]
        status: Option<String>,
        /// Items per page (default 50, at most 1000).
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        /// The `next_page_token` of the previous page.
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the decrypted secret (audited; needs credentials:reveal).
    Reveal {
        /// The credential's id (cred_…).
        id: String,
        /// Your request id, recorded with the reveal in the audit log.
        #[arg(long, default_value = "")]
        request_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change the secret, name, labels or expiry.
    Update {
        #[command(flatten)]
        args: Box<UpdateArgs>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a credential and its ciphertext (OAuth: also revoke it at the provider).
    Delete {
        /// The credential's id (cred_…).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start an OAuth connect flow; prints the URL to send the user's browser to.
    Connect {
        #[command(flatten)]
        args: Box<super::provider::ConnectArgs>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Refresh an OAuth credential now.
    Refresh {
        /// The credential's id (cred_…).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `-` means: read one line from stdin.
pub fn from_stdin_if_dash(value: String) -> anyhow::Result<String> {
    if value != "-" {
        return Ok(value);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

impl SecretArgs {
    fn into_secret(self) -> anyhow::Result<Option<pb::Secret>> {
        use pb::secret::Kind;
        let kinds = [
            self.api_key.is_some(),
            self.username.is_some(),
            self.access_token.is_some(),
        ];
        let kind = match kinds {
            [false, false, false] => return Ok(None),
            [true, false, false] => Kind::ApiKey(pb::ApiKeySecret {
                key: from_stdin_if_dash(self.api_key.unwrap_or_default())?,
            }),
            [false, true, false] => Kind::Basic(pb::BasicSecret {
                username: self.username.unwrap_or_default(),
                password: from_stdin_if_dash(self.password.unwrap_or_default())?,
            }),
            [false, false, true] => Kind::Oauth2(pb::OAuth2Secret {
                access_token: from_stdin_if_dash(self.access_token.unwrap_or_default())?,
                refresh_token: from_stdin_if_dash(self.refresh_token.unwrap_or_default())?,
                token_type: self.token_type.unwrap_or_default(),
                scopes: self.scopes,
                expires_at: timestamp("token-expires-at", self.token_expires_at)?,
            }),
            _ => bail!(
                "give one kind of secret: --api-key, --username/--password, or --access-token"
            ),
        };
        Ok(Some(pb::Secret { kind: Some(kind) }))
    }
}

fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map(|n| n.trim_start_matches(prefix).to_ascii_lowercase())
        .unwrap_or_else(|| "unknown".into())
}

fn credential_json(c: &pb::Credential) -> serde_json::Value {
    let kind = pb::CredentialKind::try_from(c.kind)
        .ok()
        .map(|k| k.as_str_name());
    let status = pb::CredentialStatus::try_from(c.status)
        .ok()
        .map(|s| s.as_str_name());
    json!({
        "id": c.id,
        "user_id": c.user_id,
        "user_email": c.user_email,
        "name": c.name,
        "provider": c.provider,
        "kind": enum_name(kind, "CREDENTIAL_KIND_"),
        "status": enum_name(status, "CREDENTIAL_STATUS_"),
        "labels": c.labels,
        "scopes": c.scopes,
        "expires_at": time(c.expires_at.as_ref()),
        "token_expires_at": time(c.token_expires_at.as_ref()),
        "created_at": time(c.created_at.as_ref()),
        "updated_at": time(c.updated_at.as_ref()),
        "version": c.version,
    })
}

fn secret_json(s: &pb::Secret) -> serde_json::Value {
    match &s.kind {
        Some(pb::secret::Kind::ApiKey(k)) => json!({ "api_key": k.key }),
        Some(pb::secret::Kind::Basic(b)) => {
            json!({ "username": b.username, "password": b.password })
        }
        Some(pb::secret::Kind::Oauth2(o)) => json!({
            "access_token": o.access_token,
            "refresh_token": o.refresh_token,
            "token_type": o.token_type,
            "scopes": o.scopes,
            "expires_at": time(o.expires_at.as_ref()),
        }),
        None => serde_json::Value::Null,
    }
}

fn status_filter(status: Option<String>) -> anyhow::Result<i32> {
    let Some(s) = status else { return Ok(0) };
    let name = format!("CREDENTIAL_STATUS_{}", s.to_ascii_uppercase());
    pb::CredentialStatus::from_str_name(&name)
        .map(i32::from)
        .with_context(|| format!("--status {s}: use active, expired, needs_reauth or revoked"))
}

pub async fn run(cmd: CredCommand) -> anyhow::Result<()> {
    match cmd {
        CredCommand::Create { args, client } => {
            let args = *args;
            let request = pb::CreateCredentialRequest {
                user_id: args.user_id,
                user_email: args.user_email,
                name: args.name,
                provider: args.provider,
                secret: args.secret.into_secret()?,
                labels: args.labels.into_iter().collect::<HashMap<_, _>>(),
                expires_at: timestamp("expires-at", args.expires_at)?,
                request_id: args.request_id,
            };
            let mut c = client::credentials(&client).await?;
            let r = c.create_credential(request).await.map_err(status)?;
            print_json(&credential_json(r.get_ref()));
        }
        CredCommand::Get { id, client } => {
            let mut c = client::credentials(&client).await?;
            let r = c
                .get_credential(pb::GetCredentialRequest { id })
                .await
                .map_err(status)?;
            print_json(&credential_json(r.get_ref()));
        }
        CredCommand::List {
            user_id,
            provider,
            status: status_name,
            page_size,
            page_token,
            client,
        } => {
            let request = pb::ListCredentialsRequest {
                user_id,
                provider,
                status: status_filter(status_name)?,
                page_size,
                page_token,
            };
            let mut c = client::credentials(&client).await?;
            let r = c
                .list_credentials(request)
                .await
                .map_err(status)?
                .into_inner();
            print_json(&json!({
                "credentials": r.credentials.iter().map(credential_json).collect::<Vec<_>>(),
                "next_page_token": r.next_page_token,
            }));
        }
        CredCommand::Reveal {
            id,
            request_id,
            client,
        } => {
            let mut c = client::credentials(&client).await?;
            let r = c
                .reveal_credential(pb::RevealCredentialRequest { id, request_id })
                .await
                .map_err(status)?
                .into_inner();
            print_json(&json!({
                "credential": r.credential.as_ref().map(credential_json),
                "secret": r.secret.as_ref().map(secret_json),
            }));
        }
        CredCommand::Update { args, client } => {
            let args = *args;
            let labels = if args.clear_labels || !args.labels.is_empty() {
                Some(pb::Labels {
                    values: args.labels.into_iter().collect(),
                })
            } else {
                None
            };
            let request = pb::UpdateCredentialRequest {
                id: args.id,
                name: args.name,
                secret: args.secret.into_secret()?,
                labels,
                expires_at: timestamp("expires-at", args.expires_at)?,
                clear_expires_at: args.clear_expires_at,
                expected_version: args.expected_version,
            };
            let mut c = client::credentials(&client).await?;
            let r = c.update_credential(request).await.map_err(status)?;
            print_json(&credential_json(r.get_ref()));
        }
        CredCommand::Delete { id, client } => {
            let mut c = client::credentials(&client).await?;
            let r = c
                .delete_credential(pb::DeleteCredentialRequest { id: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            let mut out = json!({ "deleted": id });
            if let Some(rev) = r.revocation {
                out["revocation"] = json!({ "revoked": rev.revoked, "error": rev.error });
            }
            print_json(&out);
        }
        CredCommand::Connect { args, client } => super::provider::connect(*args, client).await?,
        CredCommand::Refresh { id, client } => {
            let credential = super::provider::refresh(id, client).await?;
            print_json(&credential_json(&credential));
        }
    }
    Ok(())
}
