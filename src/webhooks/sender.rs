//! One delivery attempt: POST the event with Standard Webhooks headers through the
//! guarded outbound client, and classify the answer. Redirects are not followed (a 3xx
//! is a failure).
use std::time::Duration;

use crate::outbound::{Guard, Outbound, SendError};

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
    outbound: Outbound,
    guard: Guard,
    timeout: Duration,
}

impl WebhookSender {
    pub fn new(outbound: Outbound, guard: Guard, timeout: Duration) -> Self {
        Self {
            outbound,
            guard,
            timeout,
        }
    }

    pub async fn send(
        &self,
        url: &str,
        msg_id: &str,
        timestamp: i64,
        signatures: &str,
        body: String,
    ) -> Attempt {
        let failed = |error: String| Attempt::Failed {
            status: None,
            error,
            retry_after: None,
        };
        // The URL's shape is checked once, by `Outbound::send`, with the address policy.
        let Ok(parsed) = url::Url::parse(url) else {
            return failed("endpoint URL must be an absolute URL".into());
        };
        let request = self
            .outbound
            .request(reqwest::Method::POST, parsed)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(body)
            .build();
        let Ok(request) = request else {
            return failed("the request could not be built".into());
        };
        let response = match self.outbound.send(request, self.guard, self.timeout).await {
            Ok(r) => r,
            Err(SendError::Shape(e)) => return failed(format!("endpoint URL {e}")),
            Err(e) => return failed(e.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A host name that resolves only to loopback reads as a policy refusal in the
    /// delivery's `last_error`, not as an outage.
    #[tokio::test]
    async fn a_blocked_host_name_says_so() {
        let guard = Guard {
            allow_http: true,
            allow_private: false,
        };
        let sender =
            WebhookSender::new(Outbound::new(None).unwrap(), guard, Duration::from_secs(2));
        let attempt = sender
            .send("http://localhost:9/hook", "evt_1", 1, "v1,x", "{}".into())
            .await;
        let Attempt::Failed { error, status, .. } = attempt else {
            panic!("{attempt:?}");
        };
        assert_eq!(status, None);
        assert!(
            error.contains("blocked by the address policy") && error.contains("localhost"),
            "{error}"
        );
    }
}
