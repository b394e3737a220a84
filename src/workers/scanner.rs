//! The expiry scanner: every interval, expires what has lapsed and announces what
//! will (`credential.expiring`). Claims are fenced in the store, so every replica may
//! run it and each event is still written once. A pass is one transaction: shutdown
//! waits for the one in hand and starts no other.
use std::time::Duration;

use tracing::Instrument;

use crate::service::Vault;
use crate::shutdown::Shutdown;

pub async fn run(vault: Vault, every: Duration, batch: u32, stop: Shutdown) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.wait() => return,
        }
        let span = tracing::info_span!("expiry_scan", outcome = tracing::field::Empty);
        let pass = vault.scan_expiries(batch).instrument(span.clone()).await;
        let _entered = span.enter();
        match pass {
            Ok(p) => {
                span.record("outcome", "ok");
                if p.expired + p.warned > 0 {
                    tracing::info!(expired = p.expired, warned = p.warned, "expiry scan");
                }
            }
            Err(e) => {
                span.record("outcome", "error");
                tracing::warn!(error = %e, "expiry scan failed");
            }
        }
    }
}
