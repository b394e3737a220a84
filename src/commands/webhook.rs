//! `credvault webhook …`: endpoints, events, deliveries and replay (WebhookService).
use clap::Subcommand;
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status, time};
use crate::ClientArgs;

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint; its whsec_ signing secret is printed once.
    Create {
        /// The endpoint's https URL.
        url: String,
        /// Event type to deliver (repeatable; default: all).
        #[arg(long = "event")]
        events: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List endpoints.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enable or disable an endpoint.
    Enable {
        /// The endpoint's id (whk_…).
        id: String,
        /// true to enable the endpoint, false to disable it.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        enabled: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete an endpoint.
    Delete {
        /// The endpoint's id (whk_…).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rotate an endpoint's secret; the old one also signs during the overlap.
    Rotate {
        /// The endpoint's id (whk_…).
        id: String,
        /// How long the old secret keeps signing beside the new one (default 24 h).
        #[arg(long, default_value_t = 86_400)]
        overlap_seconds: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List events, oldest first.
    Events {
        /// Items per page (default 50, at most 1000).
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        /// The `next_page_token` of the previous page.
        #[arg(long, default_value = "")]
        page_token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List deliveries (filter with --status pending|delivered|dead, --endpoint).
    Deliveries {
        /// Only deliveries in this state: pending, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        /// Only this endpoint's (whk_…).
        #[arg(long, default_value = "")]
        endpoint: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send one event again to its endpoints.
    Redeliver {
        /// The event to send again (evt_…).
        event_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send dead letters again (of one endpoint with --endpoint, else all).
    Replay {
        /// Only this endpoint's (whk_…).
        #[arg(long, default_value = "")]
        endpoint: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn endpoint_json(e: &pb::WebhookEndpoint) -> serde_json::Value {
    json!({
        "id": e.id,
        "url": e.url,
        "event_types": e.event_types,
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "previous_secret_expires_at": time(e.previous_secret_expires_at.as_ref()),
        "version": e.version,
    })
}

fn delivery_json(d: &pb::Delivery) -> serde_json::Value {
    let status = pb::DeliveryStatus::try_from(d.status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("DELIVERY_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "endpoint_id": d.endpoint_id,
        "status": status,
        "attempts": d.attempts,
        "next_attempt_at": time(d.next_attempt_at.as_ref()),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "delivered_at": time(d.delivered_at.as_ref()),
    })
}

fn delivery_status(name: Option<String>) -> anyhow::Result<i32> {
    let Some(name) = name else { return Ok(0) };
    pb::DeliveryStatus::from_str_name(&format!("DELIVERY_STATUS_{}", name.to_ascii_uppercase()))
        .map(i32::from)
        .ok_or_else(|| anyhow::anyhow!("--status {name}: use pending, delivered or dead"))
}

pub async fn run(cmd: WebhookCommand) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::Create {
            url,
            events,
            client,
        } => {
            let mut c = client::webhooks(&client).await?;
            let r = c
                .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
                    url,
                    event_types: events,
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut out = r.endpoint.as_ref().map(endpoint_json).unwrap_or_default();
            out["secret"] = json!(r.secret);
            print_json(&out);
        }
        WebhookCommand::List { client } => {
            let c = client::webhooks(&client).await?;
            let endpoints = client::all_pages(|page_token| {
                let mut c = c.clone();
                async move {
                    let request = pb::ListWebhookEndpointsRequest {
                        page_size: client::PAGE_SIZE,
                        page_token,
                    };
                    let r = c.list_webhook_endpoints(request).await?.into_inner();
                    Ok((r.endpoints, r.next_page_token))
                }
            })
            .await?;
            let endpoints: Vec<_> = endpoints.iter().map(endpoint_json).collect();
            print_json(&json!(endpoints));
        }
        WebhookCommand::Enable {
            id,
            enabled,
            client,
        } => {
            let mut c = client::webhooks(&client).await?;
            let request = pb::UpdateWebhookEndpointRequest {
                id,
                enabled: Some(enabled),
                ..Default::default()
            };
            let r = c.update_webhook_endpoint(request).await.map_err(status)?;
            print_json(&endpoint_json(r.get_ref()));
        }
        WebhookCommand::Delete { id, client } => {
            let mut c = client::webhooks(&client).await?;
            c.delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: id.clone() })
                .await
                .map_err(status)?;
            print_json(&json!({ "deleted": id }));
        }
        WebhookCommand::Rotate {
            id,
            overlap_seconds,
            client,
        } => {
            let mut c = client::webhooks(&client).await?;
            let request = pb::RotateWebhookSecretRequest {
                id,
                overlap_seconds: Some(overlap_seconds),
            };
            let r = c
                .rotate_webhook_secret(request)
                .await
                .map_err(status)?
                .into_inner();
            let mut out = r.endpoint.as_ref().map(endpoint_json).unwrap_or_default();
            out["secret"] = json!(r.secret);
            print_json(&out);
        }
        WebhookCommand::Events {
            page_size,
            page_token,
            client,
        } => {
            let mut c = client::webhooks(&client).await?;
            let r = c
                .list_events(pb::ListEventsRequest {
                    page_size,
                    page_token,
                })
                .await
                .map_err(status)?
                .into_inner();
            let events: Vec<_> = r
                .events
                .iter()
                .map(|e| serde_json::from_str::<serde_json::Value>(&e.payload).unwrap_or_default())
                .collect();
            print_json(&json!({ "events": events, "next_page_token": r.next_page_token }));
        }
        WebhookCommand::Deliveries {
            status: wanted,
            endpoint,
            client,
        } => {
            let request = pb::ListDeliveriesRequest {
                status: delivery_status(wanted)?,
                endpoint_id: endpoint,
                ..Default::default()
            };
            let mut c = client::webhooks(&client).await?;
            let r = c
                .list_deliveries(request)
                .await
                .map_err(status)?
                .into_inner();
            print_json(&json!({
                "deliveries": r.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
                "next_page_token": r.next_page_token,
            }));
        }
        WebhookCommand::Redeliver { event_id, client } => {
            let mut c = client::webhooks(&client).await?;
            let r = c
                .redeliver_event(pb::RedeliverEventRequest { event_id })
                .await
                .map_err(status)?;
            print_json(&json!({ "requeued": r.get_ref().requeued }));
        }
        WebhookCommand::Replay { endpoint, client } => {
            let mut c = client::webhooks(&client).await?;
            let r = c
                .replay_dead_letters(pb::ReplayDeadLettersRequest {
                    endpoint_id: endpoint,
                })
                .await
                .map_err(status)?;
            print_json(&json!({ "requeued": r.get_ref().requeued }));
        }
    }
    Ok(())
}
