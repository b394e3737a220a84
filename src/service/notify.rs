//! The notification engine: the expiry scanner's pass, fanning events out to
//! deliveries, and one delivery attempt with its retry schedule.
use rand::Rng;

use super::Vault;
use crate::clock::Millis;
use crate::error::Result;
use crate::webhooks::sender::Attempt;
use zeroize::Zeroizing;

use crate::webhooks::{AttemptRecord, ClaimedDelivery, Delivery, DeliveryStatus, signing};

/// What one scanner pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanPass {
    pub expired: usize,
    pub warned: usize,
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPass {
    pub dispatched: usize,
    pub claimed: usize,
    pub delivered: usize,
    pub failed: usize,
}

/// The outcome of one attempt, for the pass's tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    Failed,
}

impl Vault {
    /// Expires what has lapsed and announces what will, in batches of `batch`, until
    /// nothing is left. Smaller horizons go first, so a credential already inside the
    /// 1-day horizon is not also told it has a week.
    pub async fn scan_expiries(&self, batch: u32) -> Result<ScanPass> {
        let started = std::time::Instant::now();
        let now = self.now();
        let mut pass = ScanPass::default();
        loop {
            let events = self.store.expire_due(now, batch).await?;
            pass.expired += events.len();
            if events.len() < batch as usize {
                break;
            }
        }
        for &horizon in &self.settings.expiry_horizons_ms {
            loop {
                let events = self.store.warn_expiring(now, horizon, batch).await?;
                pass.warned += events.len();
                if events.len() < batch as usize {
                    break;
                }
            }
        }
        self.metrics
            .scanned(started.elapsed(), pass.expired, pass.warned);
        Ok(pass)
    }

    /// Fans new events out to deliveries, then claims due deliveries (leased to this
    /// instance) for sending.
    pub async fn claim_deliveries(&self, batch: u32) -> Result<(usize, Vec<ClaimedDelivery>)> {
        let now = self.now();
        let mut dispatched = 0;
        loop {
            let n = self.store.dispatch_events(now, batch).await?;
            dispatched += n;
            if n < batch as usize {
                break;
            }
        }
        let until = now + self.settings.delivery_lease_ms;
        let claimed = self
            .store
            .claim_deliveries(&self.instance, now, until, batch)
            .await?;
        Ok((dispatched, claimed))
    }

    /// Hands a claimed delivery back unattempted (shutdown): its lease is released.
    pub async fn release_delivery(&self, delivery_id: &str) -> Result<()> {
        self.store
            .release_delivery(delivery_id, &self.instance)
            .await?;
        Ok(())
    }

    /// One attempt at a claimed delivery, recorded (schedule, dead letter, 410).
    #[tracing::instrument(
        name = "delivery_attempt",
        skip_all,
        fields(
            delivery = %claimed.delivery.id,
            tenant = %claimed.delivery.tenant_id,
            outcome = tracing::field::Empty,
        )
    )]
    pub async fn attempt_delivery(&self, claimed: ClaimedDelivery) -> Result<Sent> {
        let d = &claimed.delivery;
        let now = self.now();
        let target = self.delivery_target(d, now).await?;
        let attempt = match &target {
            Err(reason) => Attempt::Failed {
                status: None,
                error: reason.clone(),
                retry_after: None,
            },
            Ok((url, secrets)) => {
                // webhook-timestamp is this attempt's; webhook-id stays the event id.
                let timestamp = now.div_euclid(1000);
                let signatures: Vec<String> = secrets
                    .iter()
                    .filter_map(|s| {
                        signing::sign(s, &d.event_id, timestamp, claimed.payload.as_bytes())
                    })
                    .collect();
                self.sender
                    .send(
                        url,
                        &d.event_id,
                        timestamp,
                        &signatures.join(" "),
                        claimed.payload.clone(),
                    )
                    .await
            }
        };
        let record = self
            .attempt_record(d, attempt, target.is_err(), now)
            .await?;
        let outcome = match record.status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Pending => "retrying",
            DeliveryStatus::Dead if record.last_status == Some(410) => "gone",
            DeliveryStatus::Dead => "dead",
        };
        self.metrics.delivery(outcome);
        tracing::Span::current().record("outcome", outcome);
        let sent = if record.status == DeliveryStatus::Delivered {
            Sent::Delivered
        } else {
            Sent::Failed
        };
        if !self
            .store
            .record_attempt(&d.id, &self.instance, &record)
            .await?
        {
            tracing::warn!(delivery = %d.id, "delivery lease lapsed before the attempt was recorded");
        }
        Ok(sent)
    }

    /// What an attempt's result means for its delivery: delivered, retried on the
    /// schedule, or dead (schedule exhausted, nowhere to send, 410, which also
    /// disables an endpoint).
    async fn attempt_record(
        &self,
        d: &Delivery,
        attempt: Attempt,
        unusable: bool,
        now: Millis,
    ) -> Result<AttemptRecord> {
        let attempts = d.attempts + 1;
        Ok(match attempt {
            Attempt::Delivered(status) => AttemptRecord {
                status: DeliveryStatus::Delivered,
                attempts,
                next_attempt_at: now,
                last_status: Some(i64::from(status)),
                last_error: None,
                at: now,
            },
            Attempt::Gone => {
                let reason = "the receiver answered 410 Gone";
                // A link's notify_url is not an endpoint: only its delivery ends.
                if d.url.is_none() {
                    self.store
                        .disable_endpoint(&d.tenant_id, &d.endpoint_id, reason, now)
                        .await?;
                    tracing::warn!(endpoint = %d.endpoint_id, "webhook endpoint answered 410 Gone: disabled");
                }
                AttemptRecord {
                    status: DeliveryStatus::Dead,
                    attempts,
                    next_attempt_at: now,
                    last_status: Some(410),
                    last_error: Some(reason.into()),
                    at: now,
                }
            }
            Attempt::Failed {
                status,
                error,
                retry_after,
            } => {
                let schedule = &self.settings.webhook_schedule_ms;
                let next_delay = usize::try_from(attempts)
                    .ok()
                    .and_then(|n| schedule.get(n))
                    .copied();
                let (state, next_at) = match next_delay {
                    Some(delay) if !unusable => {
                        let asked = retry_after
                            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                        (DeliveryStatus::Pending, now + jitter(delay).max(asked))
                    }
                    // Schedule exhausted, or nowhere to send: a dead letter to replay.
                    _ => (DeliveryStatus::Dead, now),
                };
                AttemptRecord {
                    status: state,
                    attempts,
                    next_attempt_at: next_at,
                    last_status: status.map(i64::from),
                    last_error: Some(error),
                    at: now,
                }
            }
        })
    }
}

/// Where a delivery goes and the secrets that sign it, or why it cannot be sent.
type Target = std::result::Result<(String, Vec<Zeroizing<String>>), String>;

impl Vault {
    /// A registered endpoint's URL and secrets, or a link's `notify_url` with the
    /// tenant's connect signing secrets.
    async fn delivery_target(&self, d: &Delivery, now: Millis) -> Result<Target> {
        if let Some(url) = &d.url {
            let secrets = super::links::notify_secrets(self, &d.tenant_id, now).await?;
            if secrets.is_empty() {
                return Ok(Err("the tenant's connect signing secret is missing".into()));
            }
            return Ok(Ok((url.clone(), secrets)));
        }
        Ok(
            match self
                .store
                .get_endpoint(&d.tenant_id, &d.endpoint_id)
                .await?
            {
                None => Err("endpoint deleted".into()),
                Some(e) if !e.endpoint.enabled => Err(format!(
                    "endpoint disabled: {}",
                    e.endpoint
                        .disabled_reason
                        .as_deref()
                        .unwrap_or("by an operator")
                )),
                Some(e) => Ok((e.endpoint.url.clone(), self.signing_secrets(&e, now).await?)),
            },
        )
    }
}

/// ±10% so retries of many deliveries spread out.
fn jitter(delay: Millis) -> Millis {
    let spread = delay / 10;
    if spread == 0 {
        return delay;
    }
    delay + rand::thread_rng().gen_range(-spread..=spread)
}
