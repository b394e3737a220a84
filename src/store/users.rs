//! End users. Emails are unique per tenant through `email_key` (the lowercased
//! email); external ids are unique per tenant too.
use async_trait::async_trait;

use super::{StoreResult, Window};
use crate::clock::Millis;
use crate::model::AuditEntry;
use crate::model::users::EndUser;

/// What [`UserStore::link_external_id`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// The user now holds (or already held) this external id.
    Same,
    /// The user holds another one (shown to no one: the caller logs the fact).
    Different,
    /// Another user of the tenant holds this external id.
    TakenByOther,
    NoSuchUser,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// [`super::StoreError::Conflict`] when the user id, the email or the external id
    /// is taken in the tenant.
    async fn insert_user(&self, user: &EndUser) -> StoreResult<()>;
    async fn get_user(&self, tenant_id: &str, user_id: &str) -> StoreResult<Option<EndUser>>;
    async fn find_user_by_email(
        &self,
        tenant_id: &str,
        email: &str,
    ) -> StoreResult<Option<EndUser>>;
    /// In user id order.
    async fn list_users(&self, tenant_id: &str, window: Window<'_>) -> StoreResult<Vec<EndUser>>;
    /// Writes the email and external id; false if the user does not exist.
    /// [`super::StoreError::Conflict`] when either is another user's.
    async fn update_user(&self, user: &EndUser) -> StoreResult<bool>;
    /// Stores `external_id` on a user who has none yet; says how it went.
    async fn link_external_id(
        &self,
        tenant_id: &str,
        user_id: &str,
        external_id: &str,
        at: Millis,
    ) -> StoreResult<Linked>;
    /// Deletes a user without credentials (and their failure counters), with `audit`;
    /// false if there was no such user. A credential created meanwhile fails the
    /// delete (the foreign key: [`super::StoreError::Conflict`]): nothing is deleted.
    async fn delete_user(
        &self,
        tenant_id: &str,
        user_id: &str,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
}
