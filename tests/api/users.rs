//! UserService: end users registered, found by id or email (case-insensitively),
//! paged, updated, and deleted together with their credentials.
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::auth_kit::register;
use crate::both_backends;
use crate::fixtures::*;

both_backends! {
    async fn users_are_registered_idempotently_with_unique_emails(app) {
        let t = app.tenant("acme").await;
        let mut users = app.users(&t.token).await;
        let ada = users.register_user(register("u-ada", "Ada@Example.com")).await.unwrap().into_inner();
        assert_eq!((ada.user_id.as_str(), ada.email.as_str()), ("u-ada", "Ada@Example.com"));
        // The same registration again is the same user.
        let again = users.register_user(register("u-ada", "ada@example.COM")).await.unwrap().into_inner();
        assert_eq!(again, ada);
        // Another user may not take the email, in any case.
        let (code, message) = code_of(users.register_user(register("u-eve", "ADA@example.com")).await);
        assert_eq!(code, Code::AlreadyExists, "{message}");
        assert!(message.contains("registered to another user"), "{message}");
        // Nor the user another email.
        let (code, message) = code_of(users.register_user(register("u-ada", "other@example.com")).await);
        assert_eq!(code, Code::AlreadyExists, "{message}");
        assert!(message.contains("UpdateUser"), "{message}");
        // Found by email without regard to case.
        let by_email = pb::GetUserRequest { key: Some(pb::get_user_request::Key::Email("ADA@EXAMPLE.COM".into())) };
        assert_eq!(users.get_user(by_email).await.unwrap().into_inner().user_id, "u-ada");
        let (code, _) = code_of(users.get_user(pb::GetUserRequest::default()).await);
        assert_eq!(code, Code::InvalidArgument);

        // Creating a credential registers its user implicitly, but not with a taken email.
        let mut c = app.client(&t.token).await;
        let mut req = create("u-bob", api_key("k-1"));
        req.user_email = "bob@example.com".into();
        let cred = c.create_credential(req).await.unwrap().into_inner();
        let bob = pb::GetUserRequest { key: Some(pb::get_user_request::Key::UserId("u-bob".into())) };
        assert_eq!(users.get_user(bob.clone()).await.unwrap().into_inner().email, "bob@example.com");
        let mut taken = create("u-mallory", api_key("k-2"));
        taken.user_email = "BOB@example.com".into();
        let (code, message) = code_of(c.create_credential(taken).await);
        assert_eq!(code, Code::AlreadyExists, "{message}");
        assert_eq!(app.rows("credentials").await, 1, "nothing stored for the refused create");

        // Paging in id order.
        for i in 0..3 {
            users.register_user(register(&format!("u-p{i}"), "")).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = users.list_users(pb::ListUsersRequest { page_size: 2, page_token: token }).await.unwrap().into_inner();
            seen.extend(page.users.into_iter().map(|u| u.user_id));
            if page.next_page_token.is_empty() { break; }
            token = page.next_page_token;
        }
        assert_eq!(seen, ["u-ada", "u-bob", "u-p0", "u-p1", "u-p2"]);

        // Update: a field left unset stays, "" clears it.
        let updated = users.update_user(pb::UpdateUserRequest {
            user_id: "u-ada".into(), email: None, external_id: Some("ext-1".into()),
        }).await.unwrap().into_inner();
        assert_eq!((updated.email.as_str(), updated.external_id.as_str()), ("Ada@Example.com", "ext-1"));
        let (code, _) = code_of(users.update_user(pb::UpdateUserRequest {
            user_id: "u-p0".into(), email: Some("bob@example.com".into()), external_id: None,
        }).await);
        assert_eq!(code, Code::AlreadyExists);
        let (code, _) = code_of(users.update_user(pb::UpdateUserRequest {
            user_id: "u-p1".into(), email: None, external_id: Some("ext-1".into()),
        }).await);
        assert_eq!(code, Code::AlreadyExists, "external ids are unique too");

        // Delete: the user's credentials go with them, and the caller is told which.
        let gone = users.delete_user(pb::DeleteUserRequest { user_id: "u-bob".into() }).await.unwrap().into_inner();
        assert_eq!(gone.credentials.len(), 1);
        assert_eq!(gone.credentials[0].id, cred.id);
        assert_eq!(app.rows("credentials").await, 0);
        let (code, _) = code_of(users.get_user(bob).await);
        assert_eq!(code, Code::NotFound);
        let (code, _) = code_of(users.delete_user(pb::DeleteUserRequest { user_id: "u-bob".into() }).await);
        assert_eq!(code, Code::NotFound);
        // The email is free again.
        users.register_user(register("u-bob2", "bob@example.com")).await.unwrap();
    }
}
