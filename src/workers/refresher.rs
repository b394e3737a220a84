//! Refreshes OAuth tokens ahead of expiry: each pass takes the credentials whose
//! refresh time has come (soonest first) and refreshes them with bounded concurrency.
//! Single flight per credential (lease + compare-and-set) makes overlapping passes on
//! several replicas harmless. On shutdown a pass starts nothing new and finishes the
//! refreshes in hand, each of which releases its lease when it writes.
use std::time::Duration;

use futures::StreamExt;

use crate::error::Result;
use crate::service::Vault;
use crate::shutdown::Shutdown;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    pub refreshed: usize,
    pub failed: usize,
}

/// One whole pass (tests and operators' one-shot runs).
pub async fn run_pass(vault: &Vault, batch: u32, concurrency: usize) -> Result<Pass> {
    run_pass_until(vault, batch, concurrency, &Shutdown::never()).await
}

/// One pass that starts no new refresh once `stop` is on.
pub async fn run_pass_until(
    vault: &Vault,
    batch: u32,
    concurrency: usize,
    stop: &Shutdown,
) -> Result<Pass> {
    let due = vault.store().due_refreshes(vault.now(), batch).await?;
    let mut pass = Pass {
        claimed: due.len(),
        ..Pass::default()
    };
    // Owned values in the futures: borrowed ones trip the compiler's higher-ranked
    // `Send` check inside `tokio::spawn`.
    let results: Vec<_> = futures::stream::iter(due)
        .take_while(|_| std::future::ready(!stop.is_on()))
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

/// Runs passes every `every` until `stop` turns on.
pub async fn run(vault: Vault, every: Duration, batch: u32, concurrency: usize, stop: Shutdown) {
    let passes = stop.clone();
    super::repeat("refresh_pass", every, stop, || async {
        let p = run_pass_until(&vault, batch, concurrency, &passes).await?;
        if p.claimed > 0 {
            tracing::info!(
                claimed = p.claimed,
                refreshed = p.refreshed,
                failed = p.failed,
                "refresh pass"
            );
        }
        Ok("ok")
    })
    .await;
}
