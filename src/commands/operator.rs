//! `credvault admin …`: operator commands that work on the database directly, with
//! the same configuration as `serve` (database URL and master keys). They need no
//! running server and no token: holding the database and the keys is the authority.
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use secrecy::ExposeSecret;

use credvault::clock::SystemClock;
use credvault::model::ServiceToken;
use credvault::{Config, app, embedded};

use crate::ConfigArgs;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create the `default` tenant and a first admin token on an empty vault; the
    /// token is printed once. (The embedded default does this on first start.)
    Bootstrap {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Mint a new admin token when every admin token is lost. Offline: needs the
    /// database URL and the master keys (checked against the database), no token.
    Recover {
        /// The tenant (id or name) the new token belongs to.
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Bootstrap { config } => {
            let vault = open(&config).await?;
            match vault.bootstrap().await? {
                Some((token, secret)) => print_token(&token, secret.expose_secret()),
                None => anyhow::bail!(
                    "this vault is already bootstrapped (it has tenants); use \
                     `credvault admin recover` if every admin token is lost"
                ),
            }
        }
        AdminCommand::Recover { tenant, config } => {
            let vault = open(&config).await?;
            let (token, secret) = vault.recover_admin(&tenant).await?;
            print_token(&token, secret.expose_secret());
        }
    }
    Ok(())
}

async fn open(args: &ConfigArgs) -> anyhow::Result<credvault::service::Vault> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    // The embedded default's database and dev key, when nothing else is configured.
    embedded::apply(&mut config).context("preparing the embedded default data directory")?;
    let (vault, keys) = app::open_vault(&config, Arc::new(SystemClock), config.http_listen).await?;
    // An offline command is not a serving replica: it must not hold up activation.
    keys.leave().await?;
    Ok(vault)
}

/// `credvault backup --to FILE`.
#[derive(clap::Args)]
pub struct BackupArgs {
    /// The new file to write the copy to (it must not exist yet).
    #[arg(long)]
    to: std::path::PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

/// An online, consistent copy of the SQLite database (docs/operations.md, "Backup and
/// restore"). PostgreSQL is backed up with `pg_dump`.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.config.as_deref(), std::env::vars())?;
    let url = config.database_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            config.data_dir.join("credvault.db").display()
        )
    });
    if !url.starts_with("sqlite:") {
        anyhow::bail!(
            "`credvault backup` copies SQLite databases; back up PostgreSQL with \
             `pg_dump --format=custom` (docs/operations.md, \"Backup and restore\")"
        );
    }
    if args.to.exists() {
        anyhow::bail!("{} exists already; name a new file", args.to.display());
    }
    credvault::store::sqlite::backup(&url, &args.to)
        .await
        .with_context(|| format!("backing up {url} to {}", args.to.display()))?;
    eprintln!(
        "backed up to {} — it is sealed under the master key versions of its day: \
         keep every version it was sealed under",
        args.to.display()
    );
    Ok(())
}

/// Printed once, to the terminal only: never through the logger.
pub fn print_token(token: &ServiceToken, secret: &str) {
    println!(
        "\nAdmin token (shown once; only its hash is stored):\n\n    \
         export CREDVAULT_TOKEN={secret}\n\n(token id {id} in tenant {tenant}; revoke it with \
         `credvault token revoke {id}`)\n",
        id = token.id,
        tenant = token.tenant_id,
    );
}
