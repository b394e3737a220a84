//! Round trips, metadata, listing, updates and deletes.
use std::collections::BTreeSet;

use credvault::proto::v1 as pb;
use prost::Message;
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::support::T0;

both_backends! {
    async fn every_kind_round_trips_and_metadata_never_carries_the_secret(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let kinds = [
            (api_key("sk_live_roundtrip_1"), pb::CredentialKind::ApiKey, vec!["sk_live_roundtrip_1"]),
            (basic("alice", "pw-roundtrip-2"), pb::CredentialKind::Basic, vec!["alice", "pw-roundtrip-2"]),
            (
                oauth2("at-roundtrip-3", "rt-roundtrip-3", T0 + 3_600_000),
                pb::CredentialKind::Oauth2,
                vec!["at-roundtrip-3", "rt-roundtrip-3"],
            ),
        ];
        for (secret, kind, secret_strings) in kinds {
            let mut req = create("u-1", secret.clone());
            req.labels.insert("team".into(), "growth".into());
            req.expires_at = Some(ts(T0 + 86_400_000));
            let created = c.create_credential(req).await.unwrap().into_inner();
            assert_eq!(created.kind, kind as i32);
            assert_eq!(created.status, pb::CredentialStatus::Active as i32);
            assert_eq!(created.version, 1);
            assert_eq!(created.user_email, "u-1@example.com");
            assert_eq!(created.labels["team"], "growth");
            assert_eq!(created.expires_at, Some(ts(T0 + 86_400_000)));
            assert_eq!(created.created_at, Some(ts(T0)));

            let revealed = c.reveal_credential(reveal(&created.id)).await.unwrap().into_inner();
            assert_eq!(revealed.secret.as_ref(), Some(&secret), "{kind:?} decrypts to what was stored");
            assert_eq!(revealed.credential.as_ref(), Some(&created));

            // Metadata calls, encoded exactly as sent on the wire, hold no secret bytes.
            let got = c.get_credential(get(&created.id)).await.unwrap().into_inner();
            assert_eq!(got, created);
            let listed = c.list_credentials(pb::ListCredentialsRequest::default()).await.unwrap().into_inner();
            // A listing reads fewer columns than a get: every field still the same.
            assert!(listed.credentials.contains(&got), "{kind:?} listed as got: {:?}", listed.credentials);
            for wire in [created.encode_to_vec(), got.encode_to_vec(), listed.encode_to_vec()] {
                for s in &secret_strings {
                    assert!(!contains(&wire, s.as_bytes()), "{s} leaked into metadata");
                }
            }
        }
        let oauth = c
            .list_credentials(pb::ListCredentialsRequest { provider: "salesforce".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .credentials
            .into_iter()
            .find(|c| c.kind == pb::CredentialKind::Oauth2 as i32)
            .unwrap();
        assert_eq!(oauth.scopes, vec!["crm.read", "crm.write"]);
        assert_eq!(oauth.token_expires_at, Some(ts(T0 + 3_600_000)));
    }

    async fn listing_pages_have_no_duplicates_or_gaps(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let mut want = BTreeSet::new();
        for i in 0..9 {
            let user = if i % 3 == 0 { "other" } else { "pager" };
            let mut req = create(user, api_key(&format!("key-{i}")));
            if i % 2 == 0 {
                req.provider = "hubspot".into();
            }
            let id = c.create_credential(req).await.unwrap().into_inner().id;
            if user == "pager" {
                want.insert(id);
            }
        }
        // 6 of pager's credentials, 2 a page: 3 full pages, the last with no token.
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = c
                .list_credentials(pb::ListCredentialsRequest {
                    user_id: "pager".into(),
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            pages += 1;
            assert!(page.credentials.len() <= 2);
            seen.extend(page.credentials.into_iter().map(|c| c.id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 3);
        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no duplicates");
        assert_eq!(unique, want, "no gaps");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "stable id order");

        // All 9 with a page of 2: 5 pages (4 full + 1).
        let mut all = 0;
        let mut token = String::new();
        for _ in 0..10 {
            let page = c
                .list_credentials(pb::ListCredentialsRequest { page_size: 2, page_token: token, ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            all += page.credentials.len();
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(all, 9);

        let filtered = c
            .list_credentials(pb::ListCredentialsRequest {
                user_id: "pager".into(),
                provider: "hubspot".into(),
                status: pb::CredentialStatus::Active as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(filtered.credentials.len(), 3);
        assert!(filtered.credentials.iter().all(|c| c.provider == "hubspot" && c.user_id == "pager"));
        let expired = c
            .list_credentials(pb::ListCredentialsRequest {
                status: pb::CredentialStatus::Expired as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(expired.credentials.is_empty());
    }

    async fn updates_bump_the_version_and_stale_versions_abort(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let id = c.create_credential(create("u", api_key("old-key"))).await.unwrap().into_inner().id;

        app.clock.advance_ms(1_000);
        let mut req = update(&id);
        req.name = Some("Renamed".into());
        req.expected_version = Some(1);
        let v2 = c.update_credential(req).await.unwrap().into_inner();
        assert_eq!((v2.version, v2.name.as_str()), (2, "Renamed"));
        assert_eq!(v2.updated_at, Some(ts(T0 + 1_000)));
        assert_eq!(v2.created_at, Some(ts(T0)));

        // A stale expected_version is ABORTED and changes nothing.
        let mut stale = update(&id);
        stale.name = Some("Lost update".into());
        stale.secret = Some(api_key("never-stored"));
        stale.expected_version = Some(1);
        let (code, message) = code_of(c.update_credential(stale).await);
        assert_eq!(code, Code::Aborted);
        assert!(message.contains("version 2"), "{message}");
        let now = c.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!(now, v2);

        // Replacing the secret, labels and expiry; no expected_version means last write wins.
        let mut req = update(&id);
        req.secret = Some(api_key("new-key"));
        req.labels = Some(pb::Labels { values: [("env".to_owned(), "prod".to_owned())].into() });
        req.expires_at = Some(ts(T0 + 10_000_000));
        let v3 = c.update_credential(req).await.unwrap().into_inner();
        assert_eq!(v3.version, 3);
        assert_eq!(v3.labels.len(), 1);
        assert_eq!(v3.expires_at, Some(ts(T0 + 10_000_000)));
        let revealed = c.reveal_credential(reveal(&id)).await.unwrap().into_inner();
        assert_eq!(revealed.secret, Some(api_key("new-key")));

        let mut req = update(&id);
        req.clear_expires_at = true;
        req.labels = Some(pb::Labels::default());
        let v4 = c.update_credential(req).await.unwrap().into_inner();
        assert_eq!((v4.version, v4.expires_at, v4.labels.len()), (4, None, 0));

        // A secret of another kind is refused.
        let mut req = update(&id);
        req.secret = Some(basic("u", "p"));
        let (code, message) = code_of(c.update_credential(req).await);
        assert_eq!(code, Code::InvalidArgument);
        assert!(message.starts_with("secret:"), "{message}");
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE credential_id = $1 AND action = 'update'", &id).await, 3);
    }

    async fn expired_credentials_are_not_revealed_until_renewed(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let mut req = create("u", api_key("short-lived"));
        req.expires_at = Some(ts(T0 + 60_000));
        let id = c.create_credential(req).await.unwrap().into_inner().id;
        assert!(c.reveal_credential(reveal(&id)).await.is_ok());
        app.clock.advance_ms(60_000);
        let (code, message) = code_of(c.reveal_credential(reveal(&id)).await);
        assert_eq!(code, Code::FailedPrecondition);
        assert!(message.contains("expired"), "{message}");
        let mut renew = update(&id);
        renew.expires_at = Some(ts(T0 + 120_000));
        c.update_credential(renew).await.unwrap();
        assert!(c.reveal_credential(reveal(&id)).await.is_ok());
    }

    async fn delete_removes_the_ciphertext(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let id = c.create_credential(create("u", api_key("to-be-deleted"))).await.unwrap().into_inner().id;
        let keep = c.create_credential(create("u", api_key("kept"))).await.unwrap().into_inner().id;
        assert!(app.blob(&id).await.is_some());

        c.delete_credential(delete(&id)).await.unwrap();
        assert_eq!(app.blob(&id).await, None, "the row and its ciphertext are gone");
        assert_eq!(app.count("SELECT COUNT(*) FROM credentials WHERE id = $1", &id).await, 0);
        for (code, _) in [
            code_of(c.get_credential(get(&id)).await),
            code_of(c.reveal_credential(reveal(&id)).await),
            code_of(c.delete_credential(delete(&id)).await),
        ] {
            assert_eq!(code, Code::NotFound);
        }
        assert!(app.blob(&keep).await.is_some(), "other rows are untouched");
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE credential_id = $1 AND action = 'delete'", &id).await, 1);
    }

    async fn every_reveal_is_audited_without_the_secret(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let id = c.create_credential(create("u", api_key("audited-secret"))).await.unwrap().into_inner().id;
        for n in 0..3 {
            let req = pb::RevealCredentialRequest { id: id.clone(), request_id: format!("req-{n}") };
            c.reveal_credential(req).await.unwrap();
        }
        let sql = "SELECT COUNT(*) FROM audit_log WHERE credential_id = $1 AND action = 'reveal' \
                   AND actor LIKE 'tok_%' AND request_id LIKE 'req-%'";
        assert_eq!(app.count(sql, &id).await, 3);
        // The secret is nowhere in the database in clear (audit rows included); the
        // request ids of the reveals are, which shows the search looks at them.
        let dump = app.database_dump().await;
        assert!(contains(&dump, b"req-2"));
        assert!(!contains(&dump, b"audited-secret"));
        // A failed reveal (missing credential) is not recorded as a reveal.
        let missing = credvault::ids::new_id(credvault::ids::CREDENTIAL_PREFIX);
        assert_eq!(code_of(c.reveal_credential(reveal(&missing)).await).0, Code::NotFound);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE credential_id = $1", &missing).await, 0);
    }

    async fn health_and_reflection_are_served(app) {
        let mut health = app.health().await;
        for service in ["", "credvault.v1.CredentialService", "credvault.v1.AdminService"] {
            let r = health
                .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service}");
        }
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr)).unwrap().connect().await.unwrap();
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) = replies.message().await.unwrap().unwrap().message_response else {
            panic!("expected a service list");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for wanted in ["credvault.v1.CredentialService", "credvault.v1.AdminService", "grpc.health.v1.Health"] {
            assert!(names.iter().any(|n| n == wanted), "{wanted} missing from {names:?}");
        }
    }
}
