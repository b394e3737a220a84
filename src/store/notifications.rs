//! Expiry transitions, webhook endpoints and deliveries.
//!
//! Work is claimed so that any number of replicas can run the scanner and deliverer:
//! each claim is one `WITH due AS (SELECT key … ORDER BY … LIMIT n [FOR UPDATE SKIP
//! LOCKED]) UPDATE … FROM due WHERE key = due.key AND <still claimable> RETURNING …`.
//! The re-check in the `WHERE` makes a row move once even when two replicas select it;
//! on PostgreSQL `SKIP LOCKED` also keeps them from waiting on each other. The CTE
//! joined on the primary key keeps the plan an index walk whatever the batch size (an
//! `IN (SELECT …)` form flipped to a table scan at 1,000 rows among a million).
use async_trait::async_trait;

use super::{StoreResult, Window};
use crate::clock::Millis;
use crate::model::Event;
use crate::webhooks::{AttemptRecord, ClaimedDelivery, Delivery, DeliveryStatus, SealedEndpoint};

/// Filters of a delivery listing.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Marks up to `limit` active credentials whose `lapses_at` has passed EXPIRED,
    /// each with a `credential.expired` event, in one transaction; returns the events.
    async fn expire_due(&self, now: Millis, limit: u32) -> StoreResult<Vec<Event>>;
    /// Announces up to `limit` credentials lapsing within `horizon_ms` that have not
    /// been warned at this horizon (or a smaller one); returns the events written.
    async fn warn_expiring(
        &self,
        now: Millis,
        horizon_ms: Millis,
        limit: u32,
    ) -> StoreResult<Vec<Event>>;

    async fn insert_endpoint(&self, endpoint: &SealedEndpoint) -> StoreResult<()>;
    async fn get_endpoint(&self, tenant_id: &str, id: &str) -> StoreResult<Option<SealedEndpoint>>;
    /// In id order.
    async fn list_endpoints(
        &self,
        tenant_id: &str,
        window: Window<'_>,
    ) -> StoreResult<Vec<SealedEndpoint>>;
    /// Compare-and-set on `expected_version`.
    async fn update_endpoint(
        &self,
        endpoint: &SealedEndpoint,
        expected_version: i64,
    ) -> StoreResult<bool>;
    async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> StoreResult<bool>;
    async fn disable_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
        reason: &str,
        at: Millis,
    ) -> StoreResult<()>;

    /// Deletes up to `limit` finished (not pending) deliveries last changed before
    /// `before`; returns how many.
    async fn prune_deliveries(&self, before: Millis, limit: u32) -> StoreResult<u64>;
    /// Deletes up to `limit` events created before `before` that were dispatched
    /// and have no delivery left; returns how many.
    async fn prune_events(&self, before: Millis, limit: u32) -> StoreResult<u64>;

    /// Fans up to `limit` undispatched events out to one delivery per matching
    /// enabled endpoint; returns how many events it dispatched.
    async fn dispatch_events(&self, now: Millis, limit: u32) -> StoreResult<usize>;
    /// When the oldest delivery still pending was created (`None`: nothing pending).
    async fn oldest_pending_delivery(&self) -> StoreResult<Option<Millis>>;
    /// Leases up to `limit` due pending deliveries to `owner` until `until`.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Millis,
        until: Millis,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Releases `owner`'s lease of a delivery it will not attempt.
    async fn release_delivery(&self, delivery_id: &str, owner: &str) -> StoreResult<()>;
    /// Records an attempt if `owner` still holds the lease; releases it.
    async fn record_attempt(
        &self,
        delivery_id: &str,
        owner: &str,
        record: &AttemptRecord,
    ) -> StoreResult<bool>;
    async fn list_deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    /// Puts matching deliveries back to pending, due `now`, attempts reset; returns how many.
    async fn requeue_deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
        now: Millis,
    ) -> StoreResult<u64>;
}
