//! The expiry scanner: every interval, expires what has lapsed and announces what
//! will (`credential.expiring`). Claims are fenced in the store, so every replica may
//! run it and each event is still written once. A pass is one transaction: shutdown
//! waits for the one in hand and starts no other.
use std::time::Duration;

use crate::service::Vault;
use crate::shutdown::Shutdown;

pub async fn run(vault: Vault, every: Duration, batch: u32, stop: Shutdown) {
    super::repeat("expiry_scan", every, stop, || async {
        let p = vault.scan_expiries(batch).await?;
        if p.expired + p.warned > 0 {
            tracing::info!(expired = p.expired, warned = p.warned, "expiry scan");
        }
        Ok("ok")
    })
    .await;
}
