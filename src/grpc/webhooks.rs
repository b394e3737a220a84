use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use secrecy::ExposeSecret;
use tonic::{Request, Response, Status};

use super::{authorize, convert};
use crate::limit::{Slot, Slots};
use crate::model::Scope;
use crate::proto::v1::{self as pb, webhook_service_server::WebhookService};
use crate::service::{Caller, EndpointChanges, Vault};
use crate::shutdown::Shutdown;
use crate::store::DeliveryFilter;

/// How often a watch looks for new events. Events from every replica land in the
/// database, so the stream polls it rather than an in-process channel.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// `credvault.v1.WebhookService`.
pub struct WebhookApi {
    vault: Vault,
    stop: Shutdown,
    /// Open `WatchEvents` streams per tenant.
    streams: Arc<Slots>,
}

impl WebhookApi {
    /// `stop` ends open `WatchEvents` streams on shutdown; each tenant may have
    /// `streams_per_tenant` open at once.
    pub fn new(vault: Vault, stop: Shutdown, streams_per_tenant: u32) -> Self {
        Self {
            vault,
            stop,
            streams: Slots::new(streams_per_tenant),
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// One `WatchEvents` stream: polls for events after `cursor` and yields them in
/// order while the client listens, the server runs and the caller's token still works
/// (re-checked every `stream_recheck_ms` on the vault's clock).
struct Watch {
    vault: Vault,
    caller: Caller,
    cursor: Option<String>,
    buffered: VecDeque<crate::model::Event>,
    stop: Shutdown,
    checked_at: crate::clock::Millis,
    ended: bool,
    /// The tenant's place among open streams, given back when the stream ends.
    _slot: Slot,
}

impl Watch {
    fn into_stream(self) -> EventStream {
        Box::pin(futures::stream::unfold(self, |mut w| async move {
            if w.ended {
                return None;
            }
            let item = w.next().await;
            w.ended = item.is_err();
            Some((item, w))
        }))
    }

    async fn next(&mut self) -> Result<pb::Event, Status> {
        loop {
            if self.stop.is_on() {
                return Err(Status::unavailable(
                    "the server is shutting down; reconnect with after_event_id set to the \
                     last event received",
                ));
            }
            if let Some(event) = self.buffered.pop_front() {
                return Ok(convert::event(event));
            }
            let now = self.vault.now();
            if now - self.checked_at >= self.vault.settings().stream_recheck_ms {
                self.vault.recheck(&self.caller).await?;
                self.checked_at = now;
            }
            let events = self
                .vault
                .events_after(&self.caller, self.cursor.as_deref(), 100)
                .await?;
            match events.last() {
                Some(last) => {
                    self.cursor = Some(last.id.clone());
                    self.buffered.extend(events);
                }
                None => tokio::select! {
                    () = tokio::time::sleep(WATCH_POLL) => {}
                    () = self.stop.wait() => {}
                },
            }
        }
    }
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    async fn create_webhook_endpoint(
        &self,
        req: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Reply<pb::CreateWebhookEndpointResponse> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksWrite).await?;
        let r = req.into_inner();
        let (endpoint, secret) = self
            .vault
            .create_endpoint(&caller, &r.url, r.event_types)
            .await?;
        tracing::info!(tenant = %caller.tenant_id, endpoint = %endpoint.id, "webhook endpoint created");
        Ok(Response::new(pb::CreateWebhookEndpointResponse {
            endpoint: Some(convert::endpoint(endpoint, None)),
            secret: secret.expose_secret().to_owned(),
        }))
    }

    async fn list_webhook_endpoints(
        &self,
        req: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Reply<pb::ListWebhookEndpointsResponse> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksRead).await?;
        let r = req.get_ref();
        let page = self
            .vault
            .list_endpoints(&caller, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListWebhookEndpointsResponse {
            endpoints: page
                .items
                .into_iter()
                .map(|e| convert::endpoint(e.endpoint, e.previous_secret_until))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_webhook_endpoint(
        &self,
        req: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Reply<pb::WebhookEndpoint> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksWrite).await?;
        let r = req.into_inner();
        let changes = EndpointChanges {
            id: r.id,
            url: r.url,
            event_types: r.event_types.map(|l| l.values),
            enabled: r.enabled,
            expected_version: r.expected_version,
        };
        let e = self.vault.update_endpoint(&caller, changes).await?;
        Ok(Response::new(convert::endpoint(
            e.endpoint,
            e.previous_secret_until,
        )))
    }

    async fn delete_webhook_endpoint(
        &self,
        req: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Reply<pb::DeleteWebhookEndpointResponse> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksWrite).await?;
        self.vault
            .delete_endpoint(&caller, &req.get_ref().id)
            .await?;
        Ok(Response::new(pb::DeleteWebhookEndpointResponse {}))
    }

    async fn rotate_webhook_secret(
        &self,
        req: Request<pb::RotateWebhookSecretRequest>,
    ) -> Reply<pb::RotateWebhookSecretResponse> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksWrite).await?;
        let r = req.get_ref();
        let (e, secret) = self
            .vault
            .rotate_endpoint_secret(&caller, &r.id, r.overlap_seconds)
            .await?;
        tracing::info!(tenant = %caller.tenant_id, endpoint = %r.id, "webhook secret rotated");
        Ok(Response::new(pb::RotateWebhookSecretResponse {
            endpoint: Some(convert::endpoint(e.endpoint, e.previous_secret_until)),
            secret: secret.expose_secret().to_owned(),
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Reply<pb::ListEventsResponse> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksRead).await?;
        let r = req.get_ref();
        let (events, next_page_token) = self
            .vault
            .list_events(&caller, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: events.into_iter().map(convert::event).collect(),
            next_page_token,
        }))
    }

    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Reply<pb::ListDeliveriesResponse> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksRead).await?;
        let r = req.into_inner();
        let filter = DeliveryFilter {
            status: convert::delivery_status(r.status)?,
            endpoint_id: Some(r.endpoint_id).filter(|s| !s.is_empty()),
            event_id: Some(r.event_id).filter(|s| !s.is_empty()),
        };
        let (deliveries, next_page_token) = self
            .vault
            .list_deliveries(&caller, filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: deliveries.into_iter().map(convert::delivery).collect(),
            next_page_token,
        }))
    }

    async fn redeliver_event(
        &self,
        req: Request<pb::RedeliverEventRequest>,
    ) -> Reply<pb::RequeueResponse> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksWrite).await?;
        let requeued = self
            .vault
            .redeliver_event(&caller, &req.get_ref().event_id)
            .await?;
        Ok(Response::new(pb::RequeueResponse {
            requeued: i64::try_from(requeued).unwrap_or(i64::MAX),
        }))
    }

    async fn replay_dead_letters(
        &self,
        req: Request<pb::ReplayDeadLettersRequest>,
    ) -> Reply<pb::RequeueResponse> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksWrite).await?;
        let requeued = self
            .vault
            .replay_dead_letters(&caller, &req.get_ref().endpoint_id)
            .await?;
        tracing::info!(tenant = %caller.tenant_id, requeued, "dead letters replayed");
        Ok(Response::new(pb::RequeueResponse {
            requeued: i64::try_from(requeued).unwrap_or(i64::MAX),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Reply<Self::WatchEventsStream> {
        let caller = authorize(&self.vault, &req, Scope::WebhooksRead).await?;
        let slot = self.streams.take(&caller.tenant_id).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "this tenant already has {} WatchEvents streams open on this server \
                 (watch_streams_per_tenant): close one, or reconnect later",
                self.streams.max()
            ))
        })?;
        let after = &req.get_ref().after_event_id;
        let cursor = if after.is_empty() {
            self.vault.latest_event_id(&caller).await?
        } else {
            // Validated here so a bad cursor fails the call rather than the stream.
            self.vault.events_after(&caller, Some(after), 1).await?;
            Some(after.clone())
        };
        let watch = Watch {
            vault: self.vault.clone(),
            caller,
            cursor,
            buffered: VecDeque::new(),
            stop: self.stop.clone(),
            checked_at: self.vault.now(),
            ended: false,
            _slot: slot,
        };
        Ok(Response::new(watch.into_stream()))
    }
}
