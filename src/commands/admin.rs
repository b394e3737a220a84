//! `credvault tenant …` and `credvault token …`: the AdminService over gRPC.
use clap::Subcommand;
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status, time};
use crate::ClientArgs;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Slug: lowercase letters, digits, '-' and '_'.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a tenant for good: its key is destroyed first, so no copy of its
    /// secrets (WAL, a lagging replica, an export) opens again; then all its rows go.
    Delete {
        /// Tenant id (`ten_…`) or name.
        tenant: String,
        /// Confirms that every secret of the tenant is to be destroyed.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a service token; its secret is printed once.
    Create {
        /// Tenant id (`ten_…`) or name.
        #[arg(long)]
        tenant: String,
        /// Comma-separated, any of: credentials:read, credentials:write,
        /// credentials:reveal, credentials:proxy, providers:read, providers:write,
        /// webhooks:read, webhooks:write, tenant:admin (this tenant's tokens), admin
        /// (vault-wide); `credvault token create --help` lists them all.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Limit the token to credentials of these providers (comma-separated or
        /// repeated); others are NOT_FOUND to it.
        #[arg(long = "provider", value_delimiter = ',')]
        providers: Vec<String>,
        /// Limit the token to credentials with this label KEY=VALUE (repeatable;
        /// every one must match).
        #[arg(long = "label", value_parser = client::parse_label)]
        labels: Vec<(String, String)>,
        /// What the token is for (shown by `token list`).
        #[arg(long, default_value = "")]
        description: String,
        /// When the token stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z);
        /// by default it works until revoked.
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a tenant's tokens (never their secrets).
    List {
        /// Tenant id (`ten_…`) or name.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token by id; it stops working at once.
    Revoke {
        /// The token's id (tok_…).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn tenant_json(t: &pb::Tenant) -> serde_json::Value {
    json!({ "id": t.id, "name": t.name, "created_at": time(t.created_at.as_ref()) })
}

fn token_json(t: &pb::ServiceToken) -> serde_json::Value {
    json!({
        "id": t.id,
        "tenant_id": t.tenant_id,
        "scopes": t.scopes,
        "description": t.description,
        "created_at": time(t.created_at.as_ref()),
        "revoked_at": time(t.revoked_at.as_ref()),
        "expires_at": time(t.expires_at.as_ref()),
        "constraints": t.constraints.as_ref().map(|c| json!({
            "providers": c.providers,
            "labels": c.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
        })),
    })
}

pub async fn tenant(cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create { name, client } => {
            let mut c = client::admin(&client).await?;
            let t = c
                .create_tenant(pb::CreateTenantRequest { name })
                .await
                .map_err(status)?;
            print_json(&tenant_json(t.get_ref()));
        }
        TenantCommand::List { client } => {
            let c = client::admin(&client).await?;
            let tenants = client::all_pages(|page_token| {
                let mut c = c.clone();
                async move {
                    let request = pb::ListTenantsRequest {
                        page_size: client::PAGE_SIZE,
                        page_token,
                    };
                    let r = c.list_tenants(request).await?.into_inner();
                    Ok((r.tenants, r.next_page_token))
                }
            })
            .await?;
            print_json(&json!(tenants.iter().map(tenant_json).collect::<Vec<_>>()));
        }
        TenantCommand::Delete {
            tenant,
            yes,
            client,
        } => {
            anyhow::ensure!(
                yes,
                "deleting tenant {tenant} destroys every secret it holds, for good; \
                 add --yes to go ahead"
            );
            let mut c = client::admin(&client).await?;
            let r = c
                .delete_tenant(pb::DeleteTenantRequest { tenant })
                .await
                .map_err(status)?
                .into_inner();
            print_json(&json!({
                "deleted": r.tenant.as_ref().map(tenant_json),
                "deleted_rows": r.deleted_rows,
            }));
        }
    }
    Ok(())
}

pub async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            tenant,
            scopes,
            providers,
            labels,
            description,
            expires_at,
            client,
        } => {
            let constraints =
                (!providers.is_empty() || !labels.is_empty()).then(|| pb::TokenConstraints {
                    providers,
                    labels: labels.into_iter().collect(),
                });
            let mut c = client::admin(&client).await?;
            let r = c
                .create_service_token(pb::CreateServiceTokenRequest {
                    tenant,
                    scopes,
                    description,
                    expires_at: client::timestamp("expires-at", expires_at)?,
                    constraints,
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut out = r.token.as_ref().map(token_json).unwrap_or_default();
            out["secret"] = json!(r.secret);
            print_json(&out);
        }
        TokenCommand::List { tenant, client } => {
            let c = client::admin(&client).await?;
            let tokens = client::all_pages(|page_token| {
                let (mut c, tenant) = (c.clone(), tenant.clone());
                async move {
                    let request = pb::ListServiceTokensRequest {
                        tenant,
                        page_size: client::PAGE_SIZE,
                        page_token,
                    };
                    let r = c.list_service_tokens(request).await?.into_inner();
                    Ok((r.tokens, r.next_page_token))
                }
            })
            .await?;
            print_json(&json!(tokens.iter().map(token_json).collect::<Vec<_>>()));
        }
        TokenCommand::Revoke { id, client } => {
            let mut c = client::admin(&client).await?;
            let r = c
                .revoke_service_token(pb::RevokeServiceTokenRequest { id })
                .await
                .map_err(status)?;
            print_json(&token_json(r.get_ref()));
        }
    }
    Ok(())
}
