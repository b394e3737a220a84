//! TLS for both listeners, from PEM files that are reloaded without a restart.
//!
//! [`Tls`] holds the current configuration of each listener. [`Tls::reload`] reads the
//! files again and swaps both in at once; if anything is wrong with the new files
//! (unreadable, no certificate, a key that does not match) the old configuration
//! stays and the error is logged and counted. [`watch`] reloads when the files'
//! contents change and on SIGHUP. Connections already open keep the certificate they
//! were made with.
//!
//! mTLS (`tls_client_ca_file`) applies to the gRPC listener only: the HTTP listener
//! serves browsers (the connect page, the OAuth callback), which have no client
//! certificates.
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

mod incoming;
mod not_after;

pub use incoming::{TlsListener, grpc_incoming, http_listener};

/// The files TLS is configured from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, gRPC clients must present a certificate issued by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(String),
}

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Grpc,
    Http,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Grpc => "grpc",
            Side::Http => "http",
        }
    }
}

/// What the files held, read once per check.
struct Contents {
    cert: Vec<u8>,
    key: zeroize::Zeroizing<Vec<u8>>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            cert: read(&files.cert)?,
            key: zeroize::Zeroizing::new(read(&files.key)?),
            client_ca: files.client_ca.as_deref().map(read).transpose()?,
        })
    }

    /// SHA-256 over all of it: what [`Tls::reload_if_changed`] compares.
    fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for bytes in [
            Some(&self.cert[..]),
            Some(&self.key[..]),
            self.client_ca.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        }
        hash.finalize().into()
    }
}

/// The configurations being served, and the digest of the files they came from.
struct Loaded {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    digest: [u8; 32],
}

/// The listeners' current TLS configurations; see the module docs.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Loaded>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads the files; an error here stops the server from starting.
    pub fn load(files: TlsFiles, metrics: Arc<Metrics>) -> Result<Arc<Self>, TlsError> {
        let (loaded, not_after) = build(&files, &Contents::read(&files)?)?;
        metrics.tls_loaded(true, not_after);
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(loaded),
            metrics,
        }))
    }

    /// The configuration new connections on `side` are accepted with.
    pub fn config(&self, side: Side) -> Arc<ServerConfig> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        match side {
            Side::Grpc => current.grpc.clone(),
            Side::Http => current.http.clone(),
        }
    }

    /// Reads the files again and switches to them; on error keeps what it had.
    pub fn reload(&self) -> Result<(), TlsError> {
        let contents = Contents::read(&self.files);
        self.switch(contents.and_then(|c| build(&self.files, &c)))
    }

    /// Reloads if the files' contents differ from what is being served; true if so.
    /// Until a broken change is fixed, every check tries it again (and counts the error).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let contents = Contents::read(&self.files)?;
        let serving = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .digest;
        if contents.digest() == serving {
            return Ok(false);
        }
        self.switch(build(&self.files, &contents)).map(|()| true)
    }

    /// Serves what a reload built, or keeps serving what it had.
    fn switch(&self, built: Result<(Loaded, Option<i64>), TlsError>) -> Result<(), TlsError> {
        match built {
            Ok((loaded, not_after)) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
                self.metrics.tls_loaded(true, not_after);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.tls_loaded(false, None);
                tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate");
                Err(e)
            }
        }
    }
}

/// Reloads `tls` when its files change (checked every `every`) and on SIGHUP, until
/// `stop`.
#[tracing::instrument(name = "job.tls_watch", skip_all)]
pub async fn watch(tls: Arc<Tls>, every: Duration, stop: Shutdown) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and the files were just loaded.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Errors are logged and counted inside.
                let _ = tls.reload_if_changed();
            }
            () = next_hangup(&mut hangup) => {
                tracing::info!("SIGHUP: reloading the TLS certificate");
                let _ = tls.reload();
            }
            () = stop.wait() => return,
        }
    }
}

/// The next SIGHUP (never, if the handler could not be installed).
async fn next_hangup(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(signal) = signal
        && signal.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Both listeners' configurations from the files' `contents`, and the leaf's expiry.
fn build(files: &TlsFiles, contents: &Contents) -> Result<(Loaded, Option<i64>), TlsError> {
    let certs = CertificateDer::pem_slice_iter(&contents.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::NoCertificate(files.cert.clone()))?;
    let not_after = not_after::of(leaf);
    let key = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|e| TlsError::Read {
        path: files.key.clone(),
        reason: format!("no usable private key ({e})"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // TLS 1.3 and 1.2 only; rustls has nothing older.
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let mut http = builder
        .clone()
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())?;
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    let grpc = match (&files.client_ca, &contents.client_ca) {
        (Some(path), Some(pem)) => {
            builder.with_client_cert_verifier(client_verifier(path, pem, provider)?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut grpc = grpc.with_single_cert(certs, key)?;
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    let loaded = Loaded {
        grpc: Arc::new(grpc),
        http: Arc::new(http),
        digest: contents.digest(),
    };
    Ok((loaded, not_after))
}

/// Requires a client certificate issued by a CA in `path`.
fn client_verifier(
    path: &Path,
    pem: &[u8],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsError::ClientCa(format!("{}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::ClientCa(format!("{}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::ClientCa(e.to_string()))
}
