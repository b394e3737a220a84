//! The connection used by client commands: bearer token from `CREDVAULT_TOKEN`.
use anyhow::{Context, bail};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use credvault::proto::v1::{
    admin_service_client::AdminServiceClient, audit_service_client::AuditServiceClient,
    connect_service_client::ConnectServiceClient,
    credential_service_client::CredentialServiceClient,
    external_auth_service_client::ExternalAuthServiceClient,
    o_auth_service_client::OAuthServiceClient, proxy_service_client::ProxyServiceClient,
    user_service_client::UserServiceClient, webhook_service_client::WebhookServiceClient,
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
    Ok((channel(args).await?, Bearer(value)))
}

/// A connection to `--server`: TLS for `https://` (verified against `--ca-file` or
/// the system's roots, presenting `--cert`/`--key` when given).
pub async fn channel(args: &ClientArgs) -> anyhow::Result<Channel> {
    let mut endpoint = Channel::from_shared(args.server.clone())
        .context("--server must be a URL such as http://127.0.0.1:50051")?;
    let https = args.server.starts_with("https://");
    if https {
        endpoint = endpoint
            .tls_config(tls_config(args)?)
            .context("TLS settings")?;
    } else if args.ca_file.is_some() || args.cert.is_some() {
        bail!("--ca-file, --cert and --key need an https:// --server");
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.server))
}

fn tls_config(args: &ClientArgs) -> anyhow::Result<ClientTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut tls = ClientTlsConfig::new();
    tls = match &args.ca_file {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca)?)),
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        let key = zeroize::Zeroizing::new(read(key)?);
        tls = tls.identity(Identity::from_pem(read(cert)?, key.as_slice()));
    }
    Ok(tls)
}

/// `pub async fn $name(args) -> $client<Authed>`: a client of one service.
macro_rules! service_client {
    ($($name:ident => $client:ident),* $(,)?) => {$(
        pub async fn $name(args: &ClientArgs) -> anyhow::Result<$client<Authed>> {
            let (channel, bearer) = connect(args).await?;
            Ok($client::with_interceptor(channel, bearer))
        }
    )*};
}

service_client! {
    credentials => CredentialServiceClient,
    oauth => OAuthServiceClient,
    webhooks => WebhookServiceClient,
    connect_links => ConnectServiceClient,
    admin => AdminServiceClient,
    audit => AuditServiceClient,
    users => UserServiceClient,
    external_auth => ExternalAuthServiceClient,
    proxy => ProxyServiceClient,
}

/// `KEY=VALUE`, for labels and query parameters.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected KEY=VALUE".to_owned())
}

/// A gRPC error as one readable line.
pub fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// The most a listing RPC returns per page; what the CLI asks for.
pub const PAGE_SIZE: i32 = 1000;

/// Every item of a paged listing: asks `page` for the page after each
/// `next_page_token` until one comes back empty.
pub async fn all_pages<T, Fut>(mut page: impl FnMut(String) -> Fut) -> anyhow::Result<Vec<T>>
where
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await.map_err(status)?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
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
