//! Background work. Each worker is a loop of passes; a pass claims what is due and
//! acts on it, safe to run in every replica at once (claims are fenced in the store).
use std::time::Duration;

use tracing::Instrument;

use crate::shutdown::Shutdown;

pub mod audit;
pub mod deliverer;
pub mod keys;
pub mod pruner;
pub mod refresher;
pub mod scanner;

/// Runs `pass` every `every` until `stop` turns on (a pass in hand is finished, no
/// other starts), each pass in a span `job` named `name` whose `outcome` is what the
/// pass returns, or `error` (logged) when it fails.
pub(crate) async fn repeat<F, Fut>(name: &'static str, every: Duration, stop: Shutdown, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::error::Result<&'static str>>,
{
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Shutdown wins over a tick that is due at the same moment.
            biased;
            () = stop.wait() => return,
            _ = ticks.tick() => {}
        }
        let span = tracing::info_span!(
            "job",
            otel.name = name,
            job = name,
            outcome = tracing::field::Empty,
        );
        let outcome = match pass().instrument(span.clone()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "{name} pass failed"));
                "error"
            }
        };
        span.record("outcome", outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn passes_go_on_after_a_failure_and_none_starts_after_shutdown() {
        let (trigger, stop) = crate::shutdown::channel();
        let passes = Arc::new(AtomicUsize::new(0));
        let counted = passes.clone();
        let job = tokio::spawn(repeat("test", Duration::from_millis(1), stop, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            // The second pass fails; the third asks for shutdown.
            if n == 3 {
                trigger.fire();
            }
            async move {
                match n {
                    2 => Err(crate::error::Error::Unavailable("down".into())),
                    _ => Ok("ok"),
                }
            }
        }));
        tokio::time::timeout(Duration::from_secs(10), job)
            .await
            .expect("the loop ends on shutdown")
            .unwrap();
        assert_eq!(passes.load(Ordering::SeqCst), 3);
    }
}
