//! Tokens and operators (issue 8): expiry, tenant administrators, the last admin
//! token, unambiguous tenant names, atomic bootstrap, recovery, and the key check.
use std::sync::Arc;

use credvault::clock::Clock as _;
use credvault::proto::v1 as pb;
use secrecy::{ExposeSecret, SecretString};
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::support::{KEY_V1, KEY_V2, test_config};

fn mint(tenant: &str, scopes: &[&str]) -> pb::CreateServiceTokenRequest {
    pb::CreateServiceTokenRequest {
        tenant: tenant.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        description: String::new(),
        expires_at: None,
        constraints: None,
    }
}

both_backends! {
    async fn tokens_expire(app) {
        app.tenant("acme").await;
        let mut admin = app.admin(&app.admin_token).await;
        let mut past = mint("acme", &["credentials:read"]);
        past.expires_at = Some(ts(app.clock.now_ms()));
        let (code, message) = code_of(admin.create_service_token(past).await);
        assert_eq!(code, Code::InvalidArgument);
        assert!(message.starts_with("expires_at:"), "{message}");

        let mut soon = mint("acme", &["credentials:read"]);
        soon.expires_at = Some(ts(app.clock.now_ms() + 60_000));
        let minted = admin.create_service_token(soon).await.unwrap().into_inner();
        assert!(minted.token.unwrap().expires_at.is_some());
        let mut c = app.client_with_header(Some(&format!("Bearer {}", minted.secret))).await;
        assert!(c.list_credentials(pb::ListCredentialsRequest::default()).await.is_ok());
        app.clock.advance_ms(60_000);
        let (code, message) = code_of(c.list_credentials(pb::ListCredentialsRequest::default()).await);
        assert_eq!(code, Code::Unauthenticated);
        assert!(message.contains("expired"), "{message}");
    }

    async fn tenant_admins_manage_their_own_tenant_only(app) {
        let acme = app.tenant("acme").await;
        app.tenant("globex").await;
        let boss = app.token(&acme, &["tenant:admin"]).await;
        let mut a = app.admin(&boss).await;
        let minted = a.create_service_token(mint("acme", &["credentials:read", "tenant:admin"])).await.unwrap().into_inner();
        assert_eq!(minted.token.as_ref().unwrap().tenant_id, acme.id);
        assert_eq!(a.list_service_tokens(pb::ListServiceTokensRequest { tenant: acme.id.clone(), ..Default::default() }).await.unwrap().into_inner().tokens.len(), 3);
        for (code, message) in [
            code_of(a.create_service_token(mint("globex", &["credentials:read"])).await),
            code_of(a.create_service_token(mint("acme", &["admin"])).await),
            code_of(a.list_service_tokens(pb::ListServiceTokensRequest { tenant: "globex".into(), ..Default::default() }).await),
            code_of(a.create_tenant(pb::CreateTenantRequest { name: "initech".into() }).await),
            code_of(a.list_tenants(pb::ListTenantsRequest::default()).await),
        ] {
            assert_eq!(code, Code::PermissionDenied, "{message}");
        }
        // Another tenant's token is NOT_FOUND to it, exactly like a missing one.
        let mut root = app.admin(&app.admin_token).await;
        let theirs = root.create_service_token(mint("globex", &["credentials:read"])).await.unwrap().into_inner();
        let (code, message) = code_of(a.revoke_service_token(pb::RevokeServiceTokenRequest { id: theirs.token.unwrap().id }).await);
        assert_eq!(code, Code::NotFound, "{message}");
        let own = minted.token.unwrap().id;
        assert!(a.revoke_service_token(pb::RevokeServiceTokenRequest { id: own }).await.is_ok());
    }

    async fn the_last_admin_token_cannot_be_revoked(app) {
        let mut admin = app.admin(&app.admin_token).await;
        let tokens = admin.list_service_tokens(pb::ListServiceTokensRequest { tenant: "default".into(), ..Default::default() }).await.unwrap().into_inner().tokens;
        let bootstrap = tokens[0].id.clone();
        let (code, message) = code_of(admin.revoke_service_token(pb::RevokeServiceTokenRequest { id: bootstrap.clone() }).await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains("last"), "{message}");
        // An expired admin token does not count as a working one.
        let mut expiring = mint("default", &["admin"]);
        expiring.expires_at = Some(ts(app.clock.now_ms() + 1_000));
        admin.create_service_token(expiring).await.unwrap();
        app.clock.advance_ms(1_000);
        assert_eq!(code_of(admin.revoke_service_token(pb::RevokeServiceTokenRequest { id: bootstrap.clone() }).await).0, Code::FailedPrecondition);
        // With another working admin token, it can go.
        let second = admin.create_service_token(mint("default", &["admin"])).await.unwrap().into_inner();
        assert!(admin.revoke_service_token(pb::RevokeServiceTokenRequest { id: bootstrap }).await.is_ok());
        let mut admin = app.admin(&SecretString::from(second.secret)).await;
        let (code, _) = code_of(admin.revoke_service_token(pb::RevokeServiceTokenRequest { id: second.token.unwrap().id }).await);
        assert_eq!(code, Code::FailedPrecondition);
    }

    async fn tenants_are_found_by_id_or_by_name_never_confused(app) {
        let mut admin = app.admin(&app.admin_token).await;
        let acme = admin.create_tenant(pb::CreateTenantRequest { name: "acme".into() }).await.unwrap().into_inner();
        let (code, message) = code_of(admin.create_tenant(pb::CreateTenantRequest { name: acme.id.clone() }).await);
        assert_eq!(code, Code::InvalidArgument, "a name that looks like an id: {message}");
        for tenant in [acme.id.clone(), "acme".to_owned()] {
            let minted = admin.create_service_token(mint(&tenant, &["credentials:read"])).await.unwrap().into_inner();
            assert_eq!(minted.token.unwrap().tenant_id, acme.id);
        }
    }

    async fn bootstrap_happens_once_and_recovery_mints_a_working_admin(app) {
        assert!(app.vault.bootstrap().await.unwrap().is_none(), "already bootstrapped");
        assert_eq!(app.rows("tenants").await, 1);
        assert_eq!(app.rows("service_tokens").await, 1);
        let (token, secret) = app.vault.recover_admin("default").await.unwrap();
        assert!(token.scopes.contains(&credvault::model::Scope::Admin));
        let mut admin = app.admin(&SecretString::from(secret.expose_secret().to_owned())).await;
        assert!(admin.list_tenants(pb::ListTenantsRequest::default()).await.is_ok());
    }

    async fn a_key_check_stored_by_an_older_version_is_checked_then_upgraded(app) {
        use hmac::{Hmac, Mac};
        let legacy = |key: &[u8]| {
            let mac = |k: &[u8], m: &[u8]| {
                let mut h = <Hmac<sha2::Sha256> as Mac>::new_from_slice(k).unwrap();
                h.update(m);
                h.finalize().into_bytes().to_vec()
            };
            mac(&mac(key, b"credvault/v1/key-check-key"), b"credvault/v1/key-check")
        };
        let current = app.key_check(1).await;
        assert_eq!((current.len(), current[0]), (33, 2), "tagged with its derivation");
        // What a version before HKDF-derived keys stored, for the right key:
        app.set_key_check(1, &legacy(&[1; 32])).await;
        let wrong_v1 = "1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let config = test_config(&app.db, wrong_v1, |c| c);
        let err = credvault::App::build_with_clock(&config, Arc::new(app.clock.clone())).await.err().expect("refused");
        assert!(err.to_string().contains("key check"), "{err}");
        assert_eq!(app.key_check(1).await, legacy(&[1; 32]), "a refused start changes nothing");
        // The right key starts and replaces the old value with the current one.
        app.restart_with_keys(KEY_V1).await;
        assert_eq!(app.key_check(1).await, current);
    }

    async fn a_wrong_master_key_refuses_to_start(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let id = c.create_credential(create("u", api_key("sealed-under-v1"))).await.unwrap().into_inner().id;
        let wrong_v1 = "1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let config = test_config(&app.db, wrong_v1, |c| c);
        let err = credvault::App::build_with_clock(&config, Arc::new(app.clock.clone())).await.err().expect("refused");
        let message = err.to_string();
        assert!(message.contains("master key version 1") && message.contains("key check"), "{message}");
        // The right key, with a new version 2 beside it, starts; the credential opens.
        app.restart_with_keys(&format!("{KEY_V1},{KEY_V2}")).await;
        let mut c = app.client(&t.token).await;
        assert!(c.reveal_credential(reveal(&id)).await.is_ok());
        assert_eq!(app.rows("key_checks").await, 2);
    }
}
