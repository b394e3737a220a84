//! TLS and mTLS on both listeners, with certificates made at test time: a good
//! certificate, the wrong CA, expired certificates, a missing client certificate under
//! mTLS, reloading without a restart, and the CLI over https.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use credvault::App;
use credvault::clock::ManualClock;
use credvault::proto::v1::admin_service_client::AdminServiceClient;
use credvault::tls::Tls;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::support::{AuthHeader, Backend, KEY_V1, T0, TestDb, test_config};

/// A certificate authority of the test's own.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM.
struct Pair {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names`; `expired` makes one that lapsed in 2020.
    fn issue(&self, names: &[&str], expired: bool) -> Pair {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "credvault test");
        if expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self) -> Pair {
        self.issue(&["localhost", "127.0.0.1"], false)
    }
}

/// A TLS server: its files, its addresses and a way to stop it.
struct Server {
    dir: tempfile::TempDir,
    _db: TestDb,
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
    tls: Arc<Tls>,
    token: SecretString,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Server {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the serving certificate files with `pair`.
    fn install(&self, pair: &Pair) {
        write(&self.path("server.pem"), &pair.cert);
        write(&self.path("server.key"), &pair.key);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Starts a server serving `pair`; with `client_ca`, gRPC requires mTLS from it.
async fn serve(pair: &Pair, client_ca: Option<&Ca>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let mut config = test_config(&db, KEY_V1, |c| c);
    write(&dir.path().join("server.pem"), &pair.cert);
    write(&dir.path().join("server.key"), &pair.key);
    config.tls_cert_file = Some(dir.path().join("server.pem"));
    config.tls_key_file = Some(dir.path().join("server.key"));
    if let Some(ca) = client_ca {
        write(&dir.path().join("clients.pem"), &ca.pem());
        config.tls_client_ca_file = Some(dir.path().join("clients.pem"));
    }
    let app = App::build_with_clock(&config, Arc::new(ManualClock::new(T0)))
        .await
        .unwrap();
    let (_, token) = app.vault().bootstrap().await.unwrap().unwrap();
    let (grpc, http, tls) = (app.grpc_addr(), app.http_addr(), app.tls().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        dir,
        _db: db,
        grpc,
        http,
        tls,
        token,
        stop: Some(stop),
    }
}

/// A TLS channel to `server` trusting `ca`, presenting `client` if given.
async fn channel(
    server: &Server,
    ca: &Ca,
    client: Option<&Pair>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some(pair) = client {
        tls = tls.identity(Identity::from_pem(&pair.cert, &pair.key));
    }
    Channel::from_shared(format!("https://localhost:{}", server.grpc.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// Whether an authenticated call over `channel` succeeds.
async fn admin_call_works(server: &Server, channel: Channel) -> bool {
    let header = AuthHeader::bearer(&server.token);
    let mut admin = AdminServiceClient::with_interceptor(channel, header);
    admin
        .list_tenants(credvault::proto::v1::ListTenantsRequest::default())
        .await
        .is_ok()
}

/// Whether a health check over a TLS channel trusting `ca` (with `client`) answers.
async fn health_works(server: &Server, ca: &Ca, client: Option<&Pair>) -> bool {
    let Ok(channel) = channel(server, ca, client).await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok()
}

/// GET over https trusting `ca`: the status, or `None` when TLS failed.
async fn https_get(server: &Server, ca: &Ca, path: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("localhost", server.http)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}{path}", server.http.port());
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn both_listeners_speak_tls_with_a_good_certificate() {
    let ca = Ca::new("test CA");
    let server = serve(&ca.server(), None).await;
    let channel = channel(&server, &ca, None).await.unwrap();
    assert!(admin_call_works(&server, channel).await);
    assert_eq!(https_get(&server, &ca, "/healthz").await, Some(200));
    assert_eq!(https_get(&server, &ca, "/readyz").await, Some(200));
    // Plaintext to a TLS port gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        assert!(!admin_call_works(&server, plain).await);
    }
    let plain_http = reqwest::get(format!("http://{}/healthz", server.http)).await;
    assert!(plain_http.is_err() || !plain_http.unwrap().status().is_success());
}

#[tokio::test]
async fn a_client_that_trusts_another_ca_is_refused() {
    let (ca, other) = (Ca::new("test CA"), Ca::new("someone else"));
    let server = serve(&ca.server(), None).await;
    assert!(!health_works(&server, &other, None).await);
    assert_eq!(https_get(&server, &other, "/healthz").await, None);
    assert!(health_works(&server, &ca, None).await);
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused() {
    let ca = Ca::new("test CA");
    let server = serve(&ca.issue(&["localhost", "127.0.0.1"], true), None).await;
    assert!(!health_works(&server, &ca, None).await);
    assert_eq!(https_get(&server, &ca, "/healthz").await, None);
}

#[tokio::test]
async fn mtls_requires_a_current_client_certificate_from_the_client_ca() {
    let (ca, clients, other) = (Ca::new("server CA"), Ca::new("client CA"), Ca::new("other"));
    let server = serve(&ca.server(), Some(&clients)).await;
    let good = clients.issue(&["billing-service"], false);
    assert!(
        !health_works(&server, &ca, None).await,
        "no client certificate"
    );
    let foreign = other.issue(&["billing-service"], false);
    assert!(
        !health_works(&server, &ca, Some(&foreign)).await,
        "wrong CA"
    );
    let expired = clients.issue(&["billing-service"], true);
    assert!(!health_works(&server, &ca, Some(&expired)).await, "expired");
    assert!(health_works(&server, &ca, Some(&good)).await);
    // The certificate comes in addition to the token, not instead of it.
    let channel = channel(&server, &ca, Some(&good)).await.unwrap();
    let mut anonymous = AdminServiceClient::new(channel.clone());
    let refused = anonymous
        .list_tenants(credvault::proto::v1::ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(admin_call_works(&server, channel).await);
    // Browsers have no client certificates: the HTTP listener does not ask for one.
    assert_eq!(https_get(&server, &ca, "/healthz").await, Some(200));
}

#[tokio::test]
async fn certificates_reload_without_a_restart() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let server = serve(&old_ca.server(), None).await;
    assert!(!server.tls.reload_if_changed().unwrap(), "nothing changed");
    assert!(!health_works(&server, &new_ca, None).await);

    // A broken file is refused and the old certificate stays in service.
    write(&server.path("server.key"), "not a key");
    assert!(server.tls.reload_if_changed().is_err());
    assert!(health_works(&server, &old_ca, None).await);

    server.install(&new_ca.server());
    assert!(server.tls.reload_if_changed().unwrap());
    assert!(health_works(&server, &new_ca, None).await);
    assert!(!health_works(&server, &old_ca, None).await);
    assert_eq!(https_get(&server, &new_ca, "/healthz").await, Some(200));

    let metrics = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(new_ca.pem().as_bytes()).unwrap())
        .resolve("localhost", server.http)
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/metrics", server.http.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("credvault_tls_reloads_total{outcome=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("credvault_tls_reloads_total{outcome=\"error\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("credvault_tls_handshake_failures_total{listener=\"grpc\"}"));
}

// Multi-threaded: the probe blocks this thread while the server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_speaks_https_and_mtls() {
    let (ca, clients) = (Ca::new("server CA"), Ca::new("client CA"));
    let server = serve(&ca.server(), Some(&clients)).await;
    write(&server.path("ca.pem"), &ca.pem());
    let me = clients.issue(&["probe"], false);
    write(&server.path("me.pem"), &me.cert);
    write(&server.path("me.key"), &me.key);
    let url = format!("https://localhost:{}", server.grpc.port());
    let probe = |extra: &[&str]| {
        let mut args = vec!["health", "--server", &url, "--timeout-secs", "10"];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_credvault"))
            .args(&args)
            .env_remove("CREDVAULT_TOKEN")
            .output()
            .unwrap()
    };
    let (ca_file, cert, key) = (
        server.path("ca.pem"),
        server.path("me.pem"),
        server.path("me.key"),
    );
    let (ca_file, cert, key) = (
        ca_file.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let ok = probe(&["--ca-file", ca_file, "--cert", cert, "--key", key]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "SERVING");
    let without_cert = probe(&["--ca-file", ca_file]);
    assert_eq!(without_cert.status.code(), Some(1));
}
