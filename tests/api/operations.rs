//! The production surface: `/metrics` scraped and parsed, `/readyz`, the metrics
//! listener, rate limits per token and per client IP, the cap on open event streams,
//! and `credvault health`.
use std::collections::BTreeMap;
use std::process::Command;

use credvault::proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::{api_key, code_of, create, get, reveal};
use crate::support::{Backend, spawn_app};

/// One sample line of the exposition: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the OpenMetrics text format strictly enough that a malformed line fails.
fn parse(text: &str) -> BTreeMap<String, Vec<Sample>> {
    assert!(text.ends_with("# EOF\n"), "no # EOF terminator");
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect(line)),
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').expect(line);
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        samples
            .entry(name.to_owned())
            .or_default()
            .push(Sample { labels, value });
    }
    samples
}

/// The value of `name` whose labels include all of `want`.
fn value(samples: &BTreeMap<String, Vec<Sample>>, name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .find(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map_or(0.0, |s| s.value)
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    response.text().await.unwrap()
}

/// A well-formed id of no credential.
fn missing() -> String {
    credvault::ids::new_id(credvault::ids::CREDENTIAL_PREFIX)
}

fn rpc<'a>(method: &'a str, code: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("service", "credvault.v1.CredentialService"),
        ("method", method),
        ("code", code),
    ]
}

crate::both_backends! {
    async fn metrics_count_calls_and_outcomes_without_identifying_anyone(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let created = c
            .create_credential(create("user-canary-7731", api_key("sk_live_metrics_canary")))
            .await
            .unwrap()
            .into_inner();
        c.reveal_credential(reveal(&created.id)).await.unwrap();
        let (code, _) = code_of(c.get_credential(get(&missing())).await);
        assert_eq!(code, Code::NotFound);
        app.vault.scan_expiries(100).await.unwrap();
        let (status, _) = crate::support::browse(&format!("http://{}/connect/nolink", app.http_addr)).await;
        assert_eq!(status, 404);

        let text = scrape(app.http_addr).await;
        let m = parse(&text);
        let count = "credvault_rpc_duration_seconds_count";
        assert_eq!(value(&m, count, &rpc("CreateCredential", "OK")), 1.0, "{text}");
        assert_eq!(value(&m, count, &rpc("RevealCredential", "OK")), 1.0);
        assert_eq!(value(&m, count, &rpc("GetCredential", "NOT_FOUND")), 1.0);
        assert_eq!(
            value(&m, "credvault_rpc_in_flight", &[("service", "credvault.v1.CredentialService")]),
            0.0
        );
        assert!(value(&m, "credvault_seals_total", &[("key_version", "1")]) >= 1.0);
        assert_eq!(value(&m, "credvault_expiry_scan_duration_seconds_count", &[]), 1.0);
        assert_eq!(value(&m, "credvault_connect_outcomes_total", &[("outcome", "link_not_found")]), 1.0);
        assert!(m.contains_key("credvault_db_connections"));
        assert!(value(&m, "credvault_db_ping_seconds", &[]) > 0.0);
        assert_eq!(value(&m, "credvault_webhook_oldest_pending_age_seconds", &[]), 0.0);
        // Nothing that identifies a tenant, a user, a credential or a token.
        for needle in [
            t.id.as_str(),
            created.id.as_str(),
            "user-canary-7731",
            "example.com",
            "sk_live_metrics_canary",
            secrecy::ExposeSecret::expose_secret(&t.token),
        ] {
            assert!(!text.contains(needle), "{needle} in /metrics");
        }
    }

    async fn readyz_and_healthz_answer(app) {
        for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let response = reqwest::get(format!("http://{}{path}", app.http_addr)).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.text().await.unwrap(), body);
        }
    }
}

crate::both_backends! {
    tweak = |c| credvault::Config { token_rate_limit_per_sec: 1, token_rate_limit_burst: 3, ..c };

    async fn a_token_over_its_rate_limit_is_told_when_to_come_back(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let mut refused = None;
        for _ in 0..10 {
            if let Err(status) = c.get_credential(get(&missing())).await
                && status.code() == Code::ResourceExhausted
            {
                refused = Some(status);
                break;
            }
        }
        let refused = refused.expect("the 4th quick call is over a burst of 3");
        assert!(refused.message().contains("rate limit"), "{}", refused.message());
        let retry = refused.get_details_retry_info().expect("RetryInfo in the details");
        let delay = retry.retry_delay.expect("a retry delay");
        assert!(delay > std::time::Duration::ZERO && delay <= std::time::Duration::from_secs(1));
        // Another token of the same tenant has its own bucket.
        let other = app.token(&t, &["credentials:read"]).await;
        let mut c2 = app.client(&other).await;
        let (code, _) = code_of(c2.get_credential(get(&missing())).await);
        assert_eq!(code, Code::NotFound);
        let m = parse(&scrape(app.http_addr).await);
        assert!(value(&m, "credvault_rate_limited_total", &[("limit", "token")]) >= 1.0);
        assert_eq!(
            value(&m, "credvault_rpc_duration_seconds_count", &rpc("GetCredential", "RESOURCE_EXHAUSTED")),
            1.0
        );
    }
}

crate::both_backends! {
    tweak = |c| credvault::Config { watch_streams_per_tenant: 1, ..c };

    async fn a_tenant_may_hold_only_so_many_event_streams(app) {
        let t = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        let mut w = app.webhooks(&t.token).await;
        let first = w.watch_events(pb::WatchEventsRequest::default()).await.unwrap();
        let (code, message) = code_of(w.watch_events(pb::WatchEventsRequest::default()).await);
        assert_eq!(code, Code::ResourceExhausted);
        assert!(message.contains("watch_streams_per_tenant"), "{message}");
        let mut w2 = app.webhooks(&other.token).await;
        assert!(w2.watch_events(pb::WatchEventsRequest::default()).await.is_ok());
        // Closing the stream gives its place back (once the server sees the reset).
        drop(first);
        let mut reopened = false;
        for _ in 0..100 {
            if w.watch_events(pb::WatchEventsRequest::default()).await.is_ok() {
                reopened = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(reopened);
    }
}

crate::both_backends! {
    tweak = |c| credvault::Config {
        http_rate_limit_per_minute: 2,
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..c
    };

    async fn browsers_are_limited_per_address_and_metrics_can_live_apart(app) {
        let url = format!("http://{}/connect/nolink", app.http_addr);
        assert_eq!(crate::support::browse(&url).await.0, 404);
        assert_eq!(crate::support::browse(&url).await.0, 404);
        let limited = reqwest::get(&url).await.unwrap();
        assert_eq!(limited.status(), 429);
        let wait: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
        // /metrics is on metrics_listen only; the probes answer on both.
        let main = reqwest::get(format!("http://{}/metrics", app.http_addr)).await.unwrap();
        assert_eq!(main.status(), 404);
        let ops = app.metrics_addr.unwrap();
        let m = parse(&scrape(ops).await);
        assert_eq!(value(&m, "credvault_rate_limited_total", &[("limit", "client_ip")]), 1.0);
        let ready = reqwest::get(format!("http://{ops}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200);
    }
}

// Multi-threaded: the probe blocks this thread while the server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_exits_0_when_serving_and_1_otherwise() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let probe = |server: String| {
        Command::new(env!("CARGO_BIN_EXE_credvault"))
            .args(["health", "--server", &server, "--timeout-secs", "5"])
            .env_remove("CREDVAULT_TOKEN")
            .output()
            .unwrap()
    };
    let up = probe(format!("http://{}", app.addr));
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&up.stdout).trim(), "SERVING");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap();
    drop(closed);
    let down = probe(format!("http://{nobody}"));
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));
}
