//! The expiry scanner: every interval, expires what has lapsed and announces what
//! will (`credential.expiring`). Claims are fenced in the store, so every replica may
//! run it and each event is still written once.
use std::time::Duration;

use tokio::sync::watch;

use crate::service::Vault;

pub async fn run(vault: Vault, every: Duration, batch: u32, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        match vault.scan_expiries(batch).await {
            Ok(p) if p.expired + p.warned > 0 => {
                tracing::info!(expired = p.expired, warned = p.warned, "expiry scan")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiry scan failed"),
        }
    }
}
