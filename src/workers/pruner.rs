//! The retention job: every interval, one replica (the lease holder) deletes what
//! has outlived its retention. See [`crate::service::retention`].
use std::time::Duration;

use crate::service::retention::Retention;
use crate::shutdown::Shutdown;

pub async fn run(retention: Retention, every: Duration, stop: Shutdown) {
    super::repeat("retention", every, stop, || async {
        let Some(p) = retention.pass().await? else {
            return Ok("another_replica");
        };
        if p.total() > 0 {
            tracing::info!(
                request_ids = p.request_ids,
                oauth_states = p.oauth_states,
                deliveries = p.deliveries,
                events = p.events,
                "retention pass"
            );
        }
        Ok("ok")
    })
    .await;
}
