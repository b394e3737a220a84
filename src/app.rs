//! Assembling the service: [`App::build`] opens the store, loads the keyring and binds
//! the listener (port 0 allowed); [`App::run`] serves until `shutdown` resolves.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::grpc::{AdminApi, CredentialApi};
use crate::proto::{
    FILE_DESCRIPTOR_SET,
    v1::{
        admin_service_server::AdminServiceServer,
        credential_service_server::CredentialServiceServer,
    },
};
use crate::service::{Settings, Vault};
use crate::store::{self, StoreError};

/// How often used request ids past the idempotency window are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

pub struct App {
    vault: Vault,
    listener: TcpListener,
    addr: SocketAddr,
    max_message_bytes: usize,
}

impl App {
    /// Builds the app on the system clock.
    pub async fn build(config: &Config) -> Result<Self, AppError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds the app with an injected clock (tests move time by hand).
    pub async fn build_with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AppError> {
        let keyring = Arc::new(config.keyring()?);
        let url = config
            .database_url
            .as_deref()
            .ok_or_else(|| ConfigError::Invalid("database_url is not set".into()))?;
        let store = store::open(url, config.max_connections).await?;
        let settings = Settings {
            idempotency_ttl_ms: i64::try_from(config.idempotency_ttl_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        };
        let vault = Vault::new(store, keyring, clock, settings);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            vault,
            listener,
            addr,
            max_message_bytes: config.max_message_bytes,
        })
    }

    /// The bound gRPC address (the real port when port 0 was asked for).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Serves gRPC (with health and reflection) until `shutdown` resolves, then
    /// drains in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<CredentialServiceServer<CredentialApi>>()
            .await;
        health.set_serving::<AdminServiceServer<AdminApi>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let limit = self.max_message_bytes;
        let credentials = CredentialServiceServer::new(CredentialApi::new(self.vault.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let admin = AdminServiceServer::new(AdminApi::new(self.vault.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);

        let pruner = tokio::spawn(prune_forever(self.vault.clone()));
        let served = Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(credentials)
            .add_service(admin)
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), shutdown)
            .await;
        pruner.abort();
        Ok(served?)
    }
}

async fn prune_forever(vault: Vault) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        every.tick().await;
        match vault.prune_idempotency_keys().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "forgot expired request ids"),
            Err(e) => tracing::warn!(error = %e, "pruning request ids failed"),
        }
    }
}
