//! Tenant B cannot see or touch tenant A's credentials, and cannot tell them from
//! missing ones.
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;

both_backends! {
    async fn another_tenants_credential_is_indistinguishable_from_a_missing_one(app) {
        let a = app.tenant("acme").await;
        let b = app.tenant("globex").await;
        let mut ca = app.client(&a.token).await;
        let mut cb = app.client(&b.token).await;
        let id = ca.create_credential(create("shared-user", api_key("acme-secret"))).await.unwrap().into_inner().id;
        cb.create_credential(create("shared-user", api_key("globex-secret"))).await.unwrap();

        let mut rename = update(&id);
        rename.name = Some("hijacked".into());
        let from_b = [
            code_of(cb.get_credential(get(&id)).await),
            code_of(cb.reveal_credential(reveal(&id)).await),
            code_of(cb.update_credential(rename.clone()).await),
            code_of(cb.delete_credential(delete(&id)).await),
        ];
        let listed = cb
            .list_credentials(pb::ListCredentialsRequest { user_id: "shared-user".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.credentials.len(), 1);
        assert!(listed.credentials.iter().all(|c| c.id != id));

        // A is untouched by all of it.
        let still = ca.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!((still.name.as_str(), still.version), ("shared-user's Salesforce", 1));
        let secret = ca.reveal_credential(reveal(&id)).await.unwrap().into_inner().secret;
        assert_eq!(secret, Some(api_key("acme-secret")));

        // Now make the id really missing and ask again: the answers are byte-identical.
        ca.delete_credential(delete(&id)).await.unwrap();
        let missing = [
            code_of(ca.get_credential(get(&id)).await),
            code_of(ca.reveal_credential(reveal(&id)).await),
            code_of(ca.update_credential(rename).await),
            code_of(ca.delete_credential(delete(&id)).await),
        ];
        assert_eq!(from_b, missing);
        assert!(from_b.iter().all(|(code, _)| *code == Code::NotFound));
    }
}
