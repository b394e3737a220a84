//! The key jobs: every replica's heartbeat (which versions it holds, the seals it
//! made, and following the cluster's active version), and the rewrap job, which one
//! replica at a time runs. See [`crate::service::keys`].
use std::sync::Arc;
use std::time::Duration;

use crate::service::keys::lifecycle::KeyLifecycle;
use crate::service::keys::rewrap::Rewrap;
use crate::service::tenant_keys::TenantKeys;
use crate::shutdown::Shutdown;

/// Beats every `every` (the first one a period after joining, which beat already)
/// until shutdown, then leaves the cluster's list of replicas.
pub async fn heartbeat(keys: Arc<KeyLifecycle>, every: Duration, stop: Shutdown) {
    let joined = tokio::select! {
        biased;
        () = stop.wait() => false,
        () = tokio::time::sleep(every) => true,
    };
    if joined {
        super::repeat("key_heartbeat", every, stop, || async {
            keys.beat().await?;
            Ok("ok")
        })
        .await;
    }
    if let Err(e) = keys.leave().await {
        tracing::warn!(error = %e, "could not remove this replica from the replica list");
    }
}

/// Drops expired tenant keys from memory every `every` until shutdown.
pub async fn forget_tenant_keys(keys: Arc<TenantKeys>, every: Duration, stop: Shutdown) {
    super::repeat("tenant_key_sweep", every, stop, || async {
        keys.forget_expired();
        Ok("ok")
    })
    .await;
}

pub async fn rewrap(job: Arc<Rewrap>, every: Duration, stop: Shutdown) {
    super::repeat("rewrap", every, stop, || async {
        let Some(p) = job.pass().await? else {
            return Ok("another_replica");
        };
        if p.rewrapped + p.raced + p.failed > 0 {
            tracing::info!(
                rewrapped = p.rewrapped,
                raced = p.raced,
                failed = p.failed,
                "rewrap pass"
            );
        }
        Ok(if p.failed > 0 { "failed_values" } else { "ok" })
    })
    .await;
}
