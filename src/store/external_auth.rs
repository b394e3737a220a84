//! External auth: connectors (their configuration sealed) and the failure counters
//! behind lockouts, kept in the database so every replica sees the same counts.
use async_trait::async_trait;

use super::StoreResult;
use crate::clock::Millis;
use crate::model::external_auth::{ConnectorId, SealedConnector};
use crate::model::{AuditEntry, Event};

/// How failures turn into lockouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures before the first lockout.
    pub threshold: i64,
    /// The first lockout; each further failure doubles it …
    pub base_ms: Millis,
    /// … up to this.
    pub max_ms: Millis,
    /// Failures older than this are forgotten.
    pub window_ms: Millis,
}

impl LockoutPolicy {
    /// How long `failures` failures lock the subject out (0: not at all).
    pub fn lock_ms(&self, failures: i64) -> Millis {
        if failures < self.threshold {
            return 0;
        }
        let doublings = u32::try_from(failures - self.threshold)
            .unwrap_or(u32::MAX)
            .min(32);
        self.base_ms
            .saturating_mul(1_i64 << doublings.min(62))
            .min(self.max_ms)
    }
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 5,
            base_ms: 60_000,
            max_ms: 3_600_000,
            window_ms: 3_600_000,
        }
    }
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// [`super::StoreError::Conflict`] when the name is taken in the tenant.
    async fn insert_connector(&self, c: &SealedConnector, audit: &AuditEntry) -> StoreResult<()>;
    async fn get_connector(
        &self,
        tenant_id: &str,
        id: &ConnectorId,
    ) -> StoreResult<Option<SealedConnector>>;
    /// In name order.
    async fn list_connectors(&self, tenant_id: &str) -> StoreResult<Vec<SealedConnector>>;
    /// Compare-and-set on `expected_version`; returns whether it wrote.
    async fn update_connector(
        &self,
        c: &SealedConnector,
        expected_version: i64,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn delete_connector(
        &self,
        tenant_id: &str,
        id: &ConnectorId,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    /// The latest `locked_until` after `now` among `subjects`, if any is locked.
    async fn locked_until(
        &self,
        tenant_id: &str,
        subjects: &[&str],
        now: Millis,
    ) -> StoreResult<Option<Millis>>;
    /// Counts a failure of `subject` (forgetting failures older than the policy's
    /// window) and locks it if the count calls for it; returns the lock's end, if any.
    async fn count_failure(
        &self,
        tenant_id: &str,
        subject: &str,
        now: Millis,
        policy: &LockoutPolicy,
    ) -> StoreResult<Option<Millis>>;
    /// The audit record and the event of one login attempt, together; after a
    /// successful one, `forget` names the subject whose failures are forgotten in the
    /// same transaction.
    async fn record_login(
        &self,
        audit: &AuditEntry,
        event: &Event,
        forget: Option<&str>,
    ) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_from_the_threshold_up_to_the_cap() {
        let p = LockoutPolicy::default();
        assert_eq!(p.lock_ms(4), 0);
        assert_eq!(p.lock_ms(5), 60_000);
        assert_eq!(p.lock_ms(6), 120_000);
        assert_eq!(p.lock_ms(10), 1_920_000);
        assert_eq!(p.lock_ms(11), 3_600_000);
        assert_eq!(p.lock_ms(i64::MAX), 3_600_000);
    }
}
