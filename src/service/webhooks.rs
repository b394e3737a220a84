//! Webhook endpoints, the event log, deliveries, and putting work back in the queue.
use secrecy::{ExposeSecret, SecretString};

use super::pagination::{self, Cursor, Page};
use super::{Caller, Vault};
use crate::clock::Millis;
use crate::crypto::AadContext;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::{EVENT_TYPES, Event};
use crate::store::{DeliveryFilter, Window};
use crate::webhooks::{Delivery, DeliveryStatus, Endpoint, SealedEndpoint, signing};

/// How long a rotated-out secret keeps signing unless the caller says otherwise.
pub const DEFAULT_OVERLAP_SECS: i64 = 24 * 60 * 60;
const MAX_ENDPOINTS_PER_TENANT: usize = 50;

/// An update request as received; `None` keeps a setting.
#[derive(Debug, Default)]
pub struct EndpointChanges {
    pub id: String,
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub expected_version: Option<i64>,
}

fn endpoint_not_found(id: &str) -> Error {
    Error::NotFound(format!("webhook endpoint {id} not found"))
}

fn aad_of(e: &Endpoint) -> AadContext<'_> {
    AadContext {
        tenant_id: &e.tenant_id,
        user_id: "",
        credential_id: &e.id,
    }
}

/// A sealed signing secret and, during a rotation's overlap, the one it replaced.
#[derive(Clone, Copy)]
pub(super) struct RotatingSecret<'a> {
    pub current: Option<&'a [u8]>,
    pub previous: Option<&'a [u8]>,
    pub previous_until: Option<Millis>,
}

/// How long a rotated-out secret keeps signing: `asked` seconds (default a day),
/// at most a week.
pub(super) fn overlap(asked: Option<i64>) -> Result<i64> {
    let overlap = asked.unwrap_or(DEFAULT_OVERLAP_SECS);
    if (0..=7 * DEFAULT_OVERLAP_SECS).contains(&overlap) {
        Ok(overlap)
    } else {
        Err(Error::invalid(
            "overlap_seconds",
            "must be from 0 to 604800 (a week)",
        ))
    }
}

fn check_event_types(types: &[String]) -> Result<()> {
    for t in types {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(Error::invalid(
                "event_types",
                format!("unknown event type; use any of {}", EVENT_TYPES.join(", ")),
            ));
        }
    }
    Ok(())
}

impl Vault {
    /// A URL the webhook address policy lets notifications go to; `field` names it in
    /// errors.
    pub(super) async fn check_endpoint_url(&self, field: &'static str, url: &str) -> Result<()> {
        if url.len() > 2048 {
            return Err(Error::invalid(field, "must be at most 2048 characters"));
        }
        self.settings
            .webhook_guard
            .check(url)
            .await
            .map(|_| ())
            .map_err(|reason| Error::invalid(field, reason))
    }

    pub async fn create_endpoint(
        &self,
        caller: &Caller,
        url: &str,
        event_types: Vec<String>,
    ) -> Result<(Endpoint, SecretString)> {
        self.check_endpoint_url("url", url).await?;
        check_event_types(&event_types)?;
        let existing = self
            .store
            .list_endpoints(&caller.tenant_id, Window::ALL)
            .await?;
        if existing.len() >= MAX_ENDPOINTS_PER_TENANT {
            return Err(Error::ResourceExhausted(format!(
                "a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints"
            )));
        }
        let now = self.now();
        let endpoint = Endpoint {
            tenant_id: caller.tenant_id.clone(),
            id: ids::new_id(ids::ENDPOINT_PREFIX),
            url: url.to_owned(),
            event_types,
            enabled: true,
            disabled_reason: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let secret = signing::new_secret();
        let sealed = SealedEndpoint {
            secret: self
                .tenant_keys
                .seal(&aad_of(&endpoint), secret.expose_secret().as_bytes())
                .await?,
            previous_secret: None,
            previous_secret_until: None,
            endpoint,
        };
        self.store.insert_endpoint(&sealed).await?;
        self.record(&self.audit(caller, "webhook.create", &sealed.endpoint.id, ""))
            .await?;
        Ok((sealed.endpoint, secret))
    }

    async fn endpoint(&self, caller: &Caller, id: &str) -> Result<SealedEndpoint> {
        if !ids::is_well_formed(id, ids::ENDPOINT_PREFIX) {
            return Err(Error::invalid(
                "id",
                "must be a webhook endpoint id such as whk_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
            ));
        }
        self.store
            .get_endpoint(&caller.tenant_id, id)
            .await?
            .ok_or_else(|| endpoint_not_found(id))
    }

    pub async fn list_endpoints(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<SealedEndpoint>> {
        let cursor = Cursor::new(page_size, page_token, ids::ENDPOINT_PREFIX)?;
        let endpoints = self
            .store
            .list_endpoints(&caller.tenant_id, cursor.window())
            .await?;
        Ok(cursor.finish(endpoints, |e| &e.endpoint.id))
    }

    async fn write_endpoint(
        &self,
        current: &SealedEndpoint,
        next: SealedEndpoint,
    ) -> Result<SealedEndpoint> {
        if self
            .store
            .update_endpoint(&next, current.endpoint.version)
            .await?
        {
            Ok(next)
        } else {
            Err(Error::Aborted(format!(
                "webhook endpoint {} changed concurrently; re-read it and retry",
                current.endpoint.id
            )))
        }
    }

    pub async fn update_endpoint(
        &self,
        caller: &Caller,
        req: EndpointChanges,
    ) -> Result<SealedEndpoint> {
        let current = self.endpoint(caller, &req.id).await?;
        if let Some(expected) = req
            .expected_version
            .filter(|v| *v != current.endpoint.version)
        {
            return Err(Error::Aborted(format!(
                "webhook endpoint {} is at version {}, not {expected}; re-read it and retry",
                req.id, current.endpoint.version
            )));
        }
        let mut next = current.clone();
        if let Some(url) = req.url {
            self.check_endpoint_url("url", &url).await?;
            next.endpoint.url = url;
        }
        if let Some(types) = req.event_types {
            check_event_types(&types)?;
            next.endpoint.event_types = types;
        }
        if let Some(enabled) = req.enabled {
            next.endpoint.enabled = enabled;
            next.endpoint.disabled_reason =
                (!enabled).then(|| "disabled by an operator".to_owned());
        }
        next.endpoint.version += 1;
        next.endpoint.updated_at = self.now();
        let written = self.write_endpoint(&current, next).await?;
        self.record(&self.audit(caller, "webhook.update", &req.id, ""))
            .await?;
        Ok(written)
    }

    pub async fn delete_endpoint(&self, caller: &Caller, id: &str) -> Result<()> {
        self.endpoint(caller, id).await?;
        if self.store.delete_endpoint(&caller.tenant_id, id).await? {
            self.record(&self.audit(caller, "webhook.delete", id, ""))
                .await
        } else {
            Err(endpoint_not_found(id))
        }
    }

    /// A new secret; the current one keeps signing alongside it for `overlap_secs`.
    pub async fn rotate_endpoint_secret(
        &self,
        caller: &Caller,
        id: &str,
        overlap_secs: Option<i64>,
    ) -> Result<(SealedEndpoint, SecretString)> {
        let overlap = overlap(overlap_secs)?;
        let current = self.endpoint(caller, id).await?;
        let now = self.now();
        let secret = signing::new_secret();
        let mut next = current.clone();
        next.endpoint.version += 1;
        next.endpoint.updated_at = now;
        next.previous_secret = (overlap > 0).then(|| current.secret.clone());
        next.previous_secret_until = (overlap > 0).then(|| now + overlap * 1000);
        next.secret = self
            .tenant_keys
            .seal(&aad_of(&next.endpoint), secret.expose_secret().as_bytes())
            .await?;
        let written = self.write_endpoint(&current, next).await?;
        self.record(&self.audit(caller, "webhook.rotate_secret", id, ""))
            .await?;
        Ok((written, secret))
    }

    /// The secrets that sign now: the current one, and the previous one during an overlap.
    pub(super) async fn signing_secrets(
        &self,
        e: &SealedEndpoint,
        now: Millis,
    ) -> Result<Vec<zeroize::Zeroizing<String>>> {
        let pair = RotatingSecret {
            current: Some(&e.secret),
            previous: e.previous_secret.as_deref(),
            previous_until: e.previous_secret_until,
        };
        self.open_rotating(&aad_of(&e.endpoint), "webhook endpoint secret", pair, now)
            .await
    }

    /// The secrets of a rotating pair that sign at `now`: the current one, and the
    /// previous one while its overlap lasts.
    pub(super) async fn open_rotating(
        &self,
        aad: &AadContext<'_>,
        what: &str,
        pair: RotatingSecret<'_>,
        now: Millis,
    ) -> Result<Vec<zeroize::Zeroizing<String>>> {
        let live_previous = pair
            .previous
            .filter(|_| pair.previous_until.is_some_and(|t| t > now));
        let mut opened = Vec::with_capacity(2);
        for blob in pair.current.into_iter().chain(live_previous) {
            opened.push(self.open_text(aad, blob, what).await?);
        }
        Ok(opened)
    }

    pub async fn list_events(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Event>, String)> {
        let size = pagination::size(page_size)?;
        let after = pagination::decode(page_token, ids::EVENT_PREFIX)?;
        let rows = self
            .store
            .list_events(&caller.tenant_id, after.as_deref(), size + 1)
            .await?;
        Ok(pagination::finish(rows, size, |e| &e.id))
    }

    /// Events after `after` (for streaming), at most `limit`.
    pub async fn events_after(
        &self,
        caller: &Caller,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        if let Some(id) = after
            && !ids::is_well_formed(id, ids::EVENT_PREFIX)
        {
            return Err(Error::invalid(
                "after_event_id",
                "must be an event id such as evt_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
            ));
        }
        Ok(self
            .store
            .list_events(&caller.tenant_id, after, limit)
            .await?)
    }

    /// The id of the newest event, where a watch with no cursor starts.
    pub async fn latest_event_id(&self, caller: &Caller) -> Result<Option<String>> {
        Ok(self.store.latest_event_id(&caller.tenant_id).await?)
    }

    pub async fn list_deliveries(
        &self,
        caller: &Caller,
        filter: DeliveryFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Delivery>, String)> {
        let size = pagination::size(page_size)?;
        let after = pagination::decode(page_token, ids::DELIVERY_PREFIX)?;
        let rows = self
            .store
            .list_deliveries(&caller.tenant_id, &filter, after.as_deref(), size + 1)
            .await?;
        Ok(pagination::finish(rows, size, |d| &d.id))
    }

    /// Sends an event again to every endpoint it went to.
    pub async fn redeliver_event(&self, caller: &Caller, event_id: &str) -> Result<u64> {
        if !ids::is_well_formed(event_id, ids::EVENT_PREFIX) {
            return Err(Error::invalid(
                "event_id",
                "must be an event id such as evt_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
            ));
        }
        let filter = DeliveryFilter {
            event_id: Some(event_id.to_owned()),
            ..DeliveryFilter::default()
        };
        let requeued = self
            .store
            .requeue_deliveries(&caller.tenant_id, &filter, self.now())
            .await?;
        if requeued == 0 {
            return Err(Error::NotFound(format!(
                "event {event_id} has no deliveries to send again"
            )));
        }
        self.record(&self.audit(caller, "webhook.redeliver", event_id, ""))
            .await?;
        Ok(requeued)
    }

    /// Sends dead letters again (of one endpoint, or every endpoint).
    pub async fn replay_dead_letters(&self, caller: &Caller, endpoint_id: &str) -> Result<u64> {
        if !endpoint_id.is_empty() {
            self.endpoint(caller, endpoint_id).await?;
        }
        let filter = DeliveryFilter {
            status: Some(DeliveryStatus::Dead),
            endpoint_id: Some(endpoint_id.to_owned()).filter(|s| !s.is_empty()),
            ..DeliveryFilter::default()
        };
        let requeued = self
            .store
            .requeue_deliveries(&caller.tenant_id, &filter, self.now())
            .await?;
        self.record(&self.audit(caller, "webhook.replay_dead_letters", endpoint_id, ""))
            .await?;
        Ok(requeued)
    }
}
