//! Provider endpoints cannot be used to take secrets (issue 8): private addresses need
//! a vault admin, moving an endpoint needs the client secret, a row edited in the
//! database no longer opens its client secret, and every change is audited.
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::both_backends;
use crate::fake_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider};
use crate::fixtures::*;
use crate::oauth::{MINUTE, register, seed};

fn provider(slug: &str, token_url: String) -> pb::CreateProviderRequest {
    pb::CreateProviderRequest {
        slug: slug.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        authorization_url: "https://auth.example.com/authorize".into(),
        token_url,
        ..Default::default()
    }
}

both_backends! {
    tweak = |c| credvault::Config { provider_allow_private_addresses: false, ..c };

    async fn private_provider_endpoints_need_a_vault_admin(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        let mut oauth = app.oauth(&t.token).await;
        let (code, message) = code_of(oauth.create_provider(provider("crm", fake.url("/token"))).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.starts_with("token_url:") && message.contains("address policy"), "{message}");
        let mut opt_in = provider("crm", fake.url("/token"));
        opt_in.allow_private_network = true;
        let (code, message) = code_of(oauth.create_provider(opt_in.clone()).await);
        assert_eq!(code, Code::PermissionDenied, "{message}");
        assert_eq!(app.rows("oauth_providers").await, 0);

        // A vault admin (with providers:write in this tenant) may opt one provider in.
        let operator = app.token(&t, &["admin", "providers:write"]).await;
        let created = app.oauth(&operator).await.create_provider(opt_in).await.unwrap().into_inner();
        assert!(created.allow_private_network);
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        assert!(c.refresh_credential(pb::RefreshCredentialRequest { id }).await.is_ok());

        // A name that resolves to loopback passes registration and is refused at send.
        let by_name = provider("erp", fake.url("/token").replace("127.0.0.1", "localhost"));
        oauth.create_provider(by_name).await.unwrap();
        let (id, _) = seed(&app, &mut c, &fake, "erp", 30 * MINUTE).await;
        let before = fake.refresh_requests();
        let (code, message) = code_of(c.refresh_credential(pb::RefreshCredentialRequest { id }).await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains("address policy"), "{message}");
        assert_eq!(fake.refresh_requests(), before, "nothing was sent");
    }
}

both_backends! {
    async fn moving_an_endpoint_needs_the_client_secret_and_is_audited(app) {
        let (home, elsewhere) = (FakeProvider::start().await, FakeProvider::start().await);
        let t = app.tenant("acme").await;
        register(&app, &t, &home, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &home, "crm", 30 * MINUTE).await;
        let mut oauth = app.oauth(&t.token).await;
        for (field, url) in [("token_url", elsewhere.url("/token")), ("revocation_url", elsewhere.url("/revoke"))] {
            let mut change = pb::UpdateProviderRequest { slug: "crm".into(), ..Default::default() };
            match field {
                "token_url" => change.token_url = Some(url),
                _ => change.revocation_url = Some(url),
            }
            let (code, message) = code_of(oauth.update_provider(change).await);
            assert_eq!(code, Code::InvalidArgument, "{field}: {message}");
            assert!(message.starts_with("client_secret:"), "{message}");
        }
        // The same origin, another path: no secret needed.
        let same_origin = pb::UpdateProviderRequest {
            slug: "crm".into(),
            token_url: Some(home.url("/token?v=2")),
            ..Default::default()
        };
        oauth.update_provider(same_origin).await.unwrap();
        // With the secret, the move is the operator's decision.
        let moved = pb::UpdateProviderRequest {
            slug: "crm".into(),
            token_url: Some(elsewhere.url("/token")),
            client_secret: Some(CLIENT_SECRET.into()),
            ..Default::default()
        };
        oauth.update_provider(moved).await.unwrap();
        let _ = c.refresh_credential(pb::RefreshCredentialRequest { id: id.clone() }).await;
        assert_eq!(elsewhere.refresh_requests(), 1);
        let audited = "SELECT COUNT(*) FROM audit_log WHERE action LIKE $1";
        assert_eq!(app.count(audited, "provider.%").await, 3, "create and two updates");
    }

    async fn a_provider_row_edited_in_the_database_cannot_redirect_its_secret(app) {
        let (home, attacker) = (FakeProvider::start().await, FakeProvider::start().await);
        let t = app.tenant("acme").await;
        register(&app, &t, &home, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &home, "crm", 30 * MINUTE).await;
        let edited = app
            .execute(
                "UPDATE oauth_providers SET config = REPLACE(config, $1, $2)",
                &[&home.url("/token"), &attacker.url("/token")],
            )
            .await;
        assert_eq!(edited, 1);
        let (code, message) = code_of(c.refresh_credential(pb::RefreshCredentialRequest { id }).await);
        assert_eq!(code, Code::DataLoss, "{message}");
        assert_eq!(attacker.refresh_requests(), 0, "neither the secret nor a refresh token left");
        assert_eq!(home.refresh_requests(), 0);
    }

    async fn client_secrets_sealed_before_endpoint_binding_are_upgraded_at_start(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        register(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
        // As an older version sealed it: no endpoint binding in the AAD.
        let (provider_id, _) = app.provider_secret().await;
        let ring = credvault::crypto::Keyring::parse(&app.keys, None).unwrap();
        let legacy = ring.seal(
            &credvault::crypto::AadContext { tenant_id: &t.id, user_id: "", credential_id: &provider_id },
            CLIENT_SECRET.as_bytes(),
        );
        app.set_provider_secret(&legacy).await;
        let keys = app.keys.clone();
        app.restart_with_keys(&keys).await;
        let (_, upgraded) = app.provider_secret().await;
        assert_ne!(upgraded, legacy, "re-sealed at start");
        let mut c = app.client(&t.token).await;
        assert!(c.refresh_credential(pb::RefreshCredentialRequest { id }).await.is_ok());
    }
}
