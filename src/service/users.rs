//! End users as records of their own: registered, looked up by id or email,
//! updated, and deleted together with their credentials.
use super::pagination::{Cursor, Page};
use super::{Caller, Vault, validate};
use crate::error::{Error, Result};
use crate::model::AuditEntry;
use crate::model::users::{EndUser, email_key};
use crate::store::{ListFilter, StoreError};

/// A `RegisterUser` request.
#[derive(Debug, Default, Clone)]
pub struct NewUser {
    pub user_id: String,
    pub email: String,
    pub external_id: String,
}

/// An `UpdateUser` request: `None` keeps a field, `Some("")` clears it.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub user_id: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
}

/// Which user to read.
#[derive(Debug, Clone)]
pub enum UserKey {
    Id(String),
    Email(String),
}

/// A credential deleted with its user, and how revoking it at the provider went.
#[derive(Debug)]
pub struct DeletedCredential {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub deleted: super::Deleted,
}

/// The user service: holds only the vault it stores through.
#[derive(Clone)]
pub struct Users {
    vault: Vault,
}

fn not_found(what: &str) -> Error {
    Error::NotFound(format!("user {what} not found"))
}

fn check_email(field: &'static str, email: &str) -> Result<()> {
    if email.is_empty() {
        Ok(())
    } else {
        validate::email(field, email)
    }
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// The same email, compared as uniqueness compares it.
fn same_email(a: Option<&str>, b: Option<&str>) -> bool {
    a.map(email_key) == b.map(email_key)
}

impl Users {
    pub fn new(vault: Vault) -> Self {
        Self { vault }
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Registers a user, or returns the one registered with the same details.
    pub async fn register(&self, caller: &Caller, req: NewUser) -> Result<EndUser> {
        validate::text("user_id", &req.user_id, validate::MAX_TEXT_CHARS)?;
        check_email("email", &req.email)?;
        validate::bounded_text("external_id", &req.external_id, validate::MAX_TEXT_CHARS)?;
        let now = self.vault.now();
        let user = EndUser {
            tenant_id: caller.tenant_id.clone(),
            user_id: req.user_id.clone(),
            email: optional(&req.email),
            external_id: optional(&req.external_id),
            created_at: now,
            updated_at: now,
        };
        match self.vault.store.insert_user(&user).await {
            Ok(()) => {
                self.record(caller, "user.register", &user.user_id).await?;
                return Ok(user);
            }
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        match self
            .vault
            .store
            .get_user(&caller.tenant_id, &req.user_id)
            .await?
        {
            Some(existing) => self.register_again(caller, existing, &user).await,
            // Not the user id: the email or the external id is someone else's.
            None => Err(self.taken(caller, &user).await),
        }
    }

    /// Registering an existing user: fills what it lacks, refuses what differs.
    async fn register_again(
        &self,
        caller: &Caller,
        existing: EndUser,
        asked: &EndUser,
    ) -> Result<EndUser> {
        let email_differs = asked.email.is_some()
            && existing.email.is_some()
            && !same_email(existing.email.as_deref(), asked.email.as_deref());
        let id_differs = asked.external_id.is_some()
            && existing.external_id.is_some()
            && existing.external_id != asked.external_id;
        if email_differs || id_differs {
            let field = if email_differs {
                "email"
            } else {
                "external id"
            };
            return Err(Error::AlreadyExists(format!(
                "user {} is registered with another {field}; use UpdateUser to change it",
                existing.user_id
            )));
        }
        let fills = (existing.email.is_none() && asked.email.is_some())
            || (existing.external_id.is_none() && asked.external_id.is_some());
        if !fills {
            return Ok(existing);
        }
        let next = EndUser {
            email: existing.email.clone().or_else(|| asked.email.clone()),
            external_id: existing
                .external_id
                .clone()
                .or_else(|| asked.external_id.clone()),
            updated_at: self.vault.now(),
            ..existing
        };
        self.write(caller, next).await
    }

    /// Records `caller` doing `action` to end user `user_id`.
    async fn record(&self, caller: &Caller, action: &'static str, user_id: &str) -> Result<()> {
        let entry = self.vault.audit(caller, action, "", "");
        self.vault.record(&entry.for_user(user_id)).await
    }

    /// Why a user could not be stored: its email or external id is another user's.
    async fn taken(&self, caller: &Caller, user: &EndUser) -> Error {
        if let Some(email) = &user.email
            && let Ok(Some(other)) = self
                .vault
                .store
                .find_user_by_email(&caller.tenant_id, email)
                .await
            && other.user_id != user.user_id
        {
            return Error::AlreadyExists(format!("email: {email} is registered to another user"));
        }
        Error::AlreadyExists("external_id: is linked to another user".into())
    }

    /// Writes a changed user; a taken email or external id is ALREADY_EXISTS.
    async fn write(&self, caller: &Caller, user: EndUser) -> Result<EndUser> {
        match self.vault.store.update_user(&user).await {
            Ok(true) => {
                self.record(caller, "user.update", &user.user_id).await?;
                Ok(user)
            }
            Ok(false) => Err(not_found(&user.user_id)),
            Err(StoreError::Conflict) => Err(self.taken(caller, &user).await),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, caller: &Caller, key: &UserKey) -> Result<EndUser> {
        let store = &self.vault.store;
        let found = match key {
            UserKey::Id(id) => {
                validate::text("user_id", id, validate::MAX_TEXT_CHARS)?;
                store.get_user(&caller.tenant_id, id).await?
            }
            UserKey::Email(email) => {
                validate::email("email", email)?;
                store.find_user_by_email(&caller.tenant_id, email).await?
            }
        };
        found.ok_or_else(|| match key {
            UserKey::Id(id) => not_found(id),
            UserKey::Email(_) => Error::NotFound("no user with this email".into()),
        })
    }

    pub async fn list(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page<EndUser>> {
        let cursor = Cursor::with(page_size, page_token, |id| {
            !id.is_empty() && id.chars().count() <= validate::MAX_TEXT_CHARS
        })?;
        let users = self
            .vault
            .store
            .list_users(&caller.tenant_id, cursor.window())
            .await?;
        Ok(cursor.finish(users, |u| u.user_id.as_str()))
    }

    pub async fn update(&self, caller: &Caller, req: UserChanges) -> Result<EndUser> {
        validate::text("user_id", &req.user_id, validate::MAX_TEXT_CHARS)?;
        if let Some(email) = &req.email {
            check_email("email", email)?;
        }
        if let Some(id) = &req.external_id {
            validate::bounded_text("external_id", id, validate::MAX_TEXT_CHARS)?;
        }
        let existing = self
            .vault
            .store
            .get_user(&caller.tenant_id, &req.user_id)
            .await?
            .ok_or_else(|| not_found(&req.user_id))?;
        let next = EndUser {
            email: req
                .email
                .as_deref()
                .map_or(existing.email.clone(), optional),
            external_id: req
                .external_id
                .as_deref()
                .map_or(existing.external_id.clone(), optional),
            updated_at: self.vault.now(),
            ..existing
        };
        self.write(caller, next).await
    }

    /// Deletes every credential of the user (revoking OAuth tokens at the provider)
    /// and then the user.
    pub async fn delete(&self, caller: &Caller, user_id: &str) -> Result<Vec<DeletedCredential>> {
        validate::text("user_id", user_id, validate::MAX_TEXT_CHARS)?;
        caller.require_unconstrained("delete users (that deletes every credential of theirs)")?;
        let store = &self.vault.store;
        if store.get_user(&caller.tenant_id, user_id).await?.is_none() {
            return Err(not_found(user_id));
        }
        let filter = ListFilter {
            user_id: Some(user_id.to_owned()),
            ..ListFilter::default()
        };
        let mut deleted = Vec::new();
        loop {
            let page = store
                .list_credentials(&caller.tenant_id, &filter, None, 100)
                .await?;
            if page.is_empty() {
                break;
            }
            for meta in page {
                let outcome = match self.vault.delete_credential(caller, &meta.id).await {
                    Ok(outcome) => outcome,
                    // Deleted meanwhile by someone else: nothing left to do.
                    Err(Error::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                deleted.push(DeletedCredential {
                    id: meta.id,
                    name: meta.name,
                    provider: meta.provider,
                    deleted: outcome,
                });
            }
        }
        let audit = AuditEntry {
            detail: serde_json::json!({ "userId": user_id, "credentials": deleted.len() })
                .to_string(),
            ..caller.audit(self.vault.now(), "user.delete", "", "")
        }
        .for_user(user_id);
        match store.delete_user(&caller.tenant_id, user_id, &audit).await {
            Ok(_) => Ok(deleted),
            Err(StoreError::Conflict) => Err(Error::Aborted(format!(
                "a credential of user {user_id} was created while deleting; retry"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}
