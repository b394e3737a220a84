//! The shutdown signal every long-lived piece listens to: servers, server streams and
//! background workers. It turns on once and stays on; a dropped sender counts as on,
//! so nothing can wait on it forever.
use tokio::sync::watch;

/// Turns the signal on.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Listens for the signal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new signal, off.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A signal that never turns on (for one-shot runs and tests).
    pub fn never() -> Self {
        // One sender for the life of the program that nobody fires.
        static NEVER: std::sync::OnceLock<watch::Sender<bool>> = std::sync::OnceLock::new();
        Self(NEVER.get_or_init(|| watch::channel(false).0).subscribe())
    }

    /// Whether shutdown has begun.
    pub fn is_on(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown has begun.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone: treat it as on.
        let _ = rx.wait_for(|on| *on).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_and_a_dropped_trigger_counts_as_fired() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_on());
        trigger.fire();
        assert!(shutdown.is_on());
        shutdown.wait().await;

        let (trigger, shutdown) = channel();
        drop(trigger);
        assert!(shutdown.is_on());
        shutdown.wait().await;
        assert!(!Shutdown::never().is_on());
    }
}
