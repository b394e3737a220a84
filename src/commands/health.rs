//! `credvault health`: one gRPC health check, for container and systemd probes.
use std::time::Duration;

use anyhow::{Context, bail};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::ClientArgs;

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The service to ask about (empty: the server as a whole).
    #[arg(long, default_value = "")]
    service: String,
    /// Give up (and fail) after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
}

pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let status = tokio::time::timeout(timeout, check(&args))
        .await
        .with_context(|| format!("no answer from {} within {timeout:?}", args.client.server))??;
    if status != ServingStatus::Serving {
        bail!("{} reports {}", args.client.server, status.as_str_name());
    }
    println!("SERVING");
    Ok(())
}

async fn check(args: &HealthArgs) -> anyhow::Result<ServingStatus> {
    let channel = super::client::channel(&args.client).await?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .map_err(super::client::status)?;
    Ok(ServingStatus::try_from(reply.into_inner().status).unwrap_or(ServingStatus::Unknown))
}
