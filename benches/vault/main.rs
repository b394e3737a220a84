//! credvault's benchmark: the real server in-process on SQLite and PostgreSQL, driven
//! over gRPC on loopback, every figure also given as a ratio to a baseline measured in
//! the same run (these machines are shared and noisy).
//!
//! ```sh
//! cargo bench --bench vault                         # both backends, print the table
//! cargo bench --bench vault -- --write              # …and rewrite docs/benchmarks.md + .svg
//! cargo bench --bench vault -- --backend sqlite --requests 5000 --seconds 10
//! cargo bench --bench vault -- --backend sqlite --rpc reveal      # one RPC (for profiling)
//! cargo bench --bench vault -- --rpc check,authenticate           # some RPCs, with the baseline
//! cargo bench --bench vault -- --overheads                        # what TLS, metrics and spans cost
//! cargo bench --bench vault -- --overheads --otel                 # …with OpenTelemetry spans on
//! cargo bench --bench vault -- --rewrap --count 100000             # rewrap alone and under reveals
//! cargo bench --bench vault -- --crypto                             # open/seal per format, no server
//! cargo bench --bench vault -- --rpc check,floor --floor-on-caller  # the floor read without sqlx's thread hop
//! ```
//!
//! Baselines: the health `Check` RPC (the same server's cheapest call) for every RPC,
//! raw sqlx statements of the same row size for the store, and the floor (`floor.rs`):
//! a minimal gRPC handler doing one typed point read of a sealed credential on the same
//! database, the least a reveal could cost. `Authenticate` and `ProxyService.Call`
//! run against an in-process fake endpoint (a customer's auth system, a provider's
//! API) that times its own handler; the "vault overhead" rows are each call's total
//! minus that endpoint time.
mod floor;

/// The allocator the `credvault` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credvault::clock::SystemClock;
use credvault::model::SecretPayload;
use credvault::proto::v1::{
    self as pb, credential_service_client::CredentialServiceClient,
    external_auth_service_client::ExternalAuthServiceClient,
    o_auth_service_client::OAuthServiceClient, proxy_service_client::ProxyServiceClient,
    user_service_client::UserServiceClient,
};
use credvault::service::{Caller, NewCredential};
use credvault::{App, Config};
use hdrhistogram::Histogram;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{AnyPool, Connection, Executor};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const KEYS: &str = "1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_2: &str = "2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const SEEDED: usize = 1000;
const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 64;
/// The server's database connections (SQLite: readers), and the floor's;
/// `--readers N` changes it.
fn readers() -> u32 {
    arg("--readers").and_then(|v| v.parse().ok()).unwrap_or(16)
}
/// Credentials the scanner moves per transaction (the server's default).
const SCAN_BATCH: u32 = credvault::app::SCAN_BATCH;

#[derive(Clone)]
struct Bearer(SecretString);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {}", self.0.expose_secret())
            .parse()
            .expect("ASCII token");
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// One connection's clients.
#[derive(Clone)]
struct Clients {
    creds: CredentialServiceClient<Authed>,
    health: tonic_health::pb::health_client::HealthClient<Channel>,
    auth: ExternalAuthServiceClient<Authed>,
    proxy: ProxyServiceClient<Authed>,
    /// The floor's client, when the server has one.
    floor: Option<tonic_health::pb::health_client::HealthClient<Channel>>,
}

/// Users the Authenticate calls sign in as.
const AUTH_USERS: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rpc {
    Check,
    Floor,
    Create,
    Reveal,
    List,
    Authenticate,
    Proxy,
}

impl Rpc {
    const ALL: [Rpc; 7] = [
        Rpc::Check,
        Rpc::Floor,
        Rpc::Create,
        Rpc::Reveal,
        Rpc::List,
        Rpc::Authenticate,
        Rpc::Proxy,
    ];

    /// Whether its rows include the vault's share (total minus the endpoint's time).
    fn has_endpoint(self) -> bool {
        matches!(self, Rpc::Authenticate | Rpc::Proxy)
    }

    fn name(self) -> &'static str {
        match self {
            Rpc::Check => "health Check (baseline)",
            Rpc::Floor => "floor: gRPC + typed point read",
            Rpc::Create => "CreateCredential",
            Rpc::Reveal => "RevealCredential",
            Rpc::List => "ListCredentials (50)",
            Rpc::Authenticate => "Authenticate (total)",
            Rpc::Proxy => "ProxyService.Call (total)",
        }
    }
}

/// One row of the results table.
struct Row {
    backend: &'static str,
    what: String,
    mode: &'static str,
    p50_us: u64,
    p99_us: u64,
    per_sec: f64,
}

struct Server {
    addr: std::net::SocketAddr,
    /// The CA to trust when the server speaks TLS.
    tls_ca: Option<String>,
    token: SecretString,
    ids: Vec<String>,
    /// The connector the Authenticate calls go through.
    connector: String,
    /// The fake auth endpoint's handler time per call (by call number), in µs.
    endpoint: Endpoint,
    database_url: String,
    /// The floor's address, once the seeded credentials exist.
    floor: Option<std::net::SocketAddr>,
    _dir: tempfile::TempDir,
    drop_db: Option<String>,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn postgres_admin() -> String {
    std::env::var("CREDVAULT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// How a benchmarked server differs from the default one.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Variant {
    tls: bool,
    /// Master keys 1 and 2 (1 active), for the rewrap runs.
    rotating: bool,
    /// Without RPC metrics and the per-RPC span.
    bare: bool,
    /// With the audit chain job off (it runs every second by default).
    unchained: bool,
}

async fn start(backend: &'static str) -> Server {
    start_variant(backend, Variant::default()).await
}

async fn start_variant(backend: &'static str, variant: Variant) -> Server {
    let (mut server, vault) = start_empty(backend, variant).await;
    let caller = Caller {
        tenant_id: vault.list_tenants(1, "").await.unwrap().items[0].id.clone(),
        token_id: "bench".into(),
        ..Caller::default()
    };
    for i in 0..SEEDED {
        let new = NewCredential {
            user_id: format!("seed-user-{}", i % 20),
            name: format!("seeded {i}"),
            provider: "stripe".into(),
            secret: Some(SecretPayload::ApiKey {
                key: format!("sk_live_{i:040}"),
            }),
            ..NewCredential::default()
        };
        server.ids.push(
            vault
                .create_credential(&caller, new)
                .await
                .expect("seed")
                .id,
        );
    }
    server.connector = auth_setup(&server).await;
    proxy_setup(&server).await;
    let on_caller_thread = flag("--floor-on-caller");
    server.floor = Some(
        floor::start(
            &server.database_url,
            caller.tenant_id,
            readers(),
            on_caller_thread,
        )
        .await,
    );
    server
}

/// A fake customer auth endpoint: answers every login 200 with a user id, and
/// records how long its handler took for each call (the `call` field it is sent).
#[derive(Clone, Default)]
struct Endpoint {
    url: String,
    took_us: Arc<Mutex<HashMap<u64, u64>>>,
}

impl Endpoint {
    async fn start() -> Self {
        use axum::routing::post;
        let took_us: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
        let seen = took_us.clone();
        let api_seen = took_us.clone();
        let app = axum::Router::new().route(
            "/api/{*rest}",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let seen = api_seen.clone();
                async move {
                    let started = Instant::now();
                    let call = headers
                        .get("x-call")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let answer = r#"{"object":"list","data":[],"has_more":false}"#;
                    seen.lock().unwrap().insert(call, micros(started.elapsed()));
                    ([("content-type", "application/json")], answer)
                }
            }),
        );
        let app = app.route(
            "/login",
            post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let started = Instant::now();
                    let login: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let call = login["call"]
                        .as_str()
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    let answer = format!(
                        "{{\"id\":\"ext-{}\"}}",
                        login["email"].as_str().unwrap_or("")
                    );
                    seen.lock().unwrap().insert(call, micros(started.elapsed()));
                    ([("content-type", "application/json")], answer)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, took_us }
    }

    /// The handler time of call `n`, once.
    fn took(&self, n: u64) -> u64 {
        self.took_us
            .lock()
            .unwrap()
            .remove(&n)
            .expect("the endpoint saw the call")
    }
}

/// Registers the users and creates the connector (JSON, the call number passed in
/// `{{DEVICENAME}}`) the Authenticate calls use; returns its id.
async fn auth_setup(server: &Server) -> String {
    let channel = channel(server).await;
    let bearer = Bearer(server.token.clone());
    let mut users = UserServiceClient::with_interceptor(channel.clone(), bearer.clone());
    for i in 0..AUTH_USERS {
        users
            .register_user(pb::RegisterUserRequest {
                user_id: format!("auth-user-{i}"),
                email: format!("auth-user-{i}@example.com"),
                external_id: String::new(),
            })
            .await
            .expect("register");
    }
    let connector = pb::Connector {
        name: "bench".into(),
        authentication: Some(pb::LoginRequestTemplate {
            url: format!("{}/login", server.endpoint.url),
            method: "POST".into(),
            format: pb::BodyFormat::Json.into(),
            body:
                r#"{"email":"{{USEREMAIL}}","password":"{{USERPASSWORD}}","call":"{{DEVICENAME}}"}"#
                    .into(),
            ..Default::default()
        }),
        allow_private_network: true,
        ..Default::default()
    };
    ExternalAuthServiceClient::with_interceptor(channel, bearer)
        .create_connector(pb::CreateConnectorRequest {
            connector: Some(connector),
        })
        .await
        .expect("connector")
        .into_inner()
        .id
}

/// Registers the seeded credentials' provider (`stripe`, API keys) with its API at
/// the fake endpoint, for the proxy calls.
async fn proxy_setup(server: &Server) {
    let mut oauth =
        OAuthServiceClient::with_interceptor(channel(server).await, Bearer(server.token.clone()));
    oauth
        .create_provider(pb::CreateProviderRequest {
            slug: "stripe".into(),
            auth_mode: pb::AuthMode::ApiKey.into(),
            allow_private_network: true,
            api: Some(pb::ProviderApi {
                base_url: format!("{}/api", server.endpoint.url),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("provider");
}

async fn drop_database(server: &Server) {
    if let Some(name) = &server.drop_db
        && let Ok(mut admin) = sqlx::AnyConnection::connect(&postgres_admin()).await
    {
        let _ = admin
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}

/// A server on a fresh database with a bootstrapped tenant and token.
async fn start_empty(
    backend: &'static str,
    variant: Variant,
) -> (Server, credvault::service::Vault) {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, drop_db) = if backend == "sqlite" {
        (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            None,
        )
    } else {
        let name = format!("credvault_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::AnyConnection::connect(&postgres_admin())
            .await
            .expect("PostgreSQL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let base = postgres_admin()
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or_default();
        (format!("{base}/{name}"), Some(name))
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(database_url.clone()),
        master_keys: Some(SecretString::from(if variant.rotating {
            format!("{KEYS},{KEY_2}")
        } else {
            KEYS.to_owned()
        })),
        refresher_interval_secs: 0,
        rewrap_interval_secs: 0,
        audit_chain_interval_ms: if variant.unchained { 0 } else { 1000 },
        active_key_version: Some(1),
        scan_interval_secs: 0,
        allow_http_urls: true,
        deliver_interval_ms: 0,
        max_connections: readers(),
        // One token drives every call: the benchmark measures the server, not the limit.
        token_rate_limit_per_sec: 0,
        ..Config::default()
    };
    let (config, tls_ca) = with_tls(config, variant.tls, dir.path());
    let mut app = App::build_with_clock(&config, Arc::new(SystemClock))
        .await
        .expect("app");
    if variant.bare {
        app = app.without_observability();
    }
    let vault = app.vault().clone();
    let addr = app.grpc_addr();
    tokio::spawn(app.run(std::future::pending()));
    let (_, token) = vault
        .bootstrap()
        .await
        .expect("bootstrap")
        .expect("fresh vault");
    let server = Server {
        addr,
        tls_ca,
        token,
        ids: Vec::new(),
        connector: String::new(),
        endpoint: Endpoint::start().await,
        database_url,
        floor: None,
        _dir: dir,
        drop_db,
    };
    (server, vault)
}

/// A certificate for localhost from a new CA, written to `dir`, and the CA's PEM.
fn with_tls(mut config: Config, tls: bool, dir: &std::path::Path) -> (Config, Option<String>) {
    if !tls {
        return (config, None);
    }
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    config.tls_cert_file = Some(dir.join("server.pem"));
    config.tls_key_file = Some(dir.join("server.key"));
    (config, Some(ca.pem()))
}

async fn channel(server: &Server) -> Channel {
    let endpoint = match &server.tls_ca {
        Some(ca) => Channel::from_shared(format!("https://localhost:{}", server.addr.port()))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                    .domain_name("localhost"),
            )
            .unwrap(),
        None => Channel::from_shared(format!("http://{}", server.addr)).unwrap(),
    };
    endpoint.connect().await.unwrap()
}

async fn clients(server: &Server, n: usize) -> Vec<Clients> {
    let mut out = Vec::new();
    for _ in 0..n {
        let channel = channel(server).await;
        let bearer = Bearer(server.token.clone());
        let floor = match server.floor {
            Some(addr) => Some(tonic_health::pb::health_client::HealthClient::new(
                Channel::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
            )),
            None => None,
        };
        out.push(Clients {
            creds: CredentialServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            health: tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            auth: ExternalAuthServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            proxy: ProxyServiceClient::with_interceptor(channel, bearer),
            floor,
        });
    }
    out
}

/// Makes call `n` of `rpc`; for Authenticate, returns the endpoint's time in µs.
async fn call(rpc: Rpc, c: &mut Clients, server: &Target, n: usize) -> Option<u64> {
    let ok = match rpc {
        Rpc::Check => c
            .health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok(),
        Rpc::Floor => {
            let req = tonic_health::pb::HealthCheckRequest {
                service: server.ids[n % server.ids.len()].clone(),
            };
            let floor = c.floor.as_mut().expect("this server has a floor");
            floor.check(req).await.is_ok()
        }
        Rpc::Create => {
            let secret = pb::Secret {
                kind: Some(pb::secret::Kind::ApiKey(pb::ApiKeySecret {
                    key: format!("sk_live_{n:040}"),
                })),
            };
            let req = pb::CreateCredentialRequest {
                user_id: format!("user-{}", n % 100),
                name: "bench".into(),
                provider: "stripe".into(),
                secret: Some(secret),
                ..Default::default()
            };
            c.creds.create_credential(req).await.is_ok()
        }
        Rpc::Reveal => {
            let req = pb::RevealCredentialRequest {
                id: server.ids[n % server.ids.len()].clone(),
                request_id: String::new(),
            };
            c.creds.reveal_credential(req).await.is_ok()
        }
        Rpc::List => {
            let req = pb::ListCredentialsRequest {
                page_size: 50,
                ..Default::default()
            };
            c.creds.list_credentials(req).await.is_ok()
        }
        Rpc::Authenticate => {
            let req = pb::AuthenticateRequest {
                connector_id: server.connector.clone(),
                email: format!("auth-user-{}@example.com", n % AUTH_USERS),
                password: format!("pw-{n}"),
                device: Some(pb::Device {
                    os: "bench".into(),
                    name: n.to_string(),
                    ip: "203.0.113.7".into(),
                }),
                ..Default::default()
            };
            let outcome = c.auth.authenticate(req).await;
            assert!(
                outcome.as_ref().is_ok_and(|o| o.get_ref().authenticated),
                "Authenticate failed during the benchmark: {outcome:?}"
            );
            return Some(server.endpoint.took(n as u64));
        }
        Rpc::Proxy => {
            let req = pb::ProxyCallRequest {
                credential_id: server.ids[n % server.ids.len()].clone(),
                method: "GET".into(),
                path: "/v1/customers".into(),
                headers: vec![pb::HttpHeader {
                    name: "x-call".into(),
                    value: n.to_string(),
                }],
                ..Default::default()
            };
            let mut stream = c.proxy.call(req).await.expect("proxy call").into_inner();
            let mut status = 0;
            while let Some(m) = stream.message().await.expect("proxy answer") {
                status = status.max(m.status);
            }
            assert_eq!(status, 200, "the proxied call failed during the benchmark");
            return Some(server.endpoint.took(n as u64));
        }
    };
    assert!(ok, "{rpc:?} failed during the benchmark");
    None
}

/// What the calls need of the server (shared by the concurrent tasks).
struct Target {
    ids: Vec<String>,
    connector: String,
    endpoint: Endpoint,
}

impl Server {
    fn target(&self) -> Arc<Target> {
        Arc::new(Target {
            ids: self.ids.clone(),
            connector: self.connector.clone(),
            endpoint: self.endpoint.clone(),
        })
    }
}

/// Latencies of every call, and for Authenticate the vault's share of each.
struct Measured {
    total: Histogram<u64>,
    overhead: Histogram<u64>,
    per_sec: f64,
}

impl Measured {
    fn new() -> Self {
        Self {
            total: histogram(),
            overhead: histogram(),
            per_sec: 0.0,
        }
    }

    fn record(&mut self, took: Duration, endpoint_us: Option<u64>) {
        let total = micros(took);
        self.total.record(total).unwrap();
        if let Some(endpoint) = endpoint_us {
            self.overhead
                .record(total.saturating_sub(endpoint).max(1))
                .unwrap();
        }
    }

    fn add(&mut self, other: &Measured) {
        self.total.add(&other.total).unwrap();
        self.overhead.add(&other.overhead).unwrap();
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

async fn sequential(server: &Server, rpc: Rpc, requests: usize) -> Measured {
    let mut c = clients(server, 1).await.remove(0);
    let target = server.target();
    for n in 0..requests / 10 {
        call(rpc, &mut c, &target, n).await; // warm-up
    }
    let mut m = Measured::new();
    let start = Instant::now();
    for n in 0..requests {
        let t = Instant::now();
        let endpoint = call(rpc, &mut c, &target, 1_000_000 + n).await;
        m.record(t.elapsed(), endpoint);
    }
    m.per_sec = requests as f64 / start.elapsed().as_secs_f64();
    m
}

async fn concurrent(server: &Server, rpc: Rpc, seconds: u64) -> Measured {
    let pool = clients(server, CONNECTIONS).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|t| {
            let mut c = pool[t % CONNECTIONS].clone();
            let target = server.target();
            tokio::spawn(async move {
                let mut m = Measured::new();
                let mut n = 10_000_000 * (t + 1);
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let endpoint = call(rpc, &mut c, &target, n).await;
                    m.record(started.elapsed(), endpoint);
                    n += 1;
                }
                m
            })
        })
        .collect();
    let mut all = Measured::new();
    for task in tasks {
        all.add(&task.await.unwrap());
    }
    all.per_sec = all.total.len() as f64 / start.elapsed().as_secs_f64();
    all
}

/// Raw sqlx on the same database and settings: insert and point-select rows the size
/// of a sealed credential, one statement (one transaction) at a time.
async fn store_baseline(server: &Server, backend: &'static str, requests: usize) -> Vec<Row> {
    let pool = if backend == "sqlite" {
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;").await?;
                    Ok(())
                })
            })
            .connect(&server.database_url)
            .await
            .unwrap()
    } else {
        AnyPool::connect(&server.database_url).await.unwrap()
    };
    let blob_type = if backend == "sqlite" { "BLOB" } else { "BYTEA" };
    pool.execute(
        format!("CREATE TABLE bench_rows (id TEXT PRIMARY KEY, body {blob_type} NOT NULL)")
            .as_str(),
    )
    .await
    .unwrap();
    let body = vec![7u8; 140];
    let mut rows = Vec::new();
    for what in ["raw sqlx INSERT", "raw sqlx point SELECT"] {
        let mut h = histogram();
        let start = Instant::now();
        for n in 0..requests {
            let id = format!("row-{n:012}");
            let t = Instant::now();
            if what.ends_with("INSERT") {
                sqlx::query("INSERT INTO bench_rows (id, body) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(&body)
                    .execute(&pool)
                    .await
                    .unwrap();
            } else {
                let _: Vec<u8> = sqlx::query_scalar("SELECT body FROM bench_rows WHERE id = $1")
                    .bind(&id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            }
            h.record(micros(t.elapsed())).unwrap();
        }
        rows.push(Row {
            backend,
            what: what.into(),
            mode: "sequential",
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            per_sec: requests as f64 / start.elapsed().as_secs_f64(),
        });
    }
    rows
}

async fn bench_backend(backend: &'static str, requests: usize, seconds: u64) -> Vec<Row> {
    let server = start(backend).await;
    let mut rows = Vec::new();
    // `--rpc check,authenticate`: only the RPCs whose names contain one of these.
    let only: Option<Vec<String>> = arg("--rpc").map(|r| {
        r.to_ascii_lowercase()
            .split(',')
            .map(str::to_owned)
            .collect()
    });
    let chosen = Rpc::ALL.into_iter().filter(|r| {
        let name = r.name().to_ascii_lowercase();
        only.as_ref()
            .is_none_or(|o| o.iter().any(|part| name.contains(part.as_str())))
    });
    for rpc in chosen {
        if backend == "postgres" {
            // Statistics, as autovacuum would have gathered by now in a real deployment:
            // without them the planner sorts a whole tenant to list 50 credentials.
            let pool = AnyPool::connect(&server.database_url).await.unwrap();
            pool.execute("ANALYZE").await.unwrap();
        }
        let sequential = sequential(&server, rpc, requests).await;
        let concurrent = concurrent(&server, rpc, seconds).await;
        for (mode, m) in [("sequential", &sequential), ("64 in flight", &concurrent)] {
            let row = |what: &str, h: &Histogram<u64>| Row {
                backend,
                what: what.into(),
                mode,
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
                per_sec: m.per_sec,
            };
            rows.push(row(rpc.name(), &m.total));
            if rpc.has_endpoint() {
                let name = rpc.name().replace("(total)", "(vault overhead)");
                rows.push(row(&name, &m.overhead));
            }
        }
        eprintln!("{backend}: {} done", rpc.name());
    }
    rows.extend(store_baseline(&server, backend, requests).await);
    drop_database(&server).await;
    rows
}

/// `--overheads`: RevealCredential at 64 in flight on SQLite against three servers —
/// as shipped, with TLS, and without RPC metrics and spans — in interleaved rounds
/// (the machine is noisy), with the binary's subscriber: logs at `info` to nowhere,
/// and with `otel` every span an OpenTelemetry span too, as with `otlp_endpoint` set
/// (nothing exported here: the cost measured is making the spans).
async fn overheads(seconds: u64, otel: bool) -> Vec<String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let provider = credvault::telemetry::provider(None).unwrap();
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(otel.then(|| credvault::telemetry::layer(&provider)))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .try_init();
    let variants = [
        (
            "plaintext, metrics and spans (as shipped)",
            Variant::default(),
        ),
        (
            "TLS 1.3",
            Variant {
                tls: true,
                ..Variant::default()
            },
        ),
        (
            "plaintext, no metrics or RPC span",
            Variant {
                bare: true,
                ..Variant::default()
            },
        ),
    ];
    let mut servers = Vec::new();
    for (_, variant) in variants {
        servers.push(start_variant("sqlite", variant).await);
    }
    const ROUNDS: usize = 3;
    let mut rates = vec![Vec::new(); variants.len()];
    let mut p50s = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        for (i, server) in servers.iter().enumerate() {
            let m = concurrent(server, Rpc::Reveal, seconds).await;
            rates[i].push(m.per_sec);
            p50s[i].push(m.total.value_at_quantile(0.5));
        }
        eprintln!("overheads: round {} of {ROUNDS} done", round + 1);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let shipped = median(&mut rates[0].clone());
    let mut lines = vec![
        "| server | RevealCredential/s, 64 in flight (median of 3) | each round | p50 µs | vs as shipped |".to_owned(),
        "|---|---:|---|---:|---:|".to_owned(),
    ];
    for (i, (name, _)) in variants.iter().enumerate() {
        let rate = median(&mut rates[i].clone());
        let rounds: Vec<String> = rates[i].iter().map(|r| format!("{r:.0}")).collect();
        let mut p50 = p50s[i].clone();
        p50.sort_unstable();
        lines.push(format!(
            "| {name} | {rate:.0} | {} | {} | {:+.1} % |",
            rounds.join(", "),
            p50[p50.len() / 2],
            (rate / shipped - 1.0) * 100.0
        ));
    }
    for server in &servers {
        drop_database(server).await;
    }
    lines
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| backend | operation | mode | p50 µs | p99 µs | ops/s | p50 ÷ Check p50 | ops/s ÷ Check ops/s |\n\
         |---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.backend == r.backend && b.mode == r.mode && b.what.starts_with("health"))
            .or_else(|| {
                rows.iter()
                    .find(|b| b.backend == r.backend && b.what.starts_with("health"))
            });
        let (ratio_p50, ratio_ops) = base.map_or((f64::NAN, f64::NAN), |b| {
            (r.p50_us as f64 / b.p50_us as f64, r.per_sec / b.per_sec)
        });
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} |\n",
            r.backend, r.what, r.mode, r.p50_us, r.p99_us, r.per_sec, ratio_p50, ratio_ops
        );
    }
    out
}

/// Bars of sequential p50 (solid) and p99 (light) latency, log scale.
fn svg(rows: &[Row]) -> String {
    let seq: Vec<&Row> = rows.iter().filter(|r| r.mode == "sequential").collect();
    let (left, width, bar, gap) = (330.0, 520.0, 14.0, 10.0);
    let height = 40.0 + seq.len() as f64 * (2.0 * bar + gap);
    let max = seq.iter().map(|r| r.p99_us).max().unwrap_or(1).max(10) as f64;
    let x = |us: u64| (us.max(1) as f64).log10() / max.log10() * width;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"18\" font-weight=\"bold\">credvault sequential latency, µs (log scale): p50 dark, p99 light</text>\n",
        w = left + width + 90.0
    );
    for (i, r) in seq.iter().enumerate() {
        let y = 30.0 + i as f64 * (2.0 * bar + gap);
        out += &format!(
            "<text x=\"10\" y=\"{ty}\">{b}: {w}</text>\n\
             <rect x=\"{left}\" y=\"{y}\" width=\"{p99}\" height=\"{h2}\" fill=\"#9ecae1\"/>\n\
             <rect x=\"{left}\" y=\"{y}\" width=\"{p50}\" height=\"{bar}\" fill=\"#3182bd\"/>\n\
             <text x=\"{lx}\" y=\"{ty}\">{a} / {c}</text>\n",
            ty = y + bar,
            b = r.backend,
            w = r.what,
            p99 = x(r.p99_us),
            h2 = 2.0 * bar,
            p50 = x(r.p50_us),
            lx = left + x(r.p99_us) + 6.0,
            a = r.p50_us,
            c = r.p99_us,
        );
    }
    out + "</svg>\n"
}

/// Rows as the vault would store them (a random 140-byte ciphertext stand-in); the
/// first `due` lapsed an hour ago, the rest lapse in a year.
async fn bulk_seed(url: &str, tenant: &str, n: u64, due: u64, now: i64) {
    let pool = AnyPool::connect(url).await.unwrap();
    let sqlite = url.starts_with("sqlite:");
    let series = |count: u64| {
        if sqlite {
            format!(
                "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < {}) SELECT n FROM g",
                count - 1
            )
        } else {
            format!("SELECT generate_series(0, {}) AS n", count - 1)
        }
    };
    let blob = if sqlite {
        "randomblob(140)"
    } else {
        "decode(md5(n::text) || md5(n::text) || md5(n::text) || md5(n::text) || md5(n::text) || substr(md5(n::text), 1, 24), 'hex')"
    };
    pool.execute(
        format!(
            "INSERT INTO end_users (tenant_id, user_id, email, created_at, updated_at) \
             SELECT '{tenant}', 'user-' || n, 'user' || n || '@example.com', 0, 0 FROM ({}) s",
            series(1000)
        )
        .as_str(),
    )
    .await
    .unwrap();
    let (past, future) = (now - 3_600_000, now + 365 * 86_400_000);
    let chunk = 100_000;
    let mut start = 0;
    while start < n {
        let count = chunk.min(n - start);
        let lapse = format!("CASE WHEN n + {start} < {due} THEN {past} ELSE {future} END");
        // A 32-digit id (`cred_` ids are validated as 32 characters).
        let padded = if sqlite {
            format!("substr('00000000000000000000000000000000' || (n + {start}), -32)")
        } else {
            format!("lpad((n + {start})::text, 32, '0')")
        };
        pool.execute(
            format!(
                "INSERT INTO credentials (tenant_id, id, user_id, name, provider, kind, status, \
                 labels, scopes, expires_at, lapses_at, secret, version, created_at, updated_at, \
                 refresh_failures, next_refresh_at) \
                 SELECT '{tenant}', 'cred_' || {padded}, \
                 'user-' || ((n + {start}) % 1000), 'seeded', 'stripe', 'api_key', 'active', '{{}}', '[]', \
                 {lapse}, {lapse}, {blob}, 1, 0, 0, 0, {future} FROM ({}) s",
                series(count)
            )
            .as_str(),
        )
        .await
        .unwrap();
        start += count;
    }
    if !sqlite {
        pool.execute("VACUUM ANALYZE").await.unwrap();
    }
    pool.close().await;
}

/// (current, peak) resident set of this process, KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A token endpoint that always answers with fresh tokens, for the refresher pass.
async fn token_endpoint() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static ISSUED: AtomicU64 = AtomicU64::new(0);
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(|| async {
            let n = ISSUED.fetch_add(1, Ordering::Relaxed);
            axum::Json(serde_json::json!({
                "access_token": format!("at-{n}"),
                "refresh_token": format!("rt-{n}"),
                "token_type": "Bearer",
                "expires_in": 3600,
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/token")
}

/// 1,000 OAuth credentials inside their refresh margin, and their provider; their ids.
async fn due_oauth(
    vault: &credvault::service::Vault,
    caller: &Caller,
    token_url: &str,
) -> Vec<String> {
    let config = credvault::oauth::ProviderConfig {
        client_id: "bench".into(),
        authorization_url: token_url.replace("/token", "/authorize"),
        token_url: token_url.into(),
        ..Default::default()
    };
    let provider = credvault::service::NewProvider {
        slug: "crm".into(),
        config,
        client_secret: SecretString::from("bench-secret"),
        ..Default::default()
    };
    vault.create_provider(caller, provider).await.unwrap();
    let soon = credvault::clock::Clock::now_ms(&SystemClock) + 5 * 60_000;
    let mut ids = Vec::with_capacity(1000);
    for i in 0..1000 {
        let new = NewCredential {
            user_id: format!("user-{}", i % 1000),
            name: "due".into(),
            provider: "crm".into(),
            secret: Some(SecretPayload::OAuth2 {
                access_token: format!("old-{i}"),
                refresh_token: Some(format!("rt-old-{i}")),
                token_type: "Bearer".into(),
                scopes: vec![],
                expires_at: Some(soon),
            }),
            ..NewCredential::default()
        };
        ids.push(vault.create_credential(caller, new).await.unwrap().id);
    }
    ids
}

/// One expiry-scanner pass with 1,000 due among `n` stored, per size.
async fn scaling(backend: &'static str, sizes: &[u64]) -> Vec<String> {
    let mut lines = Vec::new();
    for &n in sizes {
        let (server, vault) = start_empty(backend, Variant::default()).await;
        let tenant = vault.list_tenants(1, "").await.unwrap().items[0].id.clone();
        let seeding = Instant::now();
        bulk_seed(
            &server.database_url,
            &tenant,
            n,
            1000,
            credvault::clock::Clock::now_ms(&SystemClock),
        )
        .await;
        let seeded = seeding.elapsed();
        let (rss, _) = rss_kib();
        let t = Instant::now();
        let pass = vault.scan_expiries(SCAN_BATCH).await.unwrap();
        let took = t.elapsed();
        assert_eq!(pass.expired, 1000);
        let caller = Caller {
            tenant_id: tenant.clone(),
            token_id: "bench".into(),
            ..Caller::default()
        };
        let due = due_oauth(&vault, &caller, &token_endpoint().await).await;
        let t = Instant::now();
        let refresh = credvault::workers::refresher::run_pass(&vault, 1000, 8)
            .await
            .unwrap();
        let refresh_took = t.elapsed();
        assert_eq!((refresh.claimed, refresh.refreshed), (1000, 1000));
        // Peak RSS while serving reveals at 64 in flight (load generator included).
        let mut server = server;
        server.ids = due;
        let reveals_per_sec = concurrent(&server, Rpc::Reveal, 3).await.per_sec;
        let (_, peak) = rss_kib();
        eprintln!(
            "{backend} {n}: {reveals_per_sec:.0} reveals/s, peak RSS {} MiB",
            peak / 1024
        );
        let line = format!(
            "| {backend} | {n} | {} | {:.1} | {:.0} | {:.0} s | {} MiB | {} MiB |",
            pass.expired,
            took.as_secs_f64() * 1000.0,
            refresh_took.as_secs_f64() * 1000.0,
            seeded.as_secs_f64(),
            rss / 1024,
            peak / 1024
        );
        eprintln!("{line}");
        lines.push(line);
        drop_database(&server).await;
    }
    lines
}

/// Replaces the stand-in ciphertexts `bulk_seed` wrote with real sealed API keys, so
/// they open (and rewrap), a transaction per 1,000 rows; returns the ids.
async fn seal_seeded(url: &str, vault: &credvault::service::Vault, tenant: &str) -> Vec<String> {
    let pool = AnyPool::connect(url).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, user_id FROM credentials WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant)
            .fetch_all(&pool)
            .await
            .unwrap();
    for chunk in rows.chunks(1000) {
        let mut tx = pool.begin().await.unwrap();
        for (id, user) in chunk {
            let aad = credvault::crypto::AadContext {
                tenant_id: tenant,
                user_id: user,
                credential_id: id,
            };
            let plain = format!(r#"{{"api_key":{{"key":"sk_live_{id}"}}}}"#);
            let blob = vault.keyring().seal(&aad, plain.as_bytes());
            sqlx::query("UPDATE credentials SET secret = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(blob)
                .bind(tenant)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    pool.close().await;
    rows.into_iter().map(|(id, _)| id).collect()
}

/// Credentials sealed directly under a master key now (as before tenant keys): what
/// rewrap moves under the tenant's key.
async fn under_master_key(vault: &credvault::service::Vault) -> u64 {
    let counts = vault.store().sealed_counts().await.unwrap();
    counts
        .iter()
        .filter(|c| {
            c.column == credvault::store::SealedColumn::CredentialSecret
                && c.format != credvault::crypto::TENANT_FORMAT_VERSION
        })
        .map(|c| c.values)
        .sum()
}

/// A server holding key versions 1 and 2 (1 active) with `n` credentials sealed under
/// 1, reveals aimed at every 97th of them.
async fn rotating_server(backend: &'static str, n: u64) -> (Server, credvault::service::Vault) {
    let variant = Variant {
        rotating: true,
        ..Variant::default()
    };
    let (mut server, vault) = start_empty(backend, variant).await;
    let tenant = vault.list_tenants(1, "").await.unwrap().items[0].id.clone();
    let now = credvault::clock::Clock::now_ms(&SystemClock);
    bulk_seed(&server.database_url, &tenant, n, 0, now).await;
    let ids = seal_seeded(&server.database_url, &vault, &tenant).await;
    server.ids = ids.into_iter().step_by(97).collect();
    (server, vault)
}

/// A rewrap pass at `rate` while reveals run for `seconds`: values moved per second
/// in that window, reveals per second, and whether the pass ended within it.
async fn rewrap_under_load(
    server: &Server,
    vault: &credvault::service::Vault,
    rate: u32,
    seconds: u64,
) -> (f64, f64, bool) {
    use credvault::service::keys::rewrap::{Pace, Rewrap};
    let job = Rewrap::new(vault, Pace { batch: 500, rate });
    // Every credential back under the master key, as an upgraded database has them.
    job.seal_as_before_tenant_keys(credvault::store::SealedColumn::CredentialSecret)
        .await
        .unwrap();
    let before = under_master_key(vault).await;
    let running = tokio::spawn(async move { job.pass().await.unwrap().unwrap() });
    let t = Instant::now();
    let during = concurrent(server, Rpc::Reveal, seconds).await.per_sec;
    let window = t.elapsed().as_secs_f64();
    let moved = under_master_key(vault).await.abs_diff(before);
    let finished = running.is_finished();
    running.await.unwrap();
    (moved as f64 / window, during, finished)
}

/// `--rewrap`: on `n` stored credentials, reveals at 64 in flight alone; a rewrap
/// pass alone; then (moving the values back and forth between versions) a rewrap pass
/// while the same reveal load runs, at each of `rates` (0: unthrottled).
async fn rewrap(backend: &'static str, n: u64, seconds: u64, rates: &[u32]) -> Vec<String> {
    use credvault::service::keys::rewrap::{Pace, Rewrap};
    let (server, vault) = rotating_server(backend, n).await;
    let mut admin =
        credvault::proto::v1::admin_service_client::AdminServiceClient::with_interceptor(
            channel(&server).await,
            Bearer(server.token.clone()),
        );
    let mut activate = async |version| {
        admin
            .activate_key(pb::ActivateKeyRequest { version })
            .await
            .expect("activate");
    };
    let alone = concurrent(&server, Rpc::Reveal, seconds).await.per_sec;
    activate(2).await;
    let job = Rewrap::new(
        &vault,
        Pace {
            batch: 500,
            rate: 0,
        },
    );
    let t = Instant::now();
    let pass = job.pass().await.unwrap().unwrap();
    let solo = pass.rewrapped as f64 / t.elapsed().as_secs_f64();
    assert_eq!(
        (pass.rewrapped, under_master_key(&vault).await),
        (n, 0),
        "{pass:?}"
    );
    eprintln!("{backend}: reveals alone {alone:.0}/s, rewrap alone {solo:.0}/s");
    let mut lines = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        activate(if i % 2 == 0 { 1 } else { 2 }).await;
        let (moved, during, finished) = rewrap_under_load(&server, &vault, rate, seconds).await;
        let rate_label = if rate == 0 {
            "unthrottled".to_owned()
        } else {
            format!("{rate}/s")
        };
        let ended = if finished {
            " (finished within the window)"
        } else {
            ""
        };
        let line = format!(
            "| {backend} | {n} | {solo:.0} | {rate_label} | {moved:.0}{ended} | {alone:.0} | {during:.0} | {:+.1} % |",
            (during / alone - 1.0) * 100.0,
        );
        eprintln!("{line}");
        lines.push(line);
    }
    drop_database(&server).await;
    lines
}

/// `--audit-chain`: create and reveal at 64 in flight on a server whose audit chain
/// job is off, then on a fresh one where it runs every second (the default): what
/// linking and signing the audit records costs the calls that write them.
async fn audit_chain_cost(backend: &'static str, seconds: u64) -> Vec<String> {
    let mut per_sec = Vec::new();
    for unchained in [true, false] {
        let variant = Variant {
            unchained,
            ..Variant::default()
        };
        let server = start_variant(backend, variant).await;
        let create = concurrent(&server, Rpc::Create, seconds).await.per_sec;
        let reveal = concurrent(&server, Rpc::Reveal, seconds).await.per_sec;
        drop_database(&server).await;
        per_sec.push((create, reveal));
    }
    let (off, on) = (per_sec[0], per_sec[1]);
    [(Rpc::Create, off.0, on.0), (Rpc::Reveal, off.1, on.1)]
        .map(|(rpc, off, on)| {
            let line = format!(
                "| {backend} | {} | {off:.0} | {on:.0} | {:+.1} % |",
                rpc.name(),
                (on / off - 1.0) * 100.0
            );
            eprintln!("{line}");
            line
        })
        .to_vec()
}

/// `--crypto`: the envelope alone, per call, format 1 against format 2 (what the
/// per-seal HKDF adds to every reveal and every write).
fn crypto_costs() -> Vec<String> {
    use credvault::crypto::{AadContext, Keyring};
    let ring = Keyring::parse(KEYS, None).unwrap();
    let ctx = AadContext {
        tenant_id: "ten_bench",
        user_id: "user-1",
        credential_id: "cred_00000000000000000000000000000001",
    };
    let plain = format!(r#"{{"api_key":{{"key":"sk_live_{:040}"}}}}"#, 1);
    let v1 = ring.seal_legacy_format(&ctx, plain.as_bytes());
    let v2 = ring.seal(&ctx, plain.as_bytes());
    let per_call = |f: &dyn Fn()| {
        let n = 200_000;
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    };
    let open = |blob: &[u8]| per_call(&|| drop(std::hint::black_box(ring.open(&ctx, blob))));
    vec![
        format!("| open, format 1 | {:.2} µs |", open(&v1)),
        format!("| open, format 2 | {:.2} µs |", open(&v2)),
        format!(
            "| seal, format 2 | {:.2} µs |",
            per_call(&|| drop(std::hint::black_box(ring.seal(&ctx, plain.as_bytes()))))
        ),
    ]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu}), load generator on the same machine, loopback")
}

#[tokio::main]
async fn main() {
    let backends: Vec<&'static str> = match arg("--backend").as_deref() {
        Some("sqlite") => vec!["sqlite"],
        Some("postgres") => vec!["postgres"],
        _ => vec!["sqlite", "postgres"],
    };
    if flag("--overheads") {
        let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(5);
        let rows = overheads(seconds, flag("--otel")).await;
        println!("{}\n\n{}", machine(), rows.join("\n"));
        return;
    }
    if flag("--audit-chain") {
        let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(5);
        let mut lines = vec![
            "| backend | call (64 in flight) | chain job off, ops/s | chain job on, ops/s | change |".to_owned(),
            "|---|---|---:|---:|---:|".to_owned(),
        ];
        for backend in &backends {
            lines.extend(audit_chain_cost(backend, seconds).await);
        }
        println!("{}\n\n{}", machine(), lines.join("\n"));
        return;
    }
    if flag("--crypto") {
        println!(
            "{}\n\n| call | time |\n|---|---:|\n{}",
            machine(),
            crypto_costs().join("\n")
        );
        return;
    }
    if flag("--rewrap") {
        let n: u64 = arg("--count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(5);
        let mut lines = vec![
            "| backend | stored | rewrap alone, values/s | rewrap_rate | rewrap during reveals, values/s | reveals/s alone | reveals/s during rewrap | reveal change |".to_owned(),
            "|---|---:|---:|---|---:|---:|---:|---:|".to_owned(),
        ];
        for backend in &backends {
            lines.extend(rewrap(backend, n, seconds, &[2500, 5000, 0]).await);
        }
        println!("{}\n\n{}", machine(), lines.join("\n"));
        return;
    }
    if flag("--scaling") {
        let sizes: Vec<u64> = arg("--sizes")
            .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
        let mut lines = vec![
            "| backend | stored | due | one scan pass, ms | one refresh pass (1,000 due, 8 at a time), ms | seeding | RSS idle | peak RSS, 3 s of reveals at 64 in flight |".to_owned(),
            "|---|---:|---:|---:|---:|---:|---:|---:|".to_owned(),
        ];
        for backend in &backends {
            lines.extend(scaling(backend, &sizes).await);
        }
        println!("{}", lines.join("\n"));
        return;
    }
    let requests: usize = arg("--requests")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut rows = Vec::new();
    for backend in backends {
        rows.extend(bench_backend(backend, requests, seconds).await);
    }
    let table = table(&rows);
    println!("{}\n\n{table}", machine());
    if flag("--write") {
        std::fs::write("docs/benchmarks.svg", svg(&rows)).expect("write svg");
        let doc = std::fs::read_to_string("docs/benchmarks.md").unwrap_or_default();
        let (head, tail) = match (doc.find("<!-- results -->"), doc.find("<!-- /results -->")) {
            (Some(a), Some(b)) => (doc[..a].to_owned(), doc[b..].to_owned()),
            _ => (
                "# Benchmarks\n\n".to_owned(),
                "<!-- /results -->\n".to_owned(),
            ),
        };
        let results = format!(
            "<!-- results -->\nMachine: {}. {requests} sequential requests per RPC; {seconds} s at {IN_FLIGHT} in flight over {CONNECTIONS} connections.\n\n{table}\n![latency chart](benchmarks.svg)\n\n",
            machine()
        );
        std::fs::write("docs/benchmarks.md", head + &results + &tail).expect("write docs");
    }
}
