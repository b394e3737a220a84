//! The audit chain job: every interval, one replica (the lease holder) links new
//! audit records into their chains, and from time to time signs checkpoints and
//! prunes. See [`crate::service::audit`].
use std::sync::Arc;
use std::time::Duration;

use crate::service::audit::AuditLog;
use crate::shutdown::Shutdown;

pub async fn run(audit: Arc<AuditLog>, every: Duration, stop: Shutdown) {
    super::repeat("audit_chain", every, stop, || async {
        let Some(p) = audit.pass().await? else {
            return Ok("another_replica");
        };
        if p.checkpoints + p.pruned > 0 {
            tracing::info!(
                chained = p.chained,
                checkpoints = p.checkpoints,
                pruned = p.pruned,
                "audit pass"
            );
        }
        Ok("ok")
    })
    .await;
}
