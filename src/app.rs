//! Assembling the service: [`App::build`] opens the store, loads the keyring and binds
//! both listeners (port 0 allowed); [`App::run`] serves until `shutdown` resolves.
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::grpc::limits::OversizeIsResourceExhausted;
use crate::grpc::{
    AdminApi, ConnectApi, CredentialApi, ExternalAuthApi, OAuthApi, UserApi, WebhookApi,
};
use crate::outbound::{Guard, Outbound};
use crate::proto::{
    FILE_DESCRIPTOR_SET,
    v1::{
        admin_service_server::AdminServiceServer, connect_service_server::ConnectServiceServer,
        credential_service_server::CredentialServiceServer,
        external_auth_service_server::ExternalAuthServiceServer,
        o_auth_service_server::OAuthServiceServer, user_service_server::UserServiceServer,
        webhook_service_server::WebhookServiceServer,
    },
};
use crate::service::external_auth::ExternalAuth;
use crate::service::links::{Connect, ConnectConfig};
use crate::service::users::Users;
use crate::service::{Settings, Vault};
use crate::shutdown::Shutdown;
use crate::store::LockoutPolicy;
use crate::store::{self, StoreError};
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
    #[error(transparent)]
    Outbound(#[from] crate::outbound::BuildError),
    /// The vault refused to open (a wrong master key, storage unreachable …).
    #[error("{0}")]
    Refused(String),
}

impl From<crate::error::Error> for AppError {
    fn from(err: crate::error::Error) -> Self {
        Self::Refused(err.to_string())
    }
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

/// Where browsers reach the HTTP listener: `public_base_url`, else the bound address.
fn public_base(config: &Config, http: SocketAddr) -> String {
    config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{http}"))
        .trim_end_matches('/')
        .to_owned()
}

/// The service layer's settings from the configuration; `http` is the bound HTTP
/// address (for the default public base URL).
fn settings(config: &Config, http: SocketAddr) -> Result<Settings, AppError> {
    let base = public_base(config, http);
    let mut horizons: Vec<i64> = config
        .expiry_warning_horizons_secs
        .iter()
        .map(|s| secs(*s))
        .collect();
    horizons.sort_unstable();
    horizons.dedup();
    let settings = Settings {
        idempotency_ttl_ms: secs(config.idempotency_ttl_secs),
        callback_url: format!("{}/oauth/callback", base.trim_end_matches('/')),
        allow_http_urls: config.allow_http_urls,
        provider_timeout: Duration::from_secs(config.provider_timeout_secs),
        expiry_horizons_ms: horizons,
        webhook_schedule_ms: config
            .webhook_retry_schedule_secs
            .iter()
            .map(|s| secs(*s))
            .collect(),
        webhook_guard: Guard {
            allow_http: config.allow_http_urls,
            allow_private: config.webhook_allow_private_addresses,
        },
        provider_allow_private: config.provider_allow_private_addresses,
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
    Ok(settings)
}

/// Opens the vault the configuration describes, without serving it: loads the
/// keyring, opens the store (running migrations), builds the guarded outbound client,
/// checks the keyring against the database, and re-seals provider secrets from older
/// versions. `http` is the HTTP address browsers reach (see [`settings`]).
pub async fn open_vault(
    config: &Config,
    clock: Arc<dyn Clock>,
    http: SocketAddr,
) -> Result<Vault, AppError> {
    let keyring = Arc::new(config.keyring()?);
    let url = config
        .database_url
        .as_deref()
        .ok_or_else(|| ConfigError::Invalid("database_url is not set".into()))?;
    let outbound = Outbound::new(config.outbound_proxy.as_deref())?;
    let store = store::open(url, config.max_connections).await?;
    let vault = Vault::new(store, keyring, clock, settings(config, http)?, outbound);
    vault.verify_keyring().await?;
    let upgraded = vault.upgrade_provider_secrets().await?;
    if upgraded > 0 {
        tracing::info!(
            upgraded,
            "re-sealed provider client secrets with their endpoints bound"
        );
    }
    Ok(vault)
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
        let grpc = bind(config.listen).await?;
        let http = bind(config.http_listen).await?;
        let vault = open_vault(config, clock, http.1).await?;
        Ok(Self {
            vault,
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
    /// runs the background workers, then drains: health reports NOT_SERVING, health
    /// Watch and WatchEvents streams end, in-flight requests and the workers' items in
    /// hand finish. `shutdown_grace_secs` bounds the whole drain; what is still open
    /// then is cut.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (trigger, stop) = crate::shutdown::channel();
        let health = tonic_health::server::HealthReporter::new();
        report(&health, ServingStatus::Serving).await;
        let health_service = crate::grpc::health::service(health.clone(), stop.clone());
        let background = self.spawn_workers(&health, &stop);
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let (grpc, http) = self.serve(health_service, &stop)?;
        let serving = async { tokio::join!(grpc, http) };
        tokio::pin!(serving);
        let announce = {
            let health = health.clone();
            async move {
                shutdown.await;
                tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining");
                report(&health, ServingStatus::NotServing).await;
            }
        };
        let early = tokio::select! {
            done = &mut serving => Some(done),
            () = announce => None,
        };
        // From here on everything winds down, within one deadline.
        trigger.fire();
        let deadline = tokio::time::Instant::now() + grace;
        let (grpc, http) = match early {
            Some(done) => done,
            None => match tokio::time::timeout_at(deadline, &mut serving).await {
                Ok(done) => done,
                Err(_) => {
                    tracing::warn!("drain deadline passed: cutting open connections");
                    (Ok(()), Ok(()))
                }
            },
        };
        finish_workers(background, deadline).await;
        grpc?;
        http.map_err(AppError::Http)
    }

    /// The background workers, each stopping on `stop`.
    fn spawn_workers(
        &self,
        health: &tonic_health::server::HealthReporter,
        stop: &Shutdown,
    ) -> Vec<JoinHandle<()>> {
        let c = &self.config;
        let v = &self.vault;
        let mut background = vec![
            tokio::spawn(prune_forever(v.clone(), stop.clone())),
            tokio::spawn(watch_storage(v.clone(), health.clone(), stop.clone())),
        ];
        if c.refresher_interval_secs > 0 {
            background.push(tokio::spawn(workers::refresher::run(
                v.clone(),
                Duration::from_secs(c.refresher_interval_secs),
                c.refresh_batch,
                c.refresh_concurrency,
                stop.clone(),
            )));
        }
        if c.scan_interval_secs > 0 {
            background.push(tokio::spawn(workers::scanner::run(
                v.clone(),
                Duration::from_secs(c.scan_interval_secs),
                SCAN_BATCH,
                stop.clone(),
            )));
        }
        if c.deliver_interval_ms > 0 {
            background.push(tokio::spawn(workers::deliverer::run(
                v.clone(),
                Duration::from_millis(c.deliver_interval_ms),
                100,
                c.webhook_concurrency,
                stop.clone(),
            )));
        }
        background
    }

    /// The gRPC and HTTP servers, each draining once `stop` turns on.
    #[allow(clippy::type_complexity)]
    fn serve(
        self,
        health: tonic_health::pb::health_server::HealthServer<crate::grpc::health::DrainingHealth>,
        stop: &Shutdown,
    ) -> Result<
        (
            impl Future<Output = Result<(), tonic::transport::Error>>,
            impl Future<Output = std::io::Result<()>>,
        ),
        AppError,
    > {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let limit = self.config.max_message_bytes;
        let vault = self.vault;
        macro_rules! limited {
            ($server:ident, $api:expr) => {
                $server::new($api)
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit)
            };
        }
        let external_auth = ExternalAuth::new(vault.clone(), LockoutPolicy::default());
        let connect = Connect::new(
            vault.clone(),
            external_auth.clone(),
            ConnectConfig {
                public_base_url: public_base(&self.config, self.http.1),
                verify_timeout: Duration::from_secs(self.config.connect_verify_timeout_secs),
            },
        );
        let http = {
            let stop = stop.clone();
            let page = crate::http::PageState::new(
                connect.clone(),
                !self.config.allow_http_urls,
                self.config.connect_rate_limit_per_minute,
            );
            axum::serve(
                self.http.0,
                crate::http::router(page).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.wait().await })
            .into_future()
        };
        let grpc = {
            let stop = stop.clone();
            Server::builder()
                .trace_fn(|request| tracing::info_span!("rpc", method = %request.uri().path()))
                .layer(tower_layer::layer_fn(OversizeIsResourceExhausted))
                .add_service(health)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(limited!(
                    CredentialServiceServer,
                    CredentialApi::new(vault.clone())
                ))
                .add_service(limited!(AdminServiceServer, AdminApi::new(vault.clone())))
                .add_service(limited!(ConnectServiceServer, ConnectApi::new(connect)))
                .add_service(limited!(
                    ExternalAuthServiceServer,
                    ExternalAuthApi::new(external_auth)
                ))
                .add_service(limited!(
                    UserServiceServer,
                    UserApi::new(Users::new(vault.clone()))
                ))
                .add_service(limited!(OAuthServiceServer, OAuthApi::new(vault.clone())))
                .add_service(limited!(
                    WebhookServiceServer,
                    WebhookApi::new(vault.clone(), stop.clone())
                ))
                // TCP_NODELAY: without it a response larger than one segment waits for
                // the client's delayed ACK (~40 ms) under Nagle's algorithm.
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(self.grpc.0).with_nodelay(Some(true)),
                    async move { stop.wait().await },
                )
        };
        Ok((grpc, http))
    }
}

/// Every service health checking reports on ("" is the server as a whole).
const SERVICES: [&str; 8] = [
    "",
    "credvault.v1.ConnectService",
    "credvault.v1.CredentialService",
    "credvault.v1.AdminService",
    "credvault.v1.ExternalAuthService",
    "credvault.v1.OAuthService",
    "credvault.v1.UserService",
    "credvault.v1.WebhookService",
];

/// Sets every service's health status.
async fn report(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Waits for the workers to finish what they hold, until `deadline`; then aborts
/// those still running (their leases lapse and another replica takes over).
async fn finish_workers(workers: Vec<JoinHandle<()>>, deadline: tokio::time::Instant) {
    for mut worker in workers {
        if tokio::time::timeout_at(deadline, &mut worker)
            .await
            .is_err()
        {
            tracing::warn!("a background worker did not stop by the drain deadline");
            worker.abort();
        }
    }
}

/// How often health checking asks the database whether it is there.
const STORAGE_PROBE_EVERY: Duration = Duration::from_secs(2);

/// Reports NOT_SERVING (for every service) while the database does not answer, and
/// SERVING again as soon as it does; meanwhile requests fail fast (see
/// `Vault::set_storage_up`). Pools reconnect by themselves.
async fn watch_storage(vault: Vault, health: tonic_health::server::HealthReporter, stop: Shutdown) {
    let mut serving = true;
    let mut every = tokio::time::interval(STORAGE_PROBE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.wait() => return,
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
            report(&health, status).await;
            if up {
                tracing::info!("database reachable again: serving");
            } else {
                tracing::error!("database unreachable: health reports NOT_SERVING");
            }
        }
    }
}

async fn prune_forever(vault: Vault, stop: Shutdown) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.wait() => return,
        }
        match vault.prune().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "forgot expired request ids and connect states"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}
