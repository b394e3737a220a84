//! Webhook notifications: endpoints, Standard Webhooks signing, the SSRF guard and
//! the HTTP sender. Delivery state lives in the store; the deliverer worker drives it.
use crate::clock::Millis;

pub mod sender;
pub mod signing;

/// A tenant's webhook endpoint (its signing secrets are sealed separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tenant_id: String,
    pub id: String,
    pub url: String,
    /// Event types delivered; empty means all.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why it was disabled (for example a 410 from the receiver).
    pub disabled_reason: Option<String>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Endpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.enabled
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }
}

/// An endpoint row: settings plus sealed secrets. During a rotation's overlap the
/// previous secret signs too.
#[derive(Clone)]
pub struct SealedEndpoint {
    pub endpoint: Endpoint,
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<Millis>,
}

impl std::fmt::Debug for SealedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedEndpoint")
            .field("endpoint", &self.endpoint)
            .field("secret", &"[sealed]")
            .field("previous_secret_until", &self.previous_secret_until)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// The retry schedule ran out (or the endpoint is gone): a dead letter.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One (event, endpoint) pair and how its delivery is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub delivered_at: Option<Millis>,
    /// Set for a connect link's `notify_url` (then `endpoint_id` is the link's id and
    /// the tenant's connect secret signs).
    pub url: Option<String>,
}

/// A delivery claimed for sending, with what to send.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub payload: String,
}

/// What an attempt came to, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub at: Millis,
}
