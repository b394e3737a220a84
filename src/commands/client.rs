//! The connection used by client commands: bearer token from `CREDVAULT_TOKEN`.
use anyhow::{Context, bail};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use credvault::proto::v1::{
    admin_service_client::AdminServiceClient, credential_service_client::CredentialServiceClient,
    o_auth_service_client::OAuthServiceClient, webhook_service_client::WebhookServiceClient,
};

use crate::ClientArgs;

#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

async fn connect(args: &ClientArgs) -> anyhow::Result<(Channel, Bearer)> {
    let Ok(token) = std::env::var("CREDVAULT_TOKEN") else {
        bail!(
            "set CREDVAULT_TOKEN to a service token (`credvault serve` prints one on first start)"
        );
    };
    let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.trim())
        .parse()
        .context("CREDVAULT_TOKEN contains characters a token cannot have")?;
    value.set_sensitive(true);
    let channel = Channel::from_shared(args.server.clone())
        .context("--server must be a URL such as http://127.0.0.1:50051")?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.server))?;
    Ok((channel, Bearer(value)))
}

pub async fn credentials(args: &ClientArgs) -> anyhow::Result<CredentialServiceClient<Authed>> {
    let (channel, bearer) = connect(args).await?;
    Ok(CredentialServiceClient::with_interceptor(channel, bearer))
}

pub async fn oauth(args: &ClientArgs) -> anyhow::Result<OAuthServiceClient<Authed>> {
    let (channel, bearer) = connect(args).await?;
    Ok(OAuthServiceClient::with_interceptor(channel, bearer))
}

pub async fn webhooks(args: &ClientArgs) -> anyhow::Result<WebhookServiceClient<Authed>> {
    let (channel, bearer) = connect(args).await?;
    Ok(WebhookServiceClient::with_interceptor(channel, bearer))
}

pub async fn connect_links(
    args: &ClientArgs,
) -> anyhow::Result<credvault::proto::v1::connect_service_client::ConnectServiceClient<Authed>> {
    let (channel, bearer) = connect(args).await?;
    Ok(
        credvault::proto::v1::connect_service_client::ConnectServiceClient::with_interceptor(
            channel, bearer,
        ),
    )
}

pub async fn admin(args: &ClientArgs) -> anyhow::Result<AdminServiceClient<Authed>> {
    let (channel, bearer) = connect(args).await?;
    Ok(AdminServiceClient::with_interceptor(channel, bearer))
}

/// A gRPC error as one readable line.
pub fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub fn time(ts: Option<&prost_types::Timestamp>) -> serde_json::Value {
    ts.map_or(serde_json::Value::Null, |t| {
        serde_json::Value::String(t.to_string())
    })
}

/// An optional RFC 3339 time given as `--flag`.
pub fn timestamp(
    flag: &str,
    value: Option<String>,
) -> anyhow::Result<Option<prost_types::Timestamp>> {
    value
        .map(|v| {
            v.parse()
                .with_context(|| format!("--{flag} must be RFC 3339, e.g. 2027-01-31T00:00:00Z"))
        })
        .transpose()
}
