//! The retention job: every interval, one replica (the lease holder) deletes what
//! has outlived its retention. See [`crate::service::retention`].
use std::time::Duration;

use tracing::Instrument;

use crate::service::retention::Retention;
use crate::shutdown::Shutdown;

pub async fn run(retention: Retention, every: Duration, stop: Shutdown) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.wait() => return,
        }
        let span = tracing::info_span!("retention", outcome = tracing::field::Empty);
        let pass = retention.pass().instrument(span.clone()).await;
        let _entered = span.enter();
        let outcome = match pass {
            Ok(None) => "another_replica",
            Ok(Some(p)) => {
                if p.total() > 0 {
                    tracing::info!(
                        request_ids = p.request_ids,
                        oauth_states = p.oauth_states,
                        deliveries = p.deliveries,
                        events = p.events,
                        "retention pass"
                    );
                }
                "ok"
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention pass failed");
                "error"
            }
        };
        span.record("outcome", outcome);
    }
}
