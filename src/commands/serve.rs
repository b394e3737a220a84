//! `credvault serve`.
use anyhow::Context;
use secrecy::ExposeSecret;

use credvault::config::LogFormat;
use credvault::{App, Config, embedded, telemetry};

use crate::ConfigArgs;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

const DEV_KEY_WARNING: &str = "\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: credvault is using a DEVELOPMENT master key stored next to its data:
!!     {path}
!! Anyone who can read that file can decrypt every stored secret. In production,
!! keep master keys in a secret manager and pass them in CREDVAULT_MASTER_KEYS
!! (or a 0600 CREDVAULT_MASTER_KEY_FILE on a separate volume).
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!";

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.config.as_deref(), std::env::vars())?;
    if args.log_json {
        config.log_format = LogFormat::Json;
    }
    let telemetry = telemetry::init(
        config.log_format,
        &config.log_level,
        config.otlp_endpoint.as_deref(),
    )?;
    let defaults =
        embedded::apply(&mut config).context("preparing the embedded default data directory")?;
    if let Some(path) = &defaults.dev_key_file {
        eprintln!(
            "{}",
            DEV_KEY_WARNING.replace("{path}", &path.display().to_string())
        );
    }
    let app = App::build(&config).await?;
    // Only the embedded default bootstraps itself; a configured database is
    // bootstrapped on purpose, once, with `credvault admin bootstrap`.
    if defaults.database_url.is_some() {
        if let Some((token, secret)) = app.vault().bootstrap().await? {
            super::operator::print_token(&token, secret.expose_secret());
        }
    } else if app.vault().list_tenants(1, "").await?.items.is_empty() {
        tracing::warn!(
            "this vault has no tenants and no tokens yet: run `credvault admin bootstrap` \
             once, with the same configuration, to mint the first admin token"
        );
    }
    tracing::info!(
        addr = %app.grpc_addr(),
        http = %app.http_addr(),
        backend = ?app.vault().store().backend(),
        "credvault serving gRPC"
    );
    let ran = app.run(shutdown_signal()).await;
    tracing::info!("credvault stopped");
    // The last spans, the shutdown's included, go out before the process ends.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    Ok(ran?)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
