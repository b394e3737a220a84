//! The `UserStore` queries.
use async_trait::async_trait;
use sqlx::Row;

use super::audit_writes::append_audit;
use super::engine::DbRow;
use super::statements::conflict_or;
use super::store::SqlStore;
use crate::clock::Millis;
use crate::model::AuditEntry;
use crate::model::users::{EndUser, email_key};
use crate::store::{Linked, StoreError, StoreResult, UserStore, Window};

const USER_COLUMNS: &str = "tenant_id, user_id, email, external_id, created_at, updated_at";
fn user(row: &DbRow) -> StoreResult<EndUser> {
    Ok(EndUser {
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        external_id: row.try_get("external_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl UserStore for SqlStore {
    async fn insert_user(&self, u: &EndUser) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO end_users (tenant_id, user_id, email, email_key, external_id, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&u.tenant_id)
        .bind(&u.user_id)
        .bind(&u.email)
        .bind(u.email.as_deref().map(email_key))
        .bind(&u.external_id)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.write)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    async fn get_user(&self, tenant_id: &str, user_id: &str) -> StoreResult<Option<EndUser>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM end_users WHERE tenant_id = $1 AND user_id = $2");
        self.fetch_optional(&sql, &[tenant_id, user_id], user).await
    }

    async fn find_user_by_email(
        &self,
        tenant_id: &str,
        email: &str,
    ) -> StoreResult<Option<EndUser>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM end_users WHERE tenant_id = $1 AND email_key = $2");
        self.fetch_optional(&sql, &[tenant_id, &email_key(email)], user)
            .await
    }

    async fn list_users(&self, tenant_id: &str, window: Window<'_>) -> StoreResult<Vec<EndUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM end_users WHERE tenant_id = $1");
        self.fetch_window(sql, vec![tenant_id], "user_id", window, user)
            .await
    }

    async fn update_user(&self, u: &EndUser) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE end_users SET email = $3, email_key = $4, external_id = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(&u.tenant_id)
        .bind(&u.user_id)
        .bind(&u.email)
        .bind(u.email.as_deref().map(email_key))
        .bind(&u.external_id)
        .bind(u.updated_at)
        .execute(&self.write)
        .await
        .map_err(conflict_or)?;
        Ok(done.rows_affected() == 1)
    }

    async fn link_external_id(
        &self,
        tenant_id: &str,
        user_id: &str,
        external_id: &str,
        at: Millis,
    ) -> StoreResult<Linked> {
        let linked = sqlx::query(
            "UPDATE end_users SET external_id = $3, updated_at = $4 \
             WHERE tenant_id = $1 AND user_id = $2 AND external_id IS NULL",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(external_id)
        .bind(at)
        .execute(&self.write)
        .await
        .map_err(conflict_or);
        match linked {
            Ok(done) if done.rows_affected() == 1 => return Ok(Linked::Same),
            Ok(_) => {}
            Err(StoreError::Conflict) => return Ok(Linked::TakenByOther),
            Err(e) => return Err(e),
        }
        Ok(match self.get_user(tenant_id, user_id).await? {
            None => Linked::NoSuchUser,
            Some(u) if u.external_id.as_deref() == Some(external_id) => Linked::Same,
            Some(_) => Linked::Different,
        })
    }

    async fn delete_user(
        &self,
        tenant_id: &str,
        user_id: &str,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM end_users WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                // A credential of the user's was created meanwhile.
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Conflict,
                _ => StoreError::Database(e),
            })?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM auth_failures WHERE tenant_id = $1 AND subject = $2")
            .bind(tenant_id)
            .bind(format!("user:{user_id}"))
            .execute(&mut *tx)
            .await?;
        append_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
