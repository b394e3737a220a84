//! Assembling the service: [`App::build`] opens the store, loads the keyring and binds
//! both listeners (port 0 allowed); [`App::run`] serves until `shutdown` resolves.
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;

use crate::clock::Millis;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::grpc::limits::OversizeIsResourceExhausted;
use crate::grpc::observe::Observed;
use crate::grpc::{
    AdminApi, AuditApi, ConnectApi, CredentialApi, ExternalAuthApi, KeysApi, OAuthApi, ProxyApi,
    UserApi, WebhookApi,
};
use crate::outbound::{Guard, Outbound};
use crate::proto::{
    FILE_DESCRIPTOR_SET,
    v1::{
        admin_service_server::AdminServiceServer, audit_service_server::AuditServiceServer,
        connect_service_server::ConnectServiceServer,
        credential_service_server::CredentialServiceServer,
        external_auth_service_server::ExternalAuthServiceServer,
        o_auth_service_server::OAuthServiceServer, proxy_service_server::ProxyServiceServer,
        user_service_server::UserServiceServer, webhook_service_server::WebhookServiceServer,
    },
};
use crate::service::audit::{AuditLog, AuditSettings};
use crate::service::external_auth::ExternalAuth;
use crate::service::keys::lifecycle::KeyLifecycle;
use crate::service::keys::rewrap::{Pace, Rewrap};
use crate::service::links::{Connect, ConnectConfig};
use crate::service::proxy::Proxy;
use crate::service::retention::Retention;
use crate::service::users::Users;
use crate::service::{Settings, Vault};
use crate::shutdown::Shutdown;
use crate::store::LockoutPolicy;
use crate::store::{self, StoreError};
use crate::tls::Tls;
use crate::workers;

/// Credentials transitioned per scanner transaction.
pub const SCAN_BATCH: u32 = 1000;

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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    keys: Arc<KeyLifecycle>,
    /// The rewrap job, shared by its worker and `RewrapSecrets`.
    rewrap: Arc<Rewrap>,
    /// The audit log's chain job, listing and verification.
    audit: Arc<AuditLog>,
    grpc: (TcpListener, SocketAddr),
    http: (TcpListener, SocketAddr),
    /// `metrics_listen`, when set.
    ops: Option<(TcpListener, SocketAddr)>,
    tls: Option<Arc<Tls>>,
    /// Metrics and the per-RPC span (off only to measure what they cost).
    observe: bool,
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
    let scheme = if config.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{http}"))
        .trim_end_matches('/')
        .to_owned()
}

/// The audit job's settings from the configuration.
fn audit_settings(config: &Config) -> AuditSettings {
    let ms = |secs: u64| Millis::try_from(secs.saturating_mul(1000)).unwrap_or(Millis::MAX);
    AuditSettings {
        checkpoint_ms: ms(config.audit_checkpoint_secs),
        retention_ms: ms(config.audit_retention_days.saturating_mul(24 * 60 * 60)),
        lease_ms: Millis::try_from(config.audit_chain_interval_ms.max(1)).unwrap_or(Millis::MAX),
    }
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
        event_retention_ms: secs(config.event_retention_days.saturating_mul(24 * 60 * 60)),
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
        token_rate_per_sec: f64::from(config.token_rate_limit_per_sec),
        token_burst: config.token_rate_limit_burst,
        token_cache_ttl_ms: Millis::try_from(config.token_cache_ttl_ms).unwrap_or(Millis::MAX),
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
/// checks the keyring against the database, re-seals provider secrets from older
/// versions, and joins the cluster's key lifecycle (adopting its active key version,
/// refusing to start without it). `http` is the HTTP address browsers reach (see
/// [`settings`]).
pub async fn open_vault(
    config: &Config,
    clock: Arc<dyn Clock>,
    http: SocketAddr,
) -> Result<(Vault, Arc<KeyLifecycle>), AppError> {
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
    let heartbeat_ms =
        Millis::try_from(config.key_heartbeat_secs.max(1) * 1000).unwrap_or(Millis::MAX);
    let keys = Arc::new(KeyLifecycle::new(&vault, heartbeat_ms));
    keys.join(config.active_key_version).await?;
    Ok((vault, keys))
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
        let tls_files = config.tls_files()?;
        let grpc = bind(config.listen).await?;
        let http = bind(config.http_listen).await?;
        let ops = match config.metrics_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let (vault, keys) = open_vault(config, clock, http.1).await?;
        let tls = tls_files
            .map(|files| Tls::load(files, vault.metrics().clone()))
            .transpose()?;
        let pace = Pace {
            batch: config.rewrap_batch,
            rate: config.rewrap_rate,
        };
        let audit = Arc::new(AuditLog::new(&vault, audit_settings(config)));
        // Records an earlier version left unchained take their places before new
        // ones do (SQLite chains each record as it is written, docs/audit.md).
        if let Err(e) = audit.chain().await {
            tracing::warn!(error = %e, "chaining the audit records waiting at start failed; the chain job retries");
        }
        Ok(Self {
            rewrap: Arc::new(Rewrap::new(&vault, pace)),
            audit,
            vault,
            keys,
            grpc,
            http,
            ops,
            tls,
            observe: true,
            config: config.clone(),
        })
    }

    /// The bound `metrics_listen` address, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves without RPC metrics and the per-RPC span: for the benchmark that
    /// measures what they cost, not for production.
    pub fn without_observability(mut self) -> Self {
        self.observe = false;
        self
    }

    /// The TLS configuration, to reload by hand (it also reloads by itself).
    pub fn tls(&self) -> Option<Arc<Tls>> {
        self.tls.clone()
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

    /// This replica's part in the key lifecycle (heartbeats, activation).
    pub fn keys(&self) -> &Arc<KeyLifecycle> {
        &self.keys
    }

    /// The audit log's service (tests run its chain job by hand).
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
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
        let serving = Serving::new();
        serving.report(ServingStatus::Serving).await;
        let health_service = crate::grpc::health::service(serving.health.clone(), stop.clone());
        let background = self.spawn_workers(&serving, &stop);
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let (grpc, http) = self.serve(health_service, &serving, &stop)?;
        let servers = async { tokio::join!(grpc, http) };
        tokio::pin!(servers);
        let announce = {
            let serving = serving.clone();
            async move {
                shutdown.await;
                tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining");
                serving.report(ServingStatus::NotServing).await;
            }
        };
        let early = tokio::select! {
            done = &mut servers => Some(done),
            () = announce => None,
        };
        // From here on everything winds down, within one deadline.
        trigger.fire();
        let deadline = tokio::time::Instant::now() + grace;
        let (grpc, http) = match early {
            Some(done) => done,
            None => match tokio::time::timeout_at(deadline, &mut servers).await {
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
    fn spawn_workers(&self, serving: &Serving, stop: &Shutdown) -> Vec<JoinHandle<()>> {
        let c = &self.config;
        let v = &self.vault;
        let mut background = vec![tokio::spawn(watch_storage(
            v.clone(),
            serving.clone(),
            stop.clone(),
        ))];
        if let Some(tls) = &self.tls {
            let every = Duration::from_secs(c.tls_reload_interval_secs.max(1));
            background.push(tokio::spawn(crate::tls::watch(
                tls.clone(),
                every,
                stop.clone(),
            )));
        }
        background.push(tokio::spawn(workers::keys::heartbeat(
            self.keys.clone(),
            Duration::from_secs(c.key_heartbeat_secs.max(1)),
            stop.clone(),
        )));
        background.push(tokio::spawn(workers::keys::forget_tenant_keys(
            self.vault.tenant_keys().clone(),
            Duration::from_secs(5),
            stop.clone(),
        )));
        if c.rewrap_interval_secs > 0 {
            background.push(tokio::spawn(workers::keys::rewrap(
                self.rewrap.clone(),
                Duration::from_secs(c.rewrap_interval_secs),
                stop.clone(),
            )));
        }
        if c.audit_chain_interval_ms > 0 {
            background.push(tokio::spawn(workers::audit::run(
                self.audit.clone(),
                Duration::from_millis(c.audit_chain_interval_ms),
                stop.clone(),
            )));
        }
        if c.retention_interval_secs > 0 {
            let every = Duration::from_secs(c.retention_interval_secs);
            background.push(tokio::spawn(workers::pruner::run(
                Retention::new(v, every),
                every,
                stop.clone(),
            )));
        }
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
    fn serve(
        self,
        health: HealthServer<crate::grpc::health::DrainingHealth>,
        serving: &Serving,
        stop: &Shutdown,
    ) -> Result<(Served<tonic::transport::Error>, Served<std::io::Error>), AppError> {
        let external_auth = ExternalAuth::new(self.vault.clone(), LockoutPolicy::default());
        let connect = Connect::new(
            self.vault.clone(),
            external_auth.clone(),
            ConnectConfig {
                public_base_url: public_base(&self.config, self.http.1),
                verify_timeout: Duration::from_secs(self.config.connect_verify_timeout_secs),
            },
        );
        let page = crate::http::PageState::new(
            connect.clone(),
            !self.config.allow_http_urls,
            self.config.connect_rate_limit_per_minute,
            self.config.http_rate_limit_per_minute,
        );
        let ops = crate::http::Ops::new(self.vault.clone(), serving.ready.clone());
        let keys = KeysApi::new(self.vault.clone(), self.keys.clone(), self.rewrap.clone());
        let listeners = (self.http.0, self.ops.map(|(listener, _)| listener));
        let http = serve_pages_and_ops(listeners, self.tls.clone(), page, ops, stop);
        let apis = Apis {
            keys,
            audit: self.audit.clone(),
            vault: self.vault,
            connect,
            external_auth,
            health,
            stop: stop.clone(),
        };
        let grpc = serve_grpc(&self.config, self.grpc.0, self.tls, self.observe, apis)?;
        Ok((grpc, http))
    }
}

/// A server running until shutdown.
type Served<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;

/// What the gRPC services are built from.
struct Apis {
    vault: Vault,
    keys: KeysApi,
    audit: Arc<AuditLog>,
    connect: Connect,
    external_auth: ExternalAuth,
    health: HealthServer<crate::grpc::health::DrainingHealth>,
    stop: Shutdown,
}

/// The gRPC server with its limits, metrics layer and every service, over TLS when
/// `tls` is set.
fn serve_grpc(
    config: &Config,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    observe: bool,
    apis: Apis,
) -> Result<Served<tonic::transport::Error>, AppError> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let limit = config.max_message_bytes;
    macro_rules! limited {
        ($server:ident, $api:expr) => {
            $server::new($api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit)
        };
    }
    let Apis {
        vault,
        keys,
        audit,
        connect,
        external_auth,
        health,
        stop,
    } = apis;
    let router = grpc_server(config, observe)
        .layer(Observed::layer(observe.then(|| vault.metrics().clone())))
        .layer(tower_layer::layer_fn(OversizeIsResourceExhausted))
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(limited!(
            CredentialServiceServer,
            CredentialApi::new(vault.clone())
        ))
        .add_service(limited!(
            AdminServiceServer,
            AdminApi::new(vault.clone(), keys)
        ))
        .add_service(limited!(
            AuditServiceServer,
            AuditApi::new(vault.clone(), audit)
        ))
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
            ProxyServiceServer,
            ProxyApi::new(Proxy::new(vault.clone()))
        ))
        .add_service(limited!(
            WebhookServiceServer,
            WebhookApi::new(vault.clone(), stop.clone(), config.watch_streams_per_tenant)
        ));
    let accepting = stop.clone();
    let drained = async move { stop.wait().await };
    Ok(match tls {
        Some(tls) => {
            let incoming = crate::tls::grpc_incoming(listener, tls, accepting);
            Box::pin(router.serve_with_incoming_shutdown(incoming, drained))
        }
        // TCP_NODELAY: without it a response larger than one segment waits for the
        // client's delayed ACK (~40 ms) under Nagle's algorithm.
        None => Box::pin(router.serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            drained,
        )),
    })
}

/// The gRPC server with the configuration's limits and, if `observe`, a span per RPC.
fn grpc_server(config: &Config, observe: bool) -> Server {
    let keepalive = (config.http2_keepalive_interval_secs > 0)
        .then(|| Duration::from_secs(config.http2_keepalive_interval_secs));
    Server::builder()
        .concurrency_limit_per_connection(config.grpc_concurrency_per_connection.max(1))
        .timeout(Duration::from_secs(config.request_timeout_secs.max(1)))
        .max_concurrent_streams(Some(config.max_concurrent_streams.max(1)))
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(Some(Duration::from_secs(
            config.http2_keepalive_timeout_secs.max(1),
        )))
        .trace_fn(move |request| {
            if observe {
                crate::grpc::observe::span(request)
            } else {
                tracing::Span::none()
            }
        })
}

/// The HTTP side: the pages (over TLS when `tls` is set) with `/healthz`, and
/// `/readyz` and `/metrics` on the metrics listener when there is one, else beside
/// the pages.
fn serve_pages_and_ops(
    (main, metrics): (TcpListener, Option<TcpListener>),
    tls: Option<Arc<Tls>>,
    page: crate::http::PageState,
    ops: crate::http::Ops,
    stop: &Shutdown,
) -> Served<std::io::Error> {
    let pages = crate::http::router(page).merge(crate::http::ops_health());
    let Some(metrics) = metrics else {
        let pages = pages.merge(crate::http::ops_router(ops));
        return serve_http(main, tls, pages, stop);
    };
    let ops = crate::http::ops_router(ops).merge(crate::http::ops_health());
    let (pages, ops) = (
        serve_http(main, tls, pages, stop),
        serve_http(metrics, None, ops, stop),
    );
    Box::pin(async move {
        let (pages, ops) = tokio::join!(pages, ops);
        pages.and(ops)
    })
}

/// An HTTP server on `listener` (over TLS when `tls` is set) until `stop`.
fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    router: axum::Router,
    stop: &Shutdown,
) -> Served<std::io::Error> {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let drained = {
        let stop = stop.clone();
        async move { stop.wait().await }
    };
    match tls {
        Some(tls) => {
            use axum::serve::ListenerExt;
            let listener = crate::tls::http_listener(listener, tls, stop.clone()).tap_io(|_| {});
            Box::pin(
                axum::serve(listener, app)
                    .with_graceful_shutdown(drained)
                    .into_future(),
            )
        }
        None => Box::pin(
            axum::serve(listener, app)
                .with_graceful_shutdown(drained)
                .into_future(),
        ),
    }
}

/// What health checking and `/readyz` report, kept together.
#[derive(Clone)]
struct Serving {
    health: tonic_health::server::HealthReporter,
    ready: Arc<AtomicBool>,
}

impl Serving {
    fn new() -> Self {
        Self {
            health: tonic_health::server::HealthReporter::new(),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sets every service's health status, and readiness with it.
    async fn report(&self, status: ServingStatus) {
        self.ready
            .store(status == ServingStatus::Serving, Ordering::Relaxed);
        for service in SERVICES {
            self.health.set_service_status(service, status).await;
        }
    }
}

/// Every service health checking reports on ("" is the server as a whole).
const SERVICES: [&str; 9] = [
    "",
    "credvault.v1.ConnectService",
    "credvault.v1.CredentialService",
    "credvault.v1.AdminService",
    "credvault.v1.ExternalAuthService",
    "credvault.v1.OAuthService",
    "credvault.v1.ProxyService",
    "credvault.v1.UserService",
    "credvault.v1.WebhookService",
];

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
async fn watch_storage(vault: Vault, serving: Serving, stop: Shutdown) {
    let mut up_before = true;
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
        if up != up_before {
            up_before = up;
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            serving.report(status).await;
            if up {
                tracing::info!("database reachable again: serving");
            } else {
                tracing::error!("database unreachable: health reports NOT_SERVING");
            }
        }
    }
}
