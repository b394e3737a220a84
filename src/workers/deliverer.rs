//! The webhook deliverer: fans events out to deliveries, claims due ones (leased) and
//! attempts them with bounded concurrency. Each attempt runs on its own, so a slow or
//! hanging endpoint holds one slot for at most the request timeout and never delays
//! the others.
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Semaphore, watch};

use crate::error::Result;
use crate::service::{DeliveryPass, Sent, Vault};

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

/// Claims work as slots free up, every `every`, until `stop` turns true.
pub async fn run(
    vault: Vault,
    every: Duration,
    batch: u32,
    concurrency: usize,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let free = u32::try_from(slots.available_permits())
            .unwrap_or(u32::MAX)
            .min(batch);
        if free == 0 {
            continue;
        }
        let claimed = match vault.claim_deliveries(free).await {
            Ok((_, claimed)) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "claiming deliveries failed");
                continue;
            }
        };
        for delivery in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let vault = vault.clone();
            tokio::spawn(async move {
                let _slot = permit;
                if let Err(e) = vault.attempt_delivery(delivery).await {
                    tracing::warn!(error = %e, "delivery attempt failed to run");
                }
            });
        }
    }
}
