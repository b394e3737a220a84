//! The webhook deliverer: fans events out to deliveries, claims due ones (leased) and
//! attempts them with bounded concurrency. Each attempt runs on its own, so a slow or
//! hanging endpoint holds one slot for at most the request timeout and never delays
//! the others.
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::error::Result;
use crate::service::{DeliveryPass, Sent, Vault};
use crate::shutdown::Shutdown;
use crate::webhooks::ClaimedDelivery;

/// One pass that waits for its attempts (tests and operators' one-shot runs).
pub async fn run_pass(vault: &Vault, batch: u32, concurrency: usize) -> Result<DeliveryPass> {
    let (dispatched, claimed) = vault.claim_deliveries(batch).await?;
    let mut pass = DeliveryPass {
        dispatched,
        claimed: claimed.len(),
        ..DeliveryPass::default()
    };
    let results: Vec<_> = futures::stream::iter(claimed)
        .map(|c| {
            let vault = vault.clone();
            async move { vault.attempt_delivery(c).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for result in results {
        match result {
            Ok(Sent::Delivered) => pass.delivered += 1,
            Ok(Sent::Failed) => pass.failed += 1,
            Err(e) => {
                pass.failed += 1;
                tracing::warn!(error = %e, "delivery attempt failed to run");
            }
        }
    }
    Ok(pass)
}

/// Claims work as slots free up, every `every`, until `stop` turns on. On shutdown it
/// claims nothing more, hands back the claims it has not started (their leases are
/// released, so another replica takes them at once), and waits for the attempts in
/// flight, each bounded by the webhook timeout.
pub async fn run(vault: Vault, every: Duration, batch: u32, concurrency: usize, stop: Shutdown) {
    let concurrency = concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.wait() => break,
        }
        let free = u32::try_from(slots.available_permits())
            .unwrap_or(u32::MAX)
            .min(batch);
        if free == 0 {
            continue;
        }
        let claimed = match vault
            .claim_deliveries(free)
            .instrument(tracing::info_span!("delivery_claim"))
            .await
        {
            Ok((_, claimed)) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "claiming deliveries failed");
                continue;
            }
        };
        let mut claimed = claimed.into_iter();
        while let Some(delivery) = claimed.next() {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => permit,
                () = stop.wait() => {
                    release(&vault, std::iter::once(delivery).chain(claimed)).await;
                    break;
                }
            };
            let Ok(permit) = permit else { break };
            let vault = vault.clone();
            // The attempt has its own span (`delivery_attempt`).
            tokio::spawn(async move {
                let _slot = permit;
                if let Err(e) = vault.attempt_delivery(delivery).await {
                    tracing::warn!(error = %e, "delivery attempt failed to run");
                }
            });
        }
    }
    // Every slot back means every attempt in flight has been recorded.
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Hands claimed deliveries back unattempted.
async fn release(vault: &Vault, claims: impl Iterator<Item = ClaimedDelivery>) {
    for claim in claims {
        if let Err(e) = vault.release_delivery(&claim.delivery.id).await {
            tracing::warn!(error = %e, delivery = %claim.delivery.id, "releasing a claim failed; its lease will lapse");
        }
    }
}
