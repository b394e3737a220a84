//! `credvault user …`: end users as records (UserService).
use clap::Subcommand;
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status, time};
use crate::ClientArgs;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Register an end user (idempotent; fills fields the user lacks).
    Register {
        /// Your end user's id (at most 255 characters).
        #[arg(long)]
        user: String,
        /// Unique per tenant, compared case-insensitively.
        #[arg(long, default_value = "")]
        email: String,
        /// The user's id in your own auth system.
        #[arg(long, default_value = "")]
        external_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a user by id or by email.
    Get {
        /// The user's id.
        #[arg(long, conflicts_with = "email", required_unless_present = "email")]
        user: Option<String>,
        /// The user's email (any case).
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List users in id order (every page).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a user's email or external id (`""` clears one).
    Update {
        /// The user's id.
        #[arg(long)]
        user: String,
        /// The new email (`""` clears it).
        #[arg(long)]
        email: Option<String>,
        /// The new external id (`""` clears it).
        #[arg(long)]
        external_id: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a user and every credential of theirs (OAuth ones revoked first).
    Delete {
        /// The user's id.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn user_json(u: &pb::User) -> serde_json::Value {
    json!({
        "user_id": u.user_id,
        "email": u.email,
        "external_id": u.external_id,
        "created_at": time(u.created_at.as_ref()),
        "updated_at": time(u.updated_at.as_ref()),
    })
}

pub async fn run(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Register {
            user,
            email,
            external_id,
            client,
        } => {
            let mut c = client::users(&client).await?;
            let request = pb::RegisterUserRequest {
                user_id: user,
                email,
                external_id,
            };
            let r = c.register_user(request).await.map_err(status)?;
            print_json(&user_json(r.get_ref()));
        }
        UserCommand::Get {
            user,
            email,
            client,
        } => {
            let key = match (user, email) {
                (Some(id), _) => pb::get_user_request::Key::UserId(id),
                (None, Some(email)) => pb::get_user_request::Key::Email(email),
                (None, None) => anyhow::bail!("give --user or --email"),
            };
            let mut c = client::users(&client).await?;
            let r = c
                .get_user(pb::GetUserRequest { key: Some(key) })
                .await
                .map_err(status)?;
            print_json(&user_json(r.get_ref()));
        }
        UserCommand::List { client } => {
            let c = client::users(&client).await?;
            let users = client::all_pages(|page_token| {
                let mut c = c.clone();
                async move {
                    let request = pb::ListUsersRequest {
                        page_size: client::PAGE_SIZE,
                        page_token,
                    };
                    let r = c.list_users(request).await?.into_inner();
                    Ok((r.users, r.next_page_token))
                }
            })
            .await?;
            print_json(&json!(users.iter().map(user_json).collect::<Vec<_>>()));
        }
        UserCommand::Update {
            user,
            email,
            external_id,
            client,
        } => {
            let mut c = client::users(&client).await?;
            let request = pb::UpdateUserRequest {
                user_id: user,
                email,
                external_id,
            };
            let r = c.update_user(request).await.map_err(status)?;
            print_json(&user_json(r.get_ref()));
        }
        UserCommand::Delete { user, client } => {
            let mut c = client::users(&client).await?;
            let r = c
                .delete_user(pb::DeleteUserRequest { user_id: user })
                .await
                .map_err(status)?;
            let deleted: Vec<_> = r
                .get_ref()
                .credentials
                .iter()
                .map(|d| json!({"id": d.id, "name": d.name, "provider": d.provider}))
                .collect();
            print_json(&json!({ "deleted_credentials": deleted }));
        }
    }
    Ok(())
}
