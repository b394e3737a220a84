//! Bearer tokens, and the admin RPCs (every RPC × scope is in `scopes.rs`).
use credvault::proto::v1 as pb;
use secrecy::ExposeSecret;
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;

both_backends! {
    async fn missing_malformed_unknown_and_revoked_tokens_are_unauthenticated(app) {
        let t = app.tenant("acme").await;
        let good = format!("Bearer {}", t.token.expose_secret());
        let unknown = format!("Bearer {}", credvault::ids::new_token_secret().expose_secret());
        let cases: [(Option<&str>, &str); 7] = [
            (None, "missing"),
            (Some(""), "malformed"),
            (Some("Basic dXNlcjpwYXNz"), "malformed"),
            (Some("Bearer"), "malformed"),
            (Some("Bearer cvt_short"), "malformed"),
            (Some(&good[7..]), "malformed"),
            (Some(&unknown), "invalid, revoked or expired"),
        ];
        for (header, expected) in cases {
            let mut c = app.client_with_header(header).await;
            let (code, message) = code_of(c.list_credentials(pb::ListCredentialsRequest::default()).await);
            assert_eq!(code, Code::Unauthenticated, "{header:?}");
            assert!(message.contains(expected), "{header:?}: {message}");
        }
        // The scheme is case-insensitive.
        let lower = format!("bearer {}", t.token.expose_secret());
        let mut c = app.client_with_header(Some(&lower)).await;
        assert!(c.list_credentials(pb::ListCredentialsRequest::default()).await.is_ok());

        // Revocation through the admin RPC takes effect at once.
        let mut admin = app.admin(&app.admin_token).await;
        let minted = admin
            .create_service_token(pb::CreateServiceTokenRequest {
                tenant: "acme".into(),
                scopes: vec!["credentials:read".into()],
                description: "ci".into(),
                expires_at: None,
                constraints: None,
            })
            .await
            .unwrap()
            .into_inner();
        let token_id = minted.token.as_ref().unwrap().id.clone();
        let mut c = app.client_with_header(Some(&format!("Bearer {}", minted.secret))).await;
        assert!(c.list_credentials(pb::ListCredentialsRequest::default()).await.is_ok());
        let revoked = admin
            .revoke_service_token(pb::RevokeServiceTokenRequest { id: token_id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(revoked.revoked_at.is_some());
        let (code, _) = code_of(c.list_credentials(pb::ListCredentialsRequest::default()).await);
        assert_eq!(code, Code::Unauthenticated);
        // Only the hash is stored: the token appears nowhere in the whole database,
        // though its id (the search's control) does.
        let dump = app.database_dump().await;
        assert!(contains(&dump, token_id.as_bytes()), "the search sees the token's row");
        assert!(!contains(&dump, minted.secret.as_bytes()));
        assert!(!contains(&dump, &minted.secret.as_bytes()[4..]));
        assert!(!contains(&dump, app.admin_token.expose_secret().as_bytes()));
    }

    async fn admin_rpcs_manage_tenants_and_tokens(app) {
        let mut admin = app.admin(&app.admin_token).await;
        let tenant = admin
            .create_tenant(pb::CreateTenantRequest { name: "initech".into() })
            .await
            .unwrap()
            .into_inner();
        assert!(tenant.id.starts_with("ten_"));
        let (code, _) = code_of(admin.create_tenant(pb::CreateTenantRequest { name: "initech".into() }).await);
        assert_eq!(code, Code::AlreadyExists);
        let (code, message) = code_of(admin.create_tenant(pb::CreateTenantRequest { name: "Bad Name".into() }).await);
        assert_eq!(code, Code::InvalidArgument);
        assert!(message.starts_with("name:"), "{message}");
        let names: Vec<_> = admin
            .list_tenants(pb::ListTenantsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tenants
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(names.contains(&"default".to_owned()) && names.contains(&"initech".to_owned()));

        let bad_scope = pb::CreateServiceTokenRequest {
            tenant: tenant.id.clone(),
            scopes: vec!["credentials:everything".into()],
            description: String::new(),
            expires_at: None,
            constraints: None,
        };
        assert_eq!(code_of(admin.create_service_token(bad_scope).await).0, Code::InvalidArgument);
        let no_tenant = pb::CreateServiceTokenRequest {
            tenant: "nobody".into(),
            scopes: vec!["credentials:read".into()],
            description: String::new(),
            expires_at: None,
            constraints: None,
        };
        assert_eq!(code_of(admin.create_service_token(no_tenant).await).0, Code::NotFound);

        let minted = admin
            .create_service_token(pb::CreateServiceTokenRequest {
                tenant: tenant.id.clone(),
                scopes: vec!["credentials:write".into(), "credentials:read".into(), "credentials:read".into()],
                description: "billing".into(),
                expires_at: None,
                constraints: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(minted.secret.starts_with("cvt_"));
        assert!(!format!("{minted:?}").contains(&minted.secret), "Debug redacts the token");
        let listed = admin
            .list_service_tokens(pb::ListServiceTokensRequest { tenant: "initech".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.tokens.len(), 1);
        assert_eq!(listed.tokens[0].scopes, vec!["credentials:read", "credentials:write"]);

        // The minted token works for its tenant only.
        let mut c = app.client_with_header(Some(&format!("Bearer {}", minted.secret))).await;
        c.create_credential(create("u", api_key("initech-key"))).await.unwrap();
        assert_eq!(app.count("SELECT COUNT(*) FROM credentials WHERE tenant_id = $1", &tenant.id).await, 1);
        let missing_token = credvault::ids::new_id(credvault::ids::TOKEN_ID_PREFIX);
        let (code, _) = code_of(admin.revoke_service_token(pb::RevokeServiceTokenRequest { id: missing_token }).await);
        assert_eq!(code, Code::NotFound);
    }
}
