//! A circuit breaker per connector, in this process: after
//! [`FAILURES_TO_OPEN`] upstream failures in a row (5xx, timeouts, refused
//! connections) logins answer `upstream_unavailable` at once for [`OPEN_MS`], instead
//! of each waiting out a timeout; then one trial request goes through (half-open),
//! and its outcome closes the circuit or opens it again.
use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::Millis;
use crate::model::external_auth::ConnectorId;

pub const FAILURES_TO_OPEN: u32 = 5;
pub const OPEN_MS: Millis = 30_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerState {
    pub consecutive_failures: u32,
    /// While set and in the future, the circuit is open.
    pub open_until: Option<Millis>,
}

impl BreakerState {
    pub fn is_open_at(&self, now: Millis) -> bool {
        self.open_until.is_some_and(|until| until > now)
    }
}

#[derive(Debug, Default)]
pub struct Breakers {
    states: Mutex<HashMap<ConnectorId, Entry>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    state: BreakerState,
    /// A half-open trial is under way.
    trial: bool,
}

impl Breakers {
    pub fn state(&self, id: &ConnectorId, now: Millis) -> BreakerState {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = states.get(id).map(|e| e.state).unwrap_or_default();
        if !state.is_open_at(now) {
            state.open_until = None;
        }
        state
    }

    /// Whether a request may go out now (taking the half-open trial if it is due).
    pub fn admit(&self, id: &ConnectorId, now: Millis) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let entry = states.entry(id.clone()).or_default();
        match entry.state.open_until {
            None => true,
            Some(until) if until > now => false,
            Some(_) if entry.trial => false,
            Some(_) => {
                entry.trial = true;
                true
            }
        }
    }

    /// Records how a request that went out ended; returns true if this opened the
    /// circuit.
    pub fn record(&self, id: &ConnectorId, upstream_failed: bool, now: Millis) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let entry = states.entry(id.clone()).or_default();
        let was_trial = std::mem::take(&mut entry.trial);
        if !upstream_failed {
            *entry = Entry::default();
            return false;
        }
        entry.state.consecutive_failures = entry.state.consecutive_failures.saturating_add(1);
        if was_trial || entry.state.consecutive_failures >= FAILURES_TO_OPEN {
            let opens = !entry.state.is_open_at(now);
            entry.state.open_until = Some(now + OPEN_MS);
            return opens;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_closes_after_a_good_trial() {
        let b = Breakers::default();
        let id = ConnectorId("ac_x".into());
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert!(b.admit(&id, 0));
            assert!(!b.record(&id, true, 0));
        }
        assert!(b.record(&id, true, 0), "the fifth failure opens it");
        assert!(!b.admit(&id, 1) && b.state(&id, 1).is_open_at(1));
        // Half-open: one trial, the next waits.
        assert!(b.admit(&id, OPEN_MS));
        assert!(!b.admit(&id, OPEN_MS));
        assert!(
            b.record(&id, true, OPEN_MS),
            "a failed trial opens it again"
        );
        assert!(!b.admit(&id, OPEN_MS + 1));
        assert!(b.admit(&id, 2 * OPEN_MS));
        b.record(&id, false, 2 * OPEN_MS);
        assert_eq!(b.state(&id, 2 * OPEN_MS), BreakerState::default());
        assert!(b.admit(&id, 2 * OPEN_MS));
    }
}
