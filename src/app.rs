//! Assembling the service: [`App::build`] opens the store, loads the keyring and binds
//! both listeners (port 0 allowed); [`App::run`] serves until `shutdown` resolves.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::grpc::{AdminApi, CredentialApi, OAuthApi, WebhookApi};
use crate::proto::{
    FILE_DESCRIPTOR_SET,
    v1::{
        admin_service_server::AdminServiceServer,
        credential_service_server::CredentialServiceServer,
        o_auth_service_server::OAuthServiceServer, webhook_service_server::WebhookServiceServer,
    },
};
use crate::service::{Settings, Vault};
use crate::store::{self, StoreError};
use crate::webhooks::ssrf::Guard;
use crate::workers;

/// Credentials transitioned per scanner transaction.
pub const SCAN_BATCH: u32 = 1000;

/// How often used request ids and expired connect states are deleted.
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
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

pub struct App {
    vault: Vault,
    grpc: (TcpListener, SocketAddr),
    http: (TcpListener, SocketAddr),
    config: Config,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), AppError> {
    let err = |source| AppError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

fn secs(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
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
        let grpc = bind(config.listen).await?;
        let http = bind(config.http_listen).await?;
        let base = config
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", http.1));
        let settings = Settings {
            idempotency_ttl_ms: secs(config.idempotency_ttl_secs),
            callback_url: format!("{}/oauth/callback", base.trim_end_matches('/')),
            allow_http_urls: config.allow_http_urls,
            provider_timeout: Duration::from_secs(config.provider_timeout_secs),
            expiry_horizons_ms: {
                let mut h: Vec<i64> = config
                    .expiry_warning_horizons_secs
                    .iter()
                    .map(|s| secs(*s))
                    .collect();
                h.sort_unstable();
                h.dedup();
                h
            },
            webhook_schedule_ms: config
                .webhook_retry_schedule_secs
                .iter()
                .map(|s| secs(*s))
                .collect(),
            webhook_guard: Guard {
                allow_http: config.allow_http_urls,
                allow_private: config.webhook_allow_private_addresses,
            },
            webhook_timeout: Duration::from_secs(config.webhook_timeout_secs),
            delivery_lease_ms: secs(config.webhook_timeout_secs.saturating_mul(4).max(60)),
            ..Settings::default()
        };
        if settings.webhook_schedule_ms.is_empty() {
            return Err(ConfigError::Invalid(
                "webhook_retry_schedule_secs must list at least one delay".into(),
            )
            .into());
        }
        Ok(Self {
            vault: Vault::new(store, keyring, clock, settings),
            grpc,
            http,
            config: config.clone(),
        })
    }

    /// The bound gRPC address (the real port when port 0 was asked for).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.1
    }

    /// The bound HTTP address (OAuth callback).
    pub fn http_addr(&self) -> SocketAddr {
        self.http.1
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Serves gRPC (with health and reflection) and HTTP until `shutdown` resolves,
    /// runs the background workers, then drains in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<CredentialServiceServer<CredentialApi>>()
            .await;
        health.set_serving::<AdminServiceServer<AdminApi>>().await;
        health.set_serving::<OAuthServiceServer<OAuthApi>>().await;
        health
            .set_serving::<WebhookServiceServer<WebhookApi>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let limit = self.config.max_message_bytes;
        let credentials = CredentialServiceServer::new(CredentialApi::new(self.vault.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let admin = AdminServiceServer::new(AdminApi::new(self.vault.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let oauth = OAuthServiceServer::new(OAuthApi::new(self.vault.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let webhooks = WebhookServiceServer::new(WebhookApi::new(self.vault.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);

        let mut background = vec![
            tokio::spawn(prune_forever(self.vault.clone(), stop.clone())),
            tokio::spawn(watch_storage(
                self.vault.clone(),
                health.clone(),
                stop.clone(),
            )),
        ];
        if self.config.refresher_interval_secs > 0 {
            background.push(tokio::spawn(workers::refresher::run(
                self.vault.clone(),
                Duration::from_secs(self.config.refresher_interval_secs),
                self.config.refresh_batch,
                self.config.refresh_concurrency,
                stop.clone(),
            )));
        }
        if self.config.scan_interval_secs > 0 {
            background.push(tokio::spawn(workers::scanner::run(
                self.vault.clone(),
                Duration::from_secs(self.config.scan_interval_secs),
                SCAN_BATCH,
                stop.clone(),
            )));
        }
        if self.config.deliver_interval_ms > 0 {
            background.push(tokio::spawn(workers::deliverer::run(
                self.vault.clone(),
                Duration::from_millis(self.config.deliver_interval_ms),
                100,
                self.config.webhook_concurrency,
                stop.clone(),
            )));
        }
        let http = axum::serve(self.http.0, crate::http::router(self.vault.clone()))
            .with_graceful_shutdown(stopped(stop.clone()));
        let grpc = Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(credentials)
            .add_service(admin)
            .add_service(oauth)
            .add_service(webhooks)
            // TCP_NODELAY: without it a response larger than one segment waits for the
            // client's delayed ACK (~40 ms) under Nagle's algorithm.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc.0).with_nodelay(Some(true)),
                stopped(stop.clone()),
            );
        let (grpc, http) = tokio::join!(grpc, http);
        for task in background {
            task.abort();
        }
        grpc?;
        http.map_err(AppError::Http)
    }
}

/// How often health checking asks the database whether it is there.
const STORAGE_PROBE_EVERY: Duration = Duration::from_secs(2);

/// Reports NOT_SERVING (for every service) while the database does not answer, and
/// SERVING again as soon as it does; meanwhile requests fail fast (see
/// `Vault::set_storage_up`). Pools reconnect by themselves.
async fn watch_storage(
    vault: Vault,
    health: tonic_health::server::HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    use tonic_health::ServingStatus;
    let services = [
        "",
        "credvault.v1.CredentialService",
        "credvault.v1.AdminService",
        "credvault.v1.OAuthService",
        "credvault.v1.WebhookService",
    ];
    let mut serving = true;
    let mut every = tokio::time::interval(STORAGE_PROBE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let up = matches!(
            tokio::time::timeout(STORAGE_PROBE_EVERY, vault.store().ping()).await,
            Ok(Ok(()))
        );
        vault.set_storage_up(up);
        if up != serving {
            serving = up;
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in services {
                health.set_service_status(service, status).await;
            }
            if up {
                tracing::info!("database reachable again: serving");
            } else {
                tracing::error!("database unreachable: health reports NOT_SERVING");
            }
        }
    }
}

async fn prune_forever(vault: Vault, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        match vault.prune().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "forgot expired request ids and connect states"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}
