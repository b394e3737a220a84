//! What the process counts, in the Prometheus/OpenMetrics text format on `/metrics`.
//!
//! Labels come from closed sets only: service and method names known at build time,
//! gRPC code names, outcome classes, key versions. No label ever carries a secret, a
//! token, a tenant, a user id or an email (privacy, and bounded cardinality).
//! `docs/operations.md` lists every metric.
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: &'static str,
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyVersion {
    key_version: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Listener {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Limited {
    limit: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of one vault process.
pub struct Metrics {
    registry: Registry,
    rpc_duration: Histograms<RpcLabels>,
    rpc_in_flight: Family<ServiceLabel, Gauge>,
    refresh: Family<Outcome, Counter>,
    deliveries: Family<Outcome, Counter>,
    oldest_pending_delivery: Gauge<f64, std::sync::atomic::AtomicU64>,
    scan_duration: Histogram,
    scan_items: Family<Outcome, Counter>,
    pruned: Family<Kind, Counter>,
    seals: Family<KeyVersion, Counter>,
    legacy_seals: Family<KeyVersion, Gauge>,
    rewrapped: Family<Outcome, Counter>,
    audit_chained: Counter,
    connect: Family<Outcome, Counter>,
    external_auth: Family<Outcome, Counter>,
    db_connections: Family<State, Gauge>,
    db_ping: Gauge<f64, std::sync::atomic::AtomicU64>,
    db_reads_shared: Counter,
    tls_handshake_failures: Family<Listener, Counter>,
    tls_reloads: Family<Outcome, Counter>,
    tls_cert_not_after: Gauge,
    rate_limited: Family<Limited, Counter>,
    token_cache: Family<Outcome, Counter>,
    /// One scrape at a time brings the sampled values up to date.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What a scrape samples from the database and the keyring.
#[derive(Debug, Default, Clone)]
pub struct Sampled {
    pub db_in_use: u32,
    pub db_idle: u32,
    /// How long a `SELECT 1` took, connection acquisition included.
    pub db_ping: Option<Duration>,
    /// Reads answered by a statement shared with other reads, since the start.
    pub db_reads_shared: u64,
    /// Age of the oldest delivery still waiting to be sent (0: none).
    pub oldest_pending_delivery: Duration,
    /// Seals by master key version since the process started.
    pub seals: Vec<(u32, u64)>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("credvault");
        let m = Self {
            rpc_duration: Family::new_with_constructor(latency),
            rpc_in_flight: Family::default(),
            refresh: Family::default(),
            deliveries: Family::default(),
            oldest_pending_delivery: Gauge::default(),
            scan_duration: latency(),
            scan_items: Family::default(),
            pruned: Family::default(),
            seals: Family::default(),
            legacy_seals: Family::default(),
            rewrapped: Family::default(),
            audit_chained: Counter::default(),
            connect: Family::default(),
            external_auth: Family::default(),
            db_connections: Family::default(),
            db_reads_shared: Counter::default(),
            db_ping: Gauge::default(),
            tls_handshake_failures: Family::default(),
            tls_reloads: Family::default(),
            tls_cert_not_after: Gauge::default(),
            rate_limited: Family::default(),
            token_cache: Family::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        m.register(&mut registry);
        Self { registry, ..m }
    }

    fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "rpc_duration",
            "gRPC calls by service, method and status code, and how long each took",
            Unit::Seconds,
            self.rpc_duration.clone(),
        );
        r.register(
            "rpc_in_flight",
            "gRPC calls being handled now",
            self.rpc_in_flight.clone(),
        );
        r.register(
            "refreshes",
            "OAuth refreshes by outcome: ok, transient, reauth, misconfigured",
            self.refresh.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, retrying, dead, gone",
            self.deliveries.clone(),
        );
        r.register_with_unit(
            "webhook_oldest_pending_age",
            "Age of the oldest webhook delivery not yet sent (0 when none waits)",
            Unit::Seconds,
            self.oldest_pending_delivery.clone(),
        );
        r.register_with_unit(
            "expiry_scan_duration",
            "How long each expiry scan took",
            Unit::Seconds,
            self.scan_duration.clone(),
        );
        r.register(
            "expiry_scan_items",
            "Credentials the expiry scanner expired or warned about",
            self.scan_items.clone(),
        );
        r.register(
            "retention_pruned",
            "Rows the retention job deleted: request_ids, oauth_states, deliveries, events",
            self.pruned.clone(),
        );
        r.register(
            "seals",
            "Secrets sealed, by master key version",
            self.seals.clone(),
        );
        r.register(
            "key_legacy_seals",
            "Format-1 seals made directly under each master key version (a lower bound); \
             rotate at 2^31",
            self.legacy_seals.clone(),
        );
        r.register(
            "rewrap_values",
            "Sealed values the rewrap job handled, by outcome: rewrapped, raced, failed",
            self.rewrapped.clone(),
        );
        r.register(
            "audit_chained_records",
            "Audit records the chain job linked into their tenant's hash chain",
            self.audit_chained.clone(),
        );
        r.register(
            "connect_outcomes",
            "Hosted connect page outcomes",
            self.connect.clone(),
        );
        r.register(
            "external_auth_outcomes",
            "External auth logins by outcome",
            self.external_auth.clone(),
        );
        r.register(
            "db_connections",
            "Database pool connections by state: in_use, idle",
            self.db_connections.clone(),
        );
        r.register_with_unit(
            "db_ping",
            "Round trip of a SELECT 1 at scrape time, pool acquisition included",
            Unit::Seconds,
            self.db_ping.clone(),
        );
        r.register(
            "db_reads_shared",
            "Reveals' reads answered by a database statement shared with other reads",
            self.db_reads_shared.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by listener",
            self.tls_handshake_failures.clone(),
        );
        r.register(
            "tls_reloads",
            "Certificate reloads by outcome: ok, error",
            self.tls_reloads.clone(),
        );
        r.register(
            "tls_cert_not_after_timestamp_seconds",
            "When the serving certificate expires (Unix time)",
            self.tls_cert_not_after.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by a rate limit: token, client_ip",
            self.rate_limited.clone(),
        );
        r.register(
            "token_cache_lookups",
            "Service tokens authenticated from the token cache (hit) or read from the database (miss)",
            self.token_cache.clone(),
        );
    }

    /// One finished gRPC call.
    pub fn rpc(&self, labels: &RpcLabels, took: Duration) {
        self.rpc_duration
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// A gRPC call started (`+1`) or ended (`-1`).
    pub fn rpc_in_flight(&self, service: &'static str, delta: i64) {
        self.rpc_in_flight
            .get_or_create(&ServiceLabel { service })
            .inc_by(delta);
    }

    pub fn refreshed(&self, outcome: &'static str) {
        self.refresh.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn delivery(&self, outcome: &'static str) {
        self.deliveries.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn scanned(&self, took: Duration, expired: usize, warned: usize) {
        self.scan_duration.observe(took.as_secs_f64());
        for (outcome, n) in [("expired", expired), ("warned", warned)] {
            self.scan_items
                .get_or_create(&Outcome { outcome })
                .inc_by(n as u64);
        }
    }

    pub fn pruned(&self, kind: &'static str, rows: u64) {
        self.pruned.get_or_create(&Kind { kind }).inc_by(rows);
    }

    /// What the cluster knows of `key_version`'s format-1 seals.
    pub fn set_legacy_seals(&self, key_version: u32, seals: u64) {
        self.legacy_seals
            .get_or_create(&KeyVersion { key_version })
            .set(i64::try_from(seals).unwrap_or(i64::MAX));
    }

    /// Audit records the chain job linked.
    pub fn audit_chained(&self, records: u64) {
        self.audit_chained.inc_by(records);
    }

    /// One rewrap batch's outcome.
    pub fn count_rewrap(&self, rewrapped: u64, raced: u64, failed: u64) {
        for (outcome, n) in [
            ("rewrapped", rewrapped),
            ("raced", raced),
            ("failed", failed),
        ] {
            self.rewrapped.get_or_create(&Outcome { outcome }).inc_by(n);
        }
    }

    pub fn connect(&self, outcome: &'static str) {
        self.connect.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn external_auth(&self, outcome: &'static str) {
        self.external_auth.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn tls_handshake_failed(&self, listener: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&Listener { listener })
            .inc();
    }

    /// A certificate (re)load; `not_after` is the serving certificate's expiry.
    pub fn tls_loaded(&self, ok: bool, not_after: Option<i64>) {
        let outcome = if ok { "ok" } else { "error" };
        self.tls_reloads.get_or_create(&Outcome { outcome }).inc();
        if let Some(t) = not_after {
            self.tls_cert_not_after.set(t);
        }
    }

    /// A request refused by the `limit` rate limit (`token` or `client_ip`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&Limited { limit }).inc();
    }

    /// A token looked up in the token cache: found there (`hit`) or read (`miss`).
    pub fn token_cache(&self, hit: bool) {
        let outcome = if hit { "hit" } else { "miss" };
        self.token_cache.get_or_create(&Outcome { outcome }).inc();
    }

    /// The text exposition, with the sampled values brought up to date first.
    pub fn encode(&self, sampled: &Sampled) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        for (state, n) in [("in_use", sampled.db_in_use), ("idle", sampled.db_idle)] {
            self.db_connections
                .get_or_create(&State { state })
                .set(i64::from(n));
        }
        self.db_ping
            .set(sampled.db_ping.map_or(f64::NAN, |d| d.as_secs_f64()));
        let shared = &self.db_reads_shared;
        shared.inc_by(sampled.db_reads_shared.saturating_sub(shared.get()));
        self.oldest_pending_delivery
            .set(sampled.oldest_pending_delivery.as_secs_f64());
        for &(key_version, total) in &sampled.seals {
            let counter = self.seals.get_or_create(&KeyVersion { key_version });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_and_the_sampled_values() {
        let m = Metrics::new();
        m.rpc(
            &RpcLabels {
                service: "credvault.v1.CredentialService",
                method: "RevealCredential",
                code: "OK",
            },
            Duration::from_millis(3),
        );
        m.refreshed("ok");
        let text = m.encode(&Sampled {
            db_in_use: 2,
            db_idle: 3,
            db_reads_shared: 5,
            seals: vec![(1, 7)],
            ..Sampled::default()
        });
        assert!(text.contains(
            "credvault_rpc_duration_seconds_count{service=\"credvault.v1.CredentialService\",method=\"RevealCredential\",code=\"OK\"} 1"
        ), "{text}");
        assert!(text.contains("credvault_refreshes_total{outcome=\"ok\"} 1"));
        assert!(text.contains("credvault_db_connections{state=\"in_use\"} 2"));
        assert!(text.contains("credvault_seals_total{key_version=\"1\"} 7"));
        assert!(text.contains("credvault_db_reads_shared_total 5"), "{text}");
        // A second scrape does not count the seals twice.
        let text = m.encode(&Sampled {
            seals: vec![(1, 9)],
            ..Sampled::default()
        });
        assert!(text.contains("credvault_seals_total{key_version=\"1\"} 9"));
        assert!(text.ends_with("# EOF\n"));
    }
}
