//! Connect links and tenants' connect settings. A link's terminal change (completed,
//! revoked) is a compare-and-set on `status = 'pending'`, written with its audit
//! record, its event and the delivery to its `notify_url` in one transaction.
use async_trait::async_trait;

use super::StoreResult;
use crate::clock::Millis;
use crate::model::connect::{ConnectLink, LinkChange, LinkId, LinkStatus, SealedConnectSettings};
use crate::model::{AuditEntry, Event};

/// Filters of a link listing; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct LinkFilter {
    pub status: Option<LinkStatus>,
    pub user_id: Option<String>,
}

/// What recording a rejected verification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCount {
    /// Counted; the link still works.
    Counted(i64),
    /// This attempt reached the limit: the link is now revoked.
    Exhausted,
    /// The link is no longer pending.
    NotPending,
}

/// A connect event and, when the link has a `notify_url`, its delivery there.
#[derive(Debug, Clone, Copy)]
pub struct ConnectNotice<'a> {
    pub event: &'a Event,
    pub link_id: &'a LinkId,
    pub notify_url: &'a str,
}

#[async_trait]
pub trait ConnectStore: Send + Sync {
    async fn insert_link(&self, link: &ConnectLink, audit: &AuditEntry) -> StoreResult<()>;
    async fn get_link(&self, tenant_id: &str, id: &LinkId) -> StoreResult<Option<ConnectLink>>;
    async fn find_link_by_token(&self, token_hash: &[u8]) -> StoreResult<Option<ConnectLink>>;
    /// Newest first, before the id `before` if given.
    async fn list_links(
        &self,
        tenant_id: &str,
        filter: &LinkFilter,
        now: Millis,
        before: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ConnectLink>>;
    /// Moves a pending link to `change.status`, with its audit record and notice,
    /// atomically; returns whether it was still pending.
    async fn finish_link(
        &self,
        change: &LinkChange<'_>,
        audit: &AuditEntry,
        notice: Option<ConnectNotice<'_>>,
    ) -> StoreResult<bool>;
    /// Counts a rejected verification of a pending link; at `limit` the link is
    /// revoked (`too_many_attempts`) with `notice`, in the same transaction.
    async fn count_failed_attempt(
        &self,
        tenant_id: &str,
        id: &LinkId,
        limit: i64,
        at: Millis,
        notice: ConnectNotice<'_>,
    ) -> StoreResult<AttemptCount>;
    /// Remembers the browser (`browser_hash`) that signed in to a pending link;
    /// returns whether the link was still pending.
    async fn mark_link_signed_in(
        &self,
        tenant_id: &str,
        id: &LinkId,
        browser_hash: &[u8],
        at: Millis,
    ) -> StoreResult<bool>;
    /// Records a connect event (and its notify delivery) on its own.
    async fn insert_connect_notice(&self, notice: ConnectNotice<'_>) -> StoreResult<()>;

    async fn get_connect_settings(
        &self,
        tenant_id: &str,
    ) -> StoreResult<Option<SealedConnectSettings>>;
    /// Inserts (`expected_version` 0) or compare-and-sets the row; returns whether it
    /// wrote.
    async fn put_connect_settings(
        &self,
        settings: &SealedConnectSettings,
        expected_version: i64,
    ) -> StoreResult<bool>;
}
