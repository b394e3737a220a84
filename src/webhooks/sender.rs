//! One delivery attempt: POST the event with Standard Webhooks headers, and classify
//! the answer. Redirects are not followed (a 3xx is a failure).
use std::time::Duration;

use url::Host;

use super::ssrf::{Guard, GuardedResolver};

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered(u16),
    /// 410 Gone: the receiver asks us to stop; the endpoint is disabled.
    Gone,
    /// Anything else: retried on the schedule (`Retry-After` honoured when longer).
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

#[derive(Clone)]
pub struct WebhookSender {
    http: reqwest::Client,
    guard: Guard,
}

impl WebhookSender {
    pub fn new(guard: Guard, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .dns_resolver(std::sync::Arc::new(GuardedResolver(guard)))
            .user_agent(concat!("credvault-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only a broken TLS backend makes this fail; the default client still works.
            .unwrap_or_default();
        Self { http, guard }
    }

    pub async fn send(
        &self,
        url: &str,
        msg_id: &str,
        timestamp: i64,
        signatures: &str,
        body: String,
    ) -> Attempt {
        let failed = |status: Option<u16>, error: String| Attempt::Failed {
            status,
            error,
            retry_after: None,
        };
        let parsed = match self.guard.check_shape(url) {
            Ok(u) => u,
            Err(e) => return failed(None, format!("endpoint URL {e}")),
        };
        // IP literals skip the resolver, so they are checked here.
        let literal = match parsed.host() {
            Some(Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !self.guard.address_allowed(ip)) {
            return failed(None, "endpoint address is not allowed".into());
        }
        let response = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return failed(None, "timed out".into()),
            Err(_) => return failed(None, "could not connect".into()),
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => Attempt::Delivered(status),
            410 => Attempt::Gone,
            _ => Attempt::Failed {
                status: Some(status),
                error: format!("HTTP {status}"),
                retry_after: response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            },
        }
    }
}
