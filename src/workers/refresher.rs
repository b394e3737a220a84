//! Refreshes OAuth tokens ahead of expiry: each pass takes the credentials whose
//! refresh time has come (soonest first) and refreshes them with bounded concurrency.
//! Single flight per credential (lease + compare-and-set) makes overlapping passes on
//! several replicas harmless.
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use crate::error::Result;
use crate::service::Vault;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    pub refreshed: usize,
    pub failed: usize,
}

pub async fn run_pass(vault: &Vault, batch: u32, concurrency: usize) -> Result<Pass> {
    let due = vault.store().due_refreshes(vault.now(), batch).await?;
    let mut pass = Pass {
        claimed: due.len(),
        ..Pass::default()
    };
    // Owned values in the futures: borrowed ones trip the compiler's higher-ranked
    // `Send` check inside `tokio::spawn`.
    let results: Vec<_> = futures::stream::iter(due)
        .map(|(tenant, id)| {
            let vault = vault.clone();
            async move {
                let result = vault.refresh_if_due(&tenant, &id).await;
                (id, result)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (id, result) in results {
        match result {
            Ok(()) => pass.refreshed += 1,
            Err(e) => {
                pass.failed += 1;
                tracing::debug!(credential = %id, error = %e, "background refresh failed");
            }
        }
    }
    Ok(pass)
}

/// Runs passes every `every` until `stop` turns true.
pub async fn run(
    vault: Vault,
    every: Duration,
    batch: u32,
    concurrency: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        match run_pass(&vault, batch, concurrency).await {
            Ok(p) if p.claimed > 0 => tracing::info!(
                claimed = p.claimed,
                refreshed = p.refreshed,
                failed = p.failed,
                "refresh pass"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "refresh pass failed"),
        }
    }
}
