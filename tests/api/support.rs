//! The test app: the real server, in-process on port 0, on SQLite or PostgreSQL, with
//! a manual clock; clients are the generated gRPC clients.
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use credvault::clock::ManualClock;
use credvault::model::AuditRecord;
use credvault::proto::v1::{
    self as pb, admin_service_client::AdminServiceClient,
    credential_service_client::CredentialServiceClient, o_auth_service_client::OAuthServiceClient,
    webhook_service_client::WebhookServiceClient,
};
use credvault::service::audit::AuditLog;
use credvault::service::keys::lifecycle::KeyLifecycle;
use credvault::service::{Caller, NewToken, Vault};
use credvault::{App, Config};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{AnyPool, Connection, Executor, Row};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// 2026-01-01T00:00:00Z: where every test clock starts.
pub const T0: i64 = 1_767_225_600_000;

/// Key v1 and v2 in `CREDVAULT_MASTER_KEYS` form.
pub const KEY_V1: &str = "1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
pub const KEY_V2: &str = "2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

// ---------------------------------------------------------------- log capture

/// Everything the process logs, at trace level, for the canary tests.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

pub fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        // As in the binary with `otlp_endpoint` set: logs, and every span an
        // OpenTelemetry span (so trace context flows), here with no exporter.
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let provider = credvault::telemetry::provider(None).unwrap();
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::TRACE)
            .with(credvault::telemetry::layer(&provider))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            )
            .init();
        buffer
    })
}

// ---------------------------------------------------------------- databases

pub fn postgres_admin_url() -> String {
    std::env::var("CREDVAULT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A database of the test's own, removed when dropped.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres { name: String },
}

impl TestDb {
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(TestDb::Sqlite(tempfile::tempdir().unwrap())),
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let mut admin = match sqlx::AnyConnection::connect(&postgres_admin_url()).await {
                    Ok(c) => c,
                    Err(e) if !on_ci() => {
                        eprintln!(
                            "skipping a PostgreSQL test: {e} (set CI=true to make this fatal)"
                        );
                        return None;
                    }
                    Err(e) => panic!("PostgreSQL is required under CI=true: {e}"),
                };
                let name = format!("credvault_test_{}", uuid::Uuid::new_v4().simple());
                admin
                    .execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .unwrap();
                Some(TestDb::Postgres { name })
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}", self.sqlite_file(dir).display()),
            TestDb::Postgres { name } => {
                let admin = postgres_admin_url();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
        }
    }

    fn sqlite_file(&self, dir: &tempfile::TempDir) -> std::path::PathBuf {
        dir.path().join("vault.db")
    }

    /// The SQLite database file and its WAL, as bytes (empty for PostgreSQL).
    pub fn sqlite_files(&self) -> Vec<Vec<u8>> {
        match self {
            TestDb::Sqlite(dir) => {
                let db = self.sqlite_file(dir);
                let wal = db.with_extension("db-wal");
                [db, wal]
                    .iter()
                    .filter_map(|p| std::fs::read(p).ok())
                    .collect()
            }
            TestDb::Postgres { .. } => Vec::new(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name } = self {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            // Drop runs inside the test's runtime; a thread of its own may block.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut admin) = sqlx::AnyConnection::connect(&postgres_admin_url()).await
                    {
                        let _ = admin.execute(sql.as_str()).await;
                    }
                });
            })
            .join();
        }
    }
}

// ---------------------------------------------------------------- clients

/// Adds a fixed `authorization` value (or none) to every call.
#[derive(Clone)]
pub struct AuthHeader(Option<String>);

impl AuthHeader {
    /// `authorization: Bearer <token>`.
    pub fn bearer(token: &SecretString) -> Self {
        Self(Some(format!("Bearer {}", token.expose_secret())))
    }
}

impl Interceptor for AuthHeader {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        Ok(req)
    }
}

pub type Client = CredentialServiceClient<InterceptedService<Channel, AuthHeader>>;
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, AuthHeader>>;
pub type AuditClient = credvault::proto::v1::audit_service_client::AuditServiceClient<
    InterceptedService<Channel, AuthHeader>,
>;
pub type OAuthClient = OAuthServiceClient<InterceptedService<Channel, AuthHeader>>;
pub type WebhookClient = WebhookServiceClient<InterceptedService<Channel, AuthHeader>>;
pub type ConnectClient = credvault::proto::v1::connect_service_client::ConnectServiceClient<
    InterceptedService<Channel, AuthHeader>,
>;
pub type UserClient = credvault::proto::v1::user_service_client::UserServiceClient<
    InterceptedService<Channel, AuthHeader>,
>;
pub type AuthClient = credvault::proto::v1::external_auth_service_client::ExternalAuthServiceClient<
    InterceptedService<Channel, AuthHeader>,
>;
pub type ProxyClient = credvault::proto::v1::proxy_service_client::ProxyServiceClient<
    InterceptedService<Channel, AuthHeader>,
>;

/// A ProxyService client of the instance at `addr`.
pub async fn proxy_at(addr: std::net::SocketAddr, token: &SecretString) -> ProxyClient {
    let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
    credvault::proto::v1::proxy_service_client::ProxyServiceClient::with_interceptor(
        channel(addr).await,
        header,
    )
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A credential client for the instance at `addr`.
pub async fn client_at(addr: std::net::SocketAddr, token: &SecretString) -> Client {
    let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
    CredentialServiceClient::with_interceptor(channel(addr).await, header)
}

/// A browser that does not follow redirects: the status and `Location` of a GET.
pub async fn browse(url: &str) -> (u16, Option<String>) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(url).send().await.unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), location)
}

/// A tenant with a token holding every credential and provider scope.
pub struct TestTenant {
    pub id: String,
    pub token: SecretString,
}

// ---------------------------------------------------------------- the app

pub struct TestApp {
    pub backend: Backend,
    pub clock: ManualClock,
    pub vault: Vault,
    /// The running server's key lifecycle (beat it by hand: heartbeats run on real time).
    pub key_lifecycle: Arc<KeyLifecycle>,
    /// The running server's audit log (its chain job is off: run it by hand).
    pub audit: Arc<AuditLog>,
    pub db: TestDb,
    pub addr: std::net::SocketAddr,
    pub http_addr: std::net::SocketAddr,
    /// `metrics_listen`'s address, when the test configured one.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub admin_token: SecretString,
    pub keys: String,
    tweak: Tweak,
    raw: AnyPool,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Another instance of the vault on the same database (a replica).
pub struct Peer {
    pub vault: Vault,
    pub keys: Arc<KeyLifecycle>,
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Running {
    vault: Vault,
    keys: Arc<KeyLifecycle>,
    audit: Arc<AuditLog>,
    addr: std::net::SocketAddr,
    http_addr: std::net::SocketAddr,
    metrics_addr: Option<std::net::SocketAddr>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

/// Starts an app, or `None` for PostgreSQL when it is unreachable outside CI.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |c| c).await
}

/// Like [`spawn_app`], with the configuration changed by `tweak`.
pub async fn spawn_app_with(backend: Backend, tweak: Tweak) -> Option<TestApp> {
    logs();
    let db = TestDb::create(backend).await?;
    let clock = ManualClock::new(T0);
    let Running {
        vault,
        keys: key_lifecycle,
        audit,
        addr,
        http_addr,
        metrics_addr,
        stop,
        server,
    } = start(&db, KEY_V1, &clock, tweak).await;
    let (_, admin_token) = vault
        .bootstrap()
        .await
        .unwrap()
        .expect("a new vault bootstraps");
    sqlx::any::install_default_drivers();
    let raw = AnyPool::connect(&db.url()).await.unwrap();
    Some(TestApp {
        backend,
        clock,
        vault,
        key_lifecycle,
        audit,
        db,
        addr,
        http_addr,
        metrics_addr,
        admin_token,
        keys: KEY_V1.into(),
        tweak,
        raw,
        stop: Some(stop),
        server: Some(server),
    })
}

/// Changes a test app's configuration before it starts.
pub type Tweak = fn(Config) -> Config;

async fn start(db: &TestDb, keys: &str, clock: &ManualClock, tweak: Tweak) -> Running {
    let config = test_config(db, keys, tweak);
    let app = App::build_with_clock(&config, Arc::new(clock.clone()))
        .await
        .unwrap();
    let vault = app.vault().clone();
    let keys = app.keys().clone();
    let audit = app.audit().clone();
    let addr = app.grpc_addr();
    let http_addr = app.http_addr();
    let metrics_addr = app.metrics_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        vault,
        keys,
        audit,
        addr,
        http_addr,
        metrics_addr,
        stop,
        server,
    }
}

/// The configuration tests run with, on `db` with `keys`, changed by `tweak`.
pub fn test_config(db: &TestDb, keys: &str, tweak: Tweak) -> Config {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(db.url()),
        master_keys: Some(SecretString::from(keys.to_owned())),
        max_connections: 4,
        http_listen: "127.0.0.1:0".parse().unwrap(),
        allow_http_urls: true,
        // Tests run refresh, scan, delivery and retention passes themselves, on the
        // manual clock.
        refresher_interval_secs: 0,
        scan_interval_secs: 0,
        retention_interval_secs: 0,
        rewrap_interval_secs: 0,
        audit_chain_interval_ms: 0,
        deliver_interval_ms: 0,
        provider_timeout_secs: 1,
        webhook_timeout_secs: 1,
        webhook_retry_schedule_secs: vec![0, 5, 60, 60],
        webhook_allow_private_addresses: true,
        provider_allow_private_addresses: true,
        shutdown_grace_secs: 5,
        // Page tests post many times from one address; one test turns the limit on.
        connect_rate_limit_per_minute: 0,
        http_rate_limit_per_minute: 0,
        token_rate_limit_per_sec: 0,
        connect_verify_timeout_secs: 1,
        ..Config::default()
    };
    tweak(config)
}

impl TestApp {
    /// Stops the server and starts a new one on the same database with `keys`.
    pub async fn restart_with_keys(&mut self, keys: &str) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        let Running {
            vault,
            keys: key_lifecycle,
            audit,
            addr,
            http_addr,
            metrics_addr,
            stop,
            server,
        } = start(&self.db, keys, &self.clock, self.tweak).await;
        self.vault = vault;
        self.key_lifecycle = key_lifecycle;
        self.audit = audit;
        self.addr = addr;
        self.http_addr = http_addr;
        self.metrics_addr = metrics_addr;
        self.keys = keys.into();
        self.stop = Some(stop);
        self.server = Some(server);
    }

    /// Stops the server, replaces its SQLite database with the file `backup` (into an
    /// otherwise empty directory: no WAL, no shared memory left), and starts it again.
    pub async fn restore_sqlite_from(&mut self, backup: &std::path::Path) {
        self.shutdown().await;
        self.raw.close().await;
        let TestDb::Sqlite(dir) = &self.db else {
            panic!("restore_sqlite_from needs SQLite")
        };
        let db = self.db.sqlite_file(dir);
        for file in [
            db.with_extension("db-wal"),
            db.with_extension("db-shm"),
            db.clone(),
        ] {
            let _ = std::fs::remove_file(file);
        }
        std::fs::copy(backup, &db).unwrap();
        self.raw = AnyPool::connect(&self.db.url()).await.unwrap();
        let keys = self.keys.clone();
        self.restart_with_keys(&keys).await;
    }

    /// Signals shutdown and waits for the server to finish; returns how long it took.
    pub async fn shutdown(&mut self) -> std::time::Duration {
        let started = std::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        started.elapsed()
    }

    /// Another vault instance on the same database and clock.
    pub async fn spawn_peer(&self) -> Peer {
        self.spawn_peer_with_keys(&self.keys).await
    }

    /// A replica on the same database and clock whose keyring holds `keys`.
    pub async fn spawn_peer_with_keys(&self, keys: &str) -> Peer {
        let running = start(&self.db, keys, &self.clock, self.tweak).await;
        Peer {
            vault: running.vault,
            keys: running.keys,
            addr: running.addr,
            stop: Some(running.stop),
        }
    }

    async fn channel(&self) -> Channel {
        channel(self.addr).await
    }

    pub async fn webhooks(&self, token: &SecretString) -> WebhookClient {
        let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
        WebhookServiceClient::with_interceptor(self.channel().await, header)
    }

    pub async fn connect(&self, token: &SecretString) -> ConnectClient {
        let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
        credvault::proto::v1::connect_service_client::ConnectServiceClient::with_interceptor(
            self.channel().await,
            header,
        )
    }

    pub async fn users(&self, token: &SecretString) -> UserClient {
        let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
        credvault::proto::v1::user_service_client::UserServiceClient::with_interceptor(
            self.channel().await,
            header,
        )
    }

    pub async fn external_auth(&self, token: &SecretString) -> AuthClient {
        let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
        credvault::proto::v1::external_auth_service_client::ExternalAuthServiceClient::with_interceptor(self.channel().await, header)
    }

    pub async fn oauth(&self, token: &SecretString) -> OAuthClient {
        let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
        OAuthServiceClient::with_interceptor(self.channel().await, header)
    }

    /// A client sending exactly this `authorization` value, or none.
    pub async fn client_with_header(&self, header: Option<&str>) -> Client {
        CredentialServiceClient::with_interceptor(
            self.channel().await,
            AuthHeader(header.map(str::to_owned)),
        )
    }

    pub async fn client(&self, token: &SecretString) -> Client {
        client_at(self.addr, token).await
    }

    pub async fn admin(&self, token: &SecretString) -> AdminClient {
        let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
        AdminServiceClient::with_interceptor(self.channel().await, header)
    }

    pub async fn audit_client(&self, token: &SecretString) -> AuditClient {
        let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
        credvault::proto::v1::audit_service_client::AuditServiceClient::with_interceptor(
            self.channel().await,
            header,
        )
    }

    pub async fn health(&self) -> tonic_health::pb::health_client::HealthClient<Channel> {
        tonic_health::pb::health_client::HealthClient::new(self.channel().await)
    }

    /// A new tenant with a read/write/reveal token.
    pub async fn tenant(&self, name: &str) -> TestTenant {
        let tenant = self
            .vault
            .create_tenant(&Caller::operator(), name)
            .await
            .unwrap();
        let scopes = [
            "credentials:read",
            "credentials:write",
            "credentials:reveal",
            "credentials:proxy",
            "providers:read",
            "providers:write",
            "webhooks:read",
            "webhooks:write",
            "connect:read",
            "connect:write",
            "users:read",
            "users:write",
            "auth:admin",
            "auth:login",
        ]
        .map(String::from);
        let token = self
            .mint(&tenant.id, scopes.to_vec(), Default::default())
            .await;
        TestTenant {
            id: tenant.id,
            token,
        }
    }

    /// A token of the tenant `tenant_id` with these scopes, minted by the operator.
    async fn mint(
        &self,
        tenant_id: &str,
        scopes: Vec<String>,
        constraints: credvault::model::Constraints,
    ) -> SecretString {
        self.vault
            .create_token(
                &Caller::operator(),
                NewToken {
                    tenant: tenant_id.to_owned(),
                    scopes,
                    description: "test".into(),
                    expires_at: None,
                    constraints,
                },
            )
            .await
            .unwrap()
            .1
    }

    /// A token of `tenant` with only these scopes.
    pub async fn token(&self, tenant: &TestTenant, scopes: &[&str]) -> SecretString {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.mint(&tenant.id, scopes, Default::default()).await
    }

    /// A token of `tenant` with these scopes, limited to `constraints`.
    pub async fn constrained_token(
        &self,
        tenant: &TestTenant,
        scopes: &[&str],
        constraints: credvault::model::Constraints,
    ) -> SecretString {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.mint(&tenant.id, scopes, constraints).await
    }

    /// One sealed value in each column besides credentials: a provider client secret,
    /// a webhook secret (rotated, so its previous one too) and the connect signing
    /// secret.
    pub async fn seal_one_of_each(&self, t: &TestTenant) {
        self.oauth(&t.token)
            .await
            .create_provider(pb::CreateProviderRequest {
                slug: "crm".into(),
                client_id: "client".into(),
                client_secret: "client-secret".into(),
                authorization_url: "https://auth.example/authorize".into(),
                token_url: "https://auth.example/token".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut hooks = self.webhooks(&t.token).await;
        let endpoint = hooks
            .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
                url: "http://127.0.0.1:9/in".into(),
                event_types: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .endpoint
            .unwrap();
        hooks
            .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
                id: endpoint.id,
                ..Default::default()
            })
            .await
            .unwrap();
        let tenant_admin = self.token(t, &["tenant:admin"]).await;
        self.connect(&tenant_admin)
            .await
            .rotate_connect_secret(pb::RotateConnectSecretRequest {
                overlap_seconds: None,
            })
            .await
            .unwrap();
    }

    // ------------------------------------------------------------ raw SQL

    pub async fn blob(&self, id: &str) -> Option<Vec<u8>> {
        sqlx::query_scalar("SELECT secret FROM credentials WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.raw)
            .await
            .unwrap()
    }

    /// The tenant's sealed key, if it has one.
    pub async fn tenant_key_blob(&self, tenant_id: &str) -> Option<Vec<u8>> {
        sqlx::query_scalar("SELECT sealed FROM tenant_keys WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.raw)
            .await
            .unwrap()
    }

    pub async fn set_tenant_key_blob(&self, tenant_id: &str, blob: &[u8]) {
        self.set_one(
            "UPDATE tenant_keys SET sealed = $1 WHERE tenant_id = $2",
            blob,
            tenant_id,
        )
        .await;
    }

    pub async fn set_blob(&self, id: &str, blob: &[u8]) {
        self.set_one("UPDATE credentials SET secret = $1 WHERE id = $2", blob, id)
            .await;
    }

    /// Runs an `UPDATE` of one row's blob (`$1`) by its key (`$2`).
    async fn set_one(&self, sql: &str, blob: &[u8], key: &str) {
        let done = sqlx::query(sql)
            .bind(blob)
            .bind(key)
            .execute(&self.raw)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }

    /// Everything the database holds, as bytes to search: the SQLite file and its WAL,
    /// or on PostgreSQL every row of every table as text.
    pub async fn database_dump(&self) -> Vec<u8> {
        if self.backend == Backend::Sqlite {
            return self.db.sqlite_files().concat();
        }
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&self.raw)
        .await
        .unwrap();
        let mut dump = Vec::new();
        for table in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT CAST(t AS TEXT) FROM {table} t"))
                    .fetch_all(&self.raw)
                    .await
                    .unwrap();
            for row in rows {
                dump.extend_from_slice(row.as_bytes());
                dump.push(b'\n');
            }
        }
        dump
    }

    /// The raw connection pool, as someone with database access holds it.
    pub fn raw(&self) -> &AnyPool {
        &self.raw
    }

    /// Runs `sql` with text parameters, as someone with database access would.
    pub async fn execute(&self, sql: &str, params: &[&str]) -> u64 {
        let query = params.iter().fold(sqlx::query(sql), |q, p| q.bind(*p));
        query.execute(&self.raw).await.unwrap().rows_affected()
    }

    /// The stored key check value of master key `version`.
    pub async fn key_check(&self, version: i64) -> Vec<u8> {
        sqlx::query_scalar("SELECT check_value FROM key_checks WHERE version = $1")
            .bind(version)
            .fetch_one(&self.raw)
            .await
            .unwrap()
    }

    pub async fn set_key_check(&self, version: i64, value: &[u8]) {
        sqlx::query("UPDATE key_checks SET check_value = $1 WHERE version = $2")
            .bind(value)
            .bind(version)
            .execute(&self.raw)
            .await
            .unwrap();
    }

    /// The sealed client secret of every provider (one expected), and its id.
    pub async fn provider_secret(&self) -> (String, Vec<u8>) {
        sqlx::query_as("SELECT id, client_secret FROM oauth_providers")
            .fetch_one(&self.raw)
            .await
            .unwrap()
    }

    pub async fn set_provider_secret(&self, blob: &[u8]) {
        sqlx::query("UPDATE oauth_providers SET client_secret = $1")
            .bind(blob)
            .execute(&self.raw)
            .await
            .unwrap();
    }

    pub async fn count(&self, sql: &str, id: &str) -> i64 {
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&self.raw)
            .await
            .unwrap()
    }

    /// SQLite's own consistency check of the database file.
    pub async fn integrity_check(&self) -> String {
        sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&self.raw)
            .await
            .unwrap()
    }

    /// A tenant's audit records as stored, in sequence order.
    pub async fn audit_rows(&self, tenant_id: &str) -> Vec<AuditRecord> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, at, actor, action, credential_id, user_id, request_id, \
             source, outcome, detail, seq, prev_hash, hash FROM audit_log \
             WHERE tenant_id = $1 ORDER BY seq",
        )
        .bind(tenant_id)
        .fetch_all(&self.raw)
        .await
        .unwrap();
        rows.iter()
            .map(|r| AuditRecord {
                id: r.get("id"),
                tenant_id: r.get("tenant_id"),
                at: r.get("at"),
                actor: r.get("actor"),
                action: r.get("action"),
                credential_id: r.get("credential_id"),
                user_id: r.get("user_id"),
                request_id: r.get("request_id"),
                source: r.get("source"),
                outcome: r.get("outcome"),
                detail: r.get("detail"),
                seq: r.get("seq"),
                prev_hash: r.get("prev_hash"),
                hash: r.get("hash"),
            })
            .collect()
    }

    /// Inserts an audit record at `r.seq` with the given links, as a forger would.
    pub async fn insert_audit_row(&self, r: &AuditRecord, prev: &[u8], hash: &[u8]) {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, at, actor, action, credential_id, user_id, \
             request_id, source, outcome, detail, seq, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&r.tenant_id)
        .bind(r.at)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.credential_id)
        .bind(&r.user_id)
        .bind(&r.request_id)
        .bind(&r.source)
        .bind(&r.outcome)
        .bind(&r.detail)
        .bind(r.seq)
        .bind(prev)
        .bind(hash)
        .execute(&self.raw)
        .await
        .unwrap();
    }

    /// Rewrites record `r.seq`'s action and links (and the head, if it is the
    /// last), as someone recomputing the chain would.
    pub async fn rewrite_audit_row(&self, r: &AuditRecord, prev: &[u8], hash: &[u8]) {
        sqlx::query(
            "UPDATE audit_log SET action = $1, prev_hash = $2, hash = $3 \
             WHERE tenant_id = $4 AND seq = $5",
        )
        .bind(&r.action)
        .bind(prev)
        .bind(hash)
        .bind(&r.tenant_id)
        .bind(r.seq)
        .execute(&self.raw)
        .await
        .unwrap();
        sqlx::query("UPDATE audit_heads SET hash = $1 WHERE tenant_id = $2 AND seq = $3")
            .bind(hash)
            .bind(&r.tenant_id)
            .bind(r.seq)
            .execute(&self.raw)
            .await
            .unwrap();
    }

    /// Rows in a table, to prove a failed request wrote nothing.
    pub async fn rows(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.raw)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Runs each test body once on SQLite and once on PostgreSQL; `tweak = f;` first
/// changes the configuration of both.
#[macro_export]
macro_rules! both_backends {
    (tweak = $tweak:expr; $(async fn $name:ident($app:ident) $body:block)*) => {
        $(mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                #[allow(unused_mut)]
                let mut $app = $crate::support::spawn_app_with($crate::support::Backend::Sqlite, $tweak).await.unwrap();
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                #[allow(unused_mut)]
                let Some(mut $app) = $crate::support::spawn_app_with($crate::support::Backend::Postgres, $tweak).await else {
                    return;
                };
                $body
            }
        })*
    };
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        $crate::both_backends! { tweak = |c| c; $(async fn $name($app) $body)* }
    };
}

/// An ExternalAuthService client of the server at `addr` (a peer replica's).
pub async fn external_auth_at(addr: std::net::SocketAddr, token: &SecretString) -> AuthClient {
    let header = AuthHeader(Some(format!("Bearer {}", token.expose_secret())));
    credvault::proto::v1::external_auth_service_client::ExternalAuthServiceClient::with_interceptor(
        channel(addr).await,
        header,
    )
}

/// Waits (in real time, at most 10 s) for `done`: for work another task does on its
/// own schedule, such as a listener hearing a notification.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
