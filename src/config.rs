//! Typed configuration: an optional TOML file, then `CREDVAULT_*` environment
//! variables on top. Unknown keys in the file are errors, not silently ignored.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::crypto::{Keyring, KeyringError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Everything `credvault serve` can be told. See the README's configuration table.
/// `Debug` hides the master keys and any password in `database_url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; unset means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Where the embedded default keeps its database and dev key.
    pub data_dir: PathBuf,
    /// Master keys inline: `<version>:<base64>` entries separated by commas.
    pub master_keys: Option<SecretString>,
    /// A file of master keys, one `<version>:<base64>` per line; should be mode 0600.
    pub master_key_file: Option<PathBuf>,
    /// The version that seals new secrets when the database has none recorded yet
    /// (its first start); afterwards the cluster's active version is kept in the
    /// database and moved with `credvault keys activate`. Defaults to the highest
    /// configured.
    pub active_key_version: Option<u32>,
    /// Seconds between key heartbeats: each replica reports the key versions it holds
    /// and follows the cluster's active version. A replica silent for three is not live.
    pub key_heartbeat_secs: u64,
    /// Seconds between background rewrap passes (each re-seals what is not under the
    /// active version, one replica at a time, under a lease); 0 turns the job off.
    pub rewrap_interval_secs: u64,
    /// Sealed values per rewrap batch (one transaction).
    pub rewrap_batch: u32,
    /// Sealed values rewrapped per second at most; 0 = unthrottled.
    pub rewrap_rate: u32,
    /// Milliseconds between audit chain passes, one replica at a time: each links
    /// new audit records into their tenant's hash chain (PostgreSQL; SQLite chains
    /// each as it is written), signs checkpoints when due and prunes; 0 turns the
    /// job off.
    pub audit_chain_interval_ms: u64,
    /// Seconds between signed checkpoints of each audit chain's head (if it moved).
    pub audit_checkpoint_secs: u64,
    /// Days audit records are kept (pruned at a checkpoint); 0 keeps them forever.
    pub audit_retention_days: u64,
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `credvault=debug`; `RUST_LOG` wins if set.
    pub log_level: String,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Database connections. SQLite: readers, beside the one writer. PostgreSQL: half
    /// for reads (at least one), the rest for writes (at least two).
    pub max_connections: u32,
    /// How long a used `request_id` is remembered, in seconds.
    pub idempotency_ttl_secs: u64,
    /// Days events and finished webhook deliveries are kept; 0 keeps them forever.
    pub event_retention_days: u64,
    /// Seconds between retention passes (one replica at a time runs each, under a
    /// lease); 0 turns the job off.
    pub retention_interval_secs: u64,
    /// HTTP address for the OAuth callback; port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// The URL at which browsers reach `http_listen` (behind a proxy, its public
    /// https URL); the OAuth redirect URI is this plus `/oauth/callback`.
    /// Default: `http://<http_listen>`.
    pub public_base_url: Option<String>,
    /// Accept plain-http provider endpoints and redirect URLs (development only).
    pub allow_http_urls: bool,
    /// Seconds between background refresh passes; 0 turns the refresher off.
    pub refresher_interval_secs: u64,
    /// Credentials claimed per refresh pass.
    pub refresh_batch: u32,
    /// Refreshes in flight at once per replica.
    pub refresh_concurrency: usize,
    /// Timeout of each request to a provider, in seconds.
    pub provider_timeout_secs: u64,
    /// Seconds between expiry scans; 0 turns the scanner off.
    pub scan_interval_secs: u64,
    /// `credential.expiring` is sent this many seconds before a credential lapses.
    pub expiry_warning_horizons_secs: Vec<u64>,
    /// Milliseconds between delivery passes; 0 turns the deliverer off.
    pub deliver_interval_ms: u64,
    /// Delay before each webhook attempt, in seconds; then the dead letter.
    pub webhook_retry_schedule_secs: Vec<u64>,
    /// Timeout of each webhook request, in seconds.
    pub webhook_timeout_secs: u64,
    /// Webhook requests in flight at once per replica.
    pub webhook_concurrency: usize,
    /// Allow webhook endpoints on loopback, private and link-local addresses.
    pub webhook_allow_private_addresses: bool,
    /// Allow every provider's endpoints on loopback, private and link-local
    /// addresses (single-host setups, tests); one provider at a time is opted in by
    /// an `admin` with the provider's `allow_private_network`.
    pub provider_allow_private_addresses: bool,
    /// An explicit proxy for every outbound request (providers, webhooks), e.g.
    /// `http://proxy.internal:3128`. Proxy environment variables are ignored.
    pub outbound_proxy: Option<String>,
    /// How long a shutdown may drain before open connections and streams are cut.
    pub shutdown_grace_secs: u64,
    /// Form posts per minute per client IP on the hosted connect page (0: no limit).
    pub connect_rate_limit_per_minute: u32,
    /// Timeout of a provider's verification request on the connect page.
    pub connect_verify_timeout_secs: u64,
    /// Requests per minute per client IP on every unauthenticated HTTP route (the
    /// connect pages, the OAuth callback); 0: no limit.
    pub http_rate_limit_per_minute: u32,
    /// The serving certificate chain (PEM); with `tls_key_file`, both listeners
    /// speak TLS 1.2/1.3 only.
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM); when set, gRPC clients must present a certificate
    /// issued by one of them (mTLS), in addition to their token.
    pub tls_client_ca_file: Option<PathBuf>,
    /// How often the TLS files are checked for changes, in seconds (SIGHUP reloads
    /// at once).
    pub tls_reload_interval_secs: u64,
    /// A separate plain-HTTP address for `/metrics`, `/healthz` and `/readyz`
    /// (keep it internal); unset serves them on `http_listen` too.
    pub metrics_listen: Option<SocketAddr>,
    /// An OpenTelemetry collector's OTLP/HTTP base URL (e.g. `http://collector:4318`);
    /// spans are exported to its `/v1/traces` in batches. Unset: not exported.
    pub otlp_endpoint: Option<String>,
    /// gRPC requests handled at once per connection.
    pub grpc_concurrency_per_connection: usize,
    /// Longest a unary gRPC call may take before DEADLINE_EXCEEDED, in seconds.
    pub request_timeout_secs: u64,
    /// HTTP/2 streams a gRPC client may open at once per connection.
    pub max_concurrent_streams: u32,
    /// Seconds between HTTP/2 keepalive pings to idle gRPC clients (0: none).
    pub http2_keepalive_interval_secs: u64,
    /// A client that does not answer a keepalive ping within this is disconnected.
    pub http2_keepalive_timeout_secs: u64,
    /// `WatchEvents` streams open at once per tenant (on this replica).
    pub watch_streams_per_tenant: u32,
    /// Requests per second each service token may make (0: no limit).
    pub token_rate_limit_per_sec: u32,
    /// Requests a token may make at once after a quiet spell.
    pub token_rate_limit_burst: u32,
    /// Milliseconds an authenticated token is used without reading it again; a
    /// revocation announced by any replica drops it at once. 0 reads every time.
    pub token_cache_ttl_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: None,
            data_dir: PathBuf::from("credvault-data"),
            master_keys: None,
            master_key_file: None,
            active_key_version: None,
            key_heartbeat_secs: 10,
            rewrap_interval_secs: 5 * 60,
            rewrap_batch: 500,
            rewrap_rate: 2500,
            audit_chain_interval_ms: 1000,
            audit_checkpoint_secs: 60,
            audit_retention_days: 365,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            max_message_bytes: 1024 * 1024,
            max_connections: 8,
            idempotency_ttl_secs: 24 * 60 * 60,
            event_retention_days: 30,
            retention_interval_secs: 60 * 60,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url: None,
            allow_http_urls: false,
            refresher_interval_secs: 30,
            refresh_batch: 100,
            refresh_concurrency: 8,
            provider_timeout_secs: 15,
            scan_interval_secs: 60,
            expiry_warning_horizons_secs: vec![7 * 24 * 60 * 60, 24 * 60 * 60],
            deliver_interval_ms: 1000,
            webhook_retry_schedule_secs: crate::service::DEFAULT_WEBHOOK_SCHEDULE_SECS.to_vec(),
            webhook_timeout_secs: 15,
            webhook_concurrency: 16,
            webhook_allow_private_addresses: false,
            provider_allow_private_addresses: false,
            outbound_proxy: None,
            shutdown_grace_secs: 20,
            connect_rate_limit_per_minute: 30,
            connect_verify_timeout_secs: 10,
            http_rate_limit_per_minute: 600,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_reload_interval_secs: 30,
            metrics_listen: None,
            otlp_endpoint: None,
            grpc_concurrency_per_connection: 64,
            request_timeout_secs: 30,
            max_concurrent_streams: 128,
            http2_keepalive_interval_secs: 60,
            http2_keepalive_timeout_secs: 20,
            watch_streams_per_tenant: 8,
            token_rate_limit_per_sec: 500,
            token_rate_limit_burst: 1000,
            token_cache_ttl_ms: 1000,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_password),
            )
            .field("data_dir", &self.data_dir)
            .field("master_keys", &self.master_keys)
            .field("master_key_file", &self.master_key_file)
            .field("active_key_version", &self.active_key_version)
            .field("http_listen", &self.http_listen)
            .field("public_base_url", &self.public_base_url)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_client_ca_file", &self.tls_client_ca_file)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "otlp_endpoint",
                &self.otlp_endpoint.as_deref().map(redact_password),
            )
            .finish_non_exhaustive()
    }
}

/// A database URL with its password, if any, replaced.
pub fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.into()
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(
        "no master key configured: set CREDVAULT_MASTER_KEYS or CREDVAULT_MASTER_KEY_FILE \
         (a dev key is generated only for the embedded SQLite default)"
    )]
    NoMasterKey,
    #[error("cannot read master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("master keys: {0}")]
    Keyring(#[from] KeyringError),
}

#[derive(Clone, Copy)]
enum EnvKind {
    Text,
    Number,
    Flag,
    /// Comma-separated whole numbers.
    Numbers,
}

/// Settings that may come from the environment, and how each is written.
const ENV_SETTINGS: &[(&str, EnvKind)] = &[
    ("listen", EnvKind::Text),
    ("database_url", EnvKind::Text),
    ("data_dir", EnvKind::Text),
    ("master_keys", EnvKind::Text),
    ("master_key_file", EnvKind::Text),
    ("active_key_version", EnvKind::Number),
    ("key_heartbeat_secs", EnvKind::Number),
    ("rewrap_interval_secs", EnvKind::Number),
    ("rewrap_batch", EnvKind::Number),
    ("rewrap_rate", EnvKind::Number),
    ("audit_chain_interval_ms", EnvKind::Number),
    ("audit_checkpoint_secs", EnvKind::Number),
    ("audit_retention_days", EnvKind::Number),
    ("log_format", EnvKind::Text),
    ("log_level", EnvKind::Text),
    ("max_message_bytes", EnvKind::Number),
    ("max_connections", EnvKind::Number),
    ("idempotency_ttl_secs", EnvKind::Number),
    ("event_retention_days", EnvKind::Number),
    ("retention_interval_secs", EnvKind::Number),
    ("http_listen", EnvKind::Text),
    ("public_base_url", EnvKind::Text),
    ("allow_http_urls", EnvKind::Flag),
    ("refresher_interval_secs", EnvKind::Number),
    ("refresh_batch", EnvKind::Number),
    ("refresh_concurrency", EnvKind::Number),
    ("provider_timeout_secs", EnvKind::Number),
    ("scan_interval_secs", EnvKind::Number),
    ("expiry_warning_horizons_secs", EnvKind::Numbers),
    ("deliver_interval_ms", EnvKind::Number),
    ("webhook_retry_schedule_secs", EnvKind::Numbers),
    ("webhook_timeout_secs", EnvKind::Number),
    ("webhook_concurrency", EnvKind::Number),
    ("webhook_allow_private_addresses", EnvKind::Flag),
    ("provider_allow_private_addresses", EnvKind::Flag),
    ("outbound_proxy", EnvKind::Text),
    ("shutdown_grace_secs", EnvKind::Number),
    ("connect_rate_limit_per_minute", EnvKind::Number),
    ("connect_verify_timeout_secs", EnvKind::Number),
    ("http_rate_limit_per_minute", EnvKind::Number),
    ("tls_cert_file", EnvKind::Text),
    ("tls_key_file", EnvKind::Text),
    ("tls_client_ca_file", EnvKind::Text),
    ("tls_reload_interval_secs", EnvKind::Number),
    ("metrics_listen", EnvKind::Text),
    ("otlp_endpoint", EnvKind::Text),
    ("grpc_concurrency_per_connection", EnvKind::Number),
    ("request_timeout_secs", EnvKind::Number),
    ("max_concurrent_streams", EnvKind::Number),
    ("http2_keepalive_interval_secs", EnvKind::Number),
    ("http2_keepalive_timeout_secs", EnvKind::Number),
    ("watch_streams_per_tenant", EnvKind::Number),
    ("token_rate_limit_per_sec", EnvKind::Number),
    ("token_rate_limit_burst", EnvKind::Number),
    ("token_cache_ttl_ms", EnvKind::Number),
];

/// The environment variables `serve` reads: `CREDVAULT_` and each setting's name.
pub fn env_names() -> impl Iterator<Item = String> {
    ENV_SETTINGS
        .iter()
        .map(|(name, _)| format!("CREDVAULT_{}", name.to_ascii_uppercase()))
}

impl Config {
    /// Reads `file` (if any), then applies `CREDVAULT_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(name) = key.strip_prefix("CREDVAULT_").map(str::to_ascii_lowercase) else {
                continue;
            };
            let Some(&(name, kind)) = ENV_SETTINGS.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let invalid = |what: &str| {
                ConfigError::Invalid(format!("CREDVAULT_{}: must be {what}", name.to_uppercase()))
            };
            let value = match kind {
                EnvKind::Text => toml::Value::String(value),
                EnvKind::Number => toml::Value::Integer(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| invalid("a whole number"))?,
                ),
                EnvKind::Flag => toml::Value::Boolean(
                    value.trim().parse().map_err(|_| invalid("true or false"))?,
                ),
                EnvKind::Numbers => toml::Value::Array(
                    value
                        .split(',')
                        .map(|n| n.trim().parse().map(toml::Value::Integer))
                        .collect::<Result<_, _>>()
                        .map_err(|_| invalid("comma-separated whole numbers"))?,
                ),
            };
            table.insert(name.to_owned(), value);
        }
        Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.message().to_owned()))
    }

    /// The TLS files, if TLS is configured; a key without a certificate (or a
    /// client CA without either) is an error rather than silently plaintext.
    pub fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca_file.clone(),
            })),
            (None, None) if self.tls_client_ca_file.is_none() => Ok(None),
            _ => Err(ConfigError::Invalid(
                "TLS needs both tls_cert_file and tls_key_file (tls_client_ca_file adds mTLS to them)"
                    .into(),
            )),
        }
    }

    /// Loads the master keys from `master_keys` or `master_key_file`.
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        if let Some(keys) = &self.master_keys {
            return Ok(Keyring::parse(
                keys.expose_secret(),
                self.active_key_version,
            )?);
        }
        let path = self
            .master_key_file
            .as_ref()
            .ok_or(ConfigError::NoMasterKey)?;
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            ConfigError::KeyFile {
                path: path.clone(),
                source,
            }
        })?);
        warn_if_readable_by_others(path);
        Ok(Keyring::parse(&text, self.active_key_version)?)
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "master key file is readable by group or others; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nmax_connections = 3\n").unwrap();
        let c = Config::load(
            Some(&file),
            env(&[("CREDVAULT_MAX_CONNECTIONS", "5"), ("CREDVAULT_TOKEN", "x")]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_connections, 5);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn unknown_keys_and_bad_numbers_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = Config::load(None, env(&[("CREDVAULT_MAX_CONNECTIONS", "many")])).unwrap_err();
        assert!(err.to_string().contains("CREDVAULT_MAX_CONNECTIONS"));
    }

    #[test]
    fn debug_redacts_inline_keys_and_database_passwords() {
        let c = Config::load(
            None,
            env(&[
                ("CREDVAULT_MASTER_KEYS", "1:c2VjcmV0"),
                (
                    "CREDVAULT_DATABASE_URL",
                    "postgres://vault:hunter2@db.internal/credvault",
                ),
            ]),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("db.internal"));
        assert!(matches!(
            Config::default().keyring(),
            Err(ConfigError::NoMasterKey)
        ));
    }
}
