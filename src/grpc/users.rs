use tonic::{Request, Response, Status};

use super::authorize;
use super::convert::{deleted, timestamp};
use crate::error::Error;
use crate::model::Scope;
use crate::model::users::EndUser;
use crate::proto::v1::{self as pb, user_service_server::UserService};
use crate::service::users::{NewUser, UserChanges, UserKey, Users};

/// `credvault.v1.UserService`: end users as records.
pub struct UserApi {
    users: Users,
}

impl UserApi {
    pub fn new(users: Users) -> Self {
        Self { users }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn user_out(u: EndUser) -> pb::User {
    pb::User {
        user_id: u.user_id,
        email: u.email.unwrap_or_default(),
        external_id: u.external_id.unwrap_or_default(),
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn register_user(&self, req: Request<pb::RegisterUserRequest>) -> Reply<pb::User> {
        let caller = authorize(self.users.vault(), &req, Scope::UsersWrite).await?;
        let r = req.into_inner();
        let new = NewUser {
            user_id: r.user_id,
            email: r.email,
            external_id: r.external_id,
        };
        let user = self.users.register(&caller, new).await?;
        Ok(Response::new(user_out(user)))
    }

    async fn get_user(&self, req: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        let caller = authorize(self.users.vault(), &req, Scope::UsersRead).await?;
        let key = match req.into_inner().key {
            Some(pb::get_user_request::Key::UserId(id)) => UserKey::Id(id),
            Some(pb::get_user_request::Key::Email(email)) => UserKey::Email(email),
            None => return Err(Error::invalid("key", "set user_id or email").into()),
        };
        let user = self.users.get(&caller, &key).await?;
        Ok(Response::new(user_out(user)))
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        let caller = authorize(self.users.vault(), &req, Scope::UsersRead).await?;
        let r = req.get_ref();
        let page = self.users.list(&caller, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.items.into_iter().map(user_out).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_user(&self, req: Request<pb::UpdateUserRequest>) -> Reply<pb::User> {
        let caller = authorize(self.users.vault(), &req, Scope::UsersWrite).await?;
        let r = req.into_inner();
        let changes = UserChanges {
            user_id: r.user_id,
            email: r.email,
            external_id: r.external_id,
        };
        let user = self.users.update(&caller, changes).await?;
        Ok(Response::new(user_out(user)))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Reply<pb::DeleteUserResponse> {
        let caller = authorize(self.users.vault(), &req, Scope::UsersWrite).await?;
        let user_id = &req.get_ref().user_id;
        let gone = self.users.delete(&caller, user_id).await?;
        tracing::info!(tenant = %caller.tenant_id, user = %user_id, credentials = gone.len(), "user deleted");
        Ok(Response::new(pb::DeleteUserResponse {
            credentials: gone
                .into_iter()
                .map(|c| pb::DeletedCredential {
                    id: c.id,
                    name: c.name,
                    provider: c.provider,
                    revocation: deleted(c.deleted).revocation,
                })
                .collect(),
        }))
    }
}
