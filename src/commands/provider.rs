//! `credvault provider …` and `credvault cred connect|refresh`: the OAuthService.
use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status, time};
use super::cred::from_stdin_if_dash;
use crate::ClientArgs;

#[derive(Subcommand)]
pub enum ProviderCommand {
    /// Register an OAuth provider for this tenant.
    Create {
        /// Slug matched against credentials' provider, e.g. salesforce.
        slug: String,
        /// A catalog entry: google, microsoft, github, slack, salesforce, hubspot.
        #[arg(long, default_value = "")]
        template: String,
        /// Your app's OAuth client id at the provider.
        #[arg(long)]
        client_id: String,
        /// The client secret (`-` reads it from stdin).
        #[arg(long, default_value = "")]
        client_secret: String,
        /// The provider's authorization endpoint (overrides the template's).
        #[arg(long, default_value = "")]
        authorization_url: String,
        /// The provider's token endpoint (overrides the template's).
        #[arg(long, default_value = "")]
        token_url: String,
        /// The provider's RFC 7009 revocation endpoint (overrides the template's).
        #[arg(long, default_value = "")]
        revocation_url: String,
        /// Default scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Where the connect flow may send the browser afterwards (repeatable).
        #[arg(long = "allowed-redirect-url", required = true)]
        allowed_redirect_urls: Vec<String>,
        /// Refresh this many seconds before expiry (default 600).
        #[arg(long, default_value_t = 0)]
        refresh_margin_seconds: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a provider (never its client secret).
    Get {
        /// The provider's slug, e.g. hubspot.
        slug: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List this tenant's providers.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace a provider's client secret (clears a recorded error).
    SetSecret {
        /// The provider's slug, e.g. hubspot.
        slug: String,
        /// The new secret (`-` reads it from stdin).
        secret: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set where `credvault proxy` sends this provider's credentials (its API), or
    /// remove that with --clear. Needs credentials:reveal besides providers:write.
    SetApi {
        /// The provider's slug, e.g. stripe.
        slug: String,
        /// The API's base URL, e.g. https://api.stripe.com.
        #[arg(long, required_unless_present = "clear")]
        base_url: Option<String>,
        /// Calls must start with one of these paths (repeatable); none: any path.
        #[arg(long = "path-prefix")]
        path_prefixes: Vec<String>,
        /// API keys: the header that carries the key (default Authorization).
        #[arg(long, default_value = "")]
        key_header: String,
        /// API keys: put before the key (default "Bearer " in Authorization).
        #[arg(long)]
        key_prefix: Option<String>,
        /// API keys: send the key as this query parameter instead.
        #[arg(long, default_value = "")]
        key_query_param: String,
        /// Remove the API settings.
        #[arg(long, conflicts_with = "base_url")]
        clear: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a provider.
    Delete {
        /// The provider's slug, e.g. hubspot.
        slug: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The built-in catalog.
    Templates {
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn provider_json(p: &pb::Provider) -> serde_json::Value {
    json!({
        "slug": p.slug,
        "template": p.template,
        "client_id": p.client_id,
        "has_client_secret": p.has_client_secret,
        "authorization_url": p.authorization_url,
        "token_url": p.token_url,
        "revocation_url": p.revocation_url,
        "default_scopes": p.default_scopes,
        "pkce": p.pkce,
        "refresh_margin_seconds": p.refresh_margin_seconds,
        "allowed_redirect_urls": p.allowed_redirect_urls,
        "api": p.api.as_ref().map(|a| json!({
            "base_url": a.base_url,
            "path_prefixes": a.path_prefixes,
            "key_header": a.key_header,
            "key_prefix": a.key_prefix,
            "key_query_param": a.key_query_param,
        })),
        "last_error": p.last_error,
        "last_error_at": time(p.last_error_at.as_ref()),
        "version": p.version,
    })
}

pub async fn run(cmd: ProviderCommand) -> anyhow::Result<()> {
    match cmd {
        ProviderCommand::Create {
            slug,
            template,
            client_id,
            client_secret,
            authorization_url,
            token_url,
            revocation_url,
            scopes,
            allowed_redirect_urls,
            refresh_margin_seconds,
            client,
        } => {
            let request = pb::CreateProviderRequest {
                slug,
                template,
                client_id,
                client_secret: from_stdin_if_dash(client_secret)?,
                authorization_url,
                token_url,
                revocation_url,
                default_scopes: scopes,
                allowed_redirect_urls,
                refresh_margin_seconds,
                ..Default::default()
            };
            let mut c = client::oauth(&client).await?;
            let p = c.create_provider(request).await.map_err(status)?;
            print_json(&provider_json(p.get_ref()));
        }
        ProviderCommand::Get { slug, client } => {
            let mut c = client::oauth(&client).await?;
            let p = c
                .get_provider(pb::GetProviderRequest { slug })
                .await
                .map_err(status)?;
            print_json(&provider_json(p.get_ref()));
        }
        ProviderCommand::List { client } => {
            let c = client::oauth(&client).await?;
            let providers = client::all_pages(|page_token| {
                let mut c = c.clone();
                async move {
                    let request = pb::ListProvidersRequest {
                        page_size: client::PAGE_SIZE,
                        page_token,
                    };
                    let r = c.list_providers(request).await?.into_inner();
                    Ok((r.providers, r.next_page_token))
                }
            })
            .await?;
            let providers: Vec<_> = providers.iter().map(provider_json).collect();
            print_json(&json!(providers));
        }
        ProviderCommand::SetSecret {
            slug,
            secret,
            client,
        } => {
            let request = pb::UpdateProviderRequest {
                slug,
                client_secret: Some(from_stdin_if_dash(secret)?),
                ..Default::default()
            };
            let mut c = client::oauth(&client).await?;
            let p = c.update_provider(request).await.map_err(status)?;
            print_json(&provider_json(p.get_ref()));
        }
        ProviderCommand::SetApi {
            slug,
            base_url,
            path_prefixes,
            key_header,
            key_prefix,
            key_query_param,
            clear,
            client,
        } => {
            let api = base_url.map(|base_url| pb::ProviderApi {
                base_url,
                path_prefixes,
                key_header,
                key_prefix,
                key_query_param,
            });
            let request = pb::UpdateProviderRequest {
                slug,
                api,
                clear_api: clear,
                ..Default::default()
            };
            let mut c = client::oauth(&client).await?;
            let p = c.update_provider(request).await.map_err(status)?;
            print_json(&provider_json(p.get_ref()));
        }
        ProviderCommand::Delete { slug, client } => {
            let mut c = client::oauth(&client).await?;
            c.delete_provider(pb::DeleteProviderRequest { slug: slug.clone() })
                .await
                .map_err(status)?;
            print_json(&json!({ "deleted": slug }));
        }
        ProviderCommand::Templates { client } => {
            let mut c = client::oauth(&client).await?;
            let r = c
                .list_provider_templates(pb::ListProviderTemplatesRequest {})
                .await
                .map_err(status)?;
            print_json(&json!(
                r.get_ref()
                    .templates
                    .iter()
                    .map(provider_json)
                    .collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

/// `credvault cred connect`: starts a connect flow and prints the URL to open.
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// The end user's id in your product.
    #[arg(long)]
    user_id: String,
    /// The end user's email (used in notifications).
    #[arg(long, default_value = "")]
    user_email: String,
    /// Provider slug.
    #[arg(long)]
    provider: String,
    /// Name of the credential the flow creates.
    #[arg(long)]
    name: String,
    /// Scope to ask for (repeatable; default: the provider's).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Where the browser goes after connecting (must be on the provider's allow-list).
    #[arg(long)]
    success_url: String,
    /// Where the browser goes when connecting fails (with `?error=<code>`).
    #[arg(long)]
    failure_url: String,
}

pub async fn connect(args: ConnectArgs, client: ClientArgs) -> anyhow::Result<()> {
    let request = pb::StartOAuthRequest {
        user_id: args.user_id,
        user_email: args.user_email,
        provider: args.provider,
        name: args.name,
        scopes: args.scopes,
        success_redirect_url: args.success_url,
        failure_redirect_url: args.failure_url,
        labels: Default::default(),
    };
    let mut c = client::oauth(&client).await?;
    let r = c.start_o_auth(request).await.map_err(status)?.into_inner();
    print_json(&json!({
        "authorization_url": r.authorization_url,
        "expires_at": time(r.expires_at.as_ref()),
    }));
    Ok(())
}

/// Refreshes one credential now.
pub async fn refresh(id: String, client: ClientArgs) -> anyhow::Result<pb::Credential> {
    let mut c = client::credentials(&client).await?;
    let r = c
        .refresh_credential(pb::RefreshCredentialRequest { id })
        .await
        .map_err(status)
        .context("refresh failed")?;
    Ok(r.into_inner())
}
