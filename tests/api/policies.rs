//! Token constraints (issue 14): a token limited to some providers and labels finds
//! every other credential NOT_FOUND on every RPC that takes a credential id, lists
//! only its own, cannot make credentials outside its limits, and does with the ones
//! it sees only what its scopes allow.
use std::collections::BTreeMap;

use credvault::model::Constraints;
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::both_backends;
use crate::fake_provider::FakeProvider;
use crate::fixtures::*;
use crate::proxy::{api, get as proxy_get, key_provider, send, store};
use crate::support::{TestApp, TestTenant, proxy_at};

fn labels(team: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("team".to_owned(), team.to_owned())])
}

fn billing_stripe() -> Constraints {
    Constraints {
        providers: vec!["stripe".into()],
        labels: labels("billing"),
    }
}

/// A credential of `provider` labelled `team`.
async fn labelled(app: &TestApp, t: &TestTenant, provider: &str, team: &str) -> String {
    let mut req = create("u1", api_key("k-1"));
    req.provider = provider.into();
    req.labels = labels(team).into_iter().collect();
    store(app, t, req).await
}

/// The code each credential-id RPC answers `token` for `id`.
async fn codes_for(
    app: &TestApp,
    token: &secrecy::SecretString,
    id: &str,
) -> Vec<(&'static str, Code)> {
    let mut c = app.client(token).await;
    let mut proxy = proxy_at(app.addr, token).await;
    let mut connect = app.connect(token).await;
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let reconnect = pb::CreateConnectLinkRequest {
        user_id: "u1".into(),
        r#type: pb::ConnectLinkType::Reconnect.into(),
        reconnect_credential_id: id.into(),
        ..Default::default()
    };
    vec![
        (
            "GetCredential",
            code(c.get_credential(get(id)).await.map(drop)),
        ),
        (
            "RevealCredential",
            code(c.reveal_credential(reveal(id)).await.map(drop)),
        ),
        (
            "UpdateCredential",
            code(
                c.update_credential(pb::UpdateCredentialRequest {
                    name: Some("renamed".into()),
                    ..update(id)
                })
                .await
                .map(drop),
            ),
        ),
        (
            "RefreshCredential",
            code(
                c.refresh_credential(pb::RefreshCredentialRequest { id: id.into() })
                    .await
                    .map(drop),
            ),
        ),
        (
            "ProxyService.Call",
            code(send(&mut proxy, proxy_get(id, "/v1/x")).await.map(drop)),
        ),
        (
            "CreateConnectLink (reconnect)",
            code(connect.create_connect_link(reconnect).await.map(drop)),
        ),
        (
            "DeleteCredential",
            code(c.delete_credential(delete(id)).await.map(drop)),
        ),
    ]
}

both_backends! {
    async fn credentials_outside_a_tokens_constraints_are_not_found_on_every_rpc(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        fake.with(|i| i.api_keys.insert("k-1".into()));
        for slug in ["stripe", "hubspot"] {
            key_provider(&app, &t, slug, pb::AuthMode::ApiKey, api(&fake)).await;
        }
        let inside = labelled(&app, &t, "stripe", "billing").await;
        let other_team = labelled(&app, &t, "stripe", "sales").await;
        let other_provider = labelled(&app, &t, "hubspot", "billing").await;
        let scopes = ["credentials:read", "credentials:write", "credentials:reveal", "credentials:proxy", "connect:write"];
        let limited = app.constrained_token(&t, &scopes, billing_stripe()).await;

        for outside in [&other_team, &other_provider] {
            for (rpc, code) in codes_for(&app, &limited, outside).await {
                assert_eq!(code, Code::NotFound, "{rpc} on a credential outside the constraints");
            }
            // Still there, untouched.
            let meta = app.client(&t.token).await.get_credential(get(outside)).await.unwrap().into_inner();
            assert_eq!(meta.version, 1);
        }
        let inside_codes = codes_for(&app, &limited, &inside).await;
        for (rpc, code) in &inside_codes {
            let expected = match *rpc {
                // An API key cannot be refreshed.
                "RefreshCredential" => Code::FailedPrecondition,
                _ => Code::Ok,
            };
            assert_eq!(*code, expected, "{rpc} on a credential inside the constraints");
        }
        assert_eq!(inside_codes.len(), 7);
    }

    async fn a_constrained_token_lists_and_makes_only_what_it_may_see(app) {
        let t = app.tenant("acme").await;
        let mut mine = Vec::new();
        for n in 0..3 {
            mine.push(labelled(&app, &t, "stripe", "billing").await);
            labelled(&app, &t, "stripe", &format!("team-{n}")).await;
            labelled(&app, &t, "hubspot", "billing").await;
        }
        let scopes = ["credentials:read", "credentials:write", "users:write"];
        let limited = app.constrained_token(&t, &scopes, billing_stripe()).await;
        let mut c = app.client(&limited).await;
        // Listed one per page, so the filter is in the query and the pages hold.
        let (mut seen, mut page_token) = (Vec::new(), String::new());
        loop {
            let page = c.list_credentials(pb::ListCredentialsRequest { page_size: 1, page_token, ..Default::default() }).await.unwrap().into_inner();
            seen.extend(page.credentials.into_iter().map(|m| m.id));
            if page.next_page_token.is_empty() { break; }
            page_token = page.next_page_token;
        }
        mine.sort();
        assert_eq!(seen, mine);
        let by_provider = c.list_credentials(pb::ListCredentialsRequest { provider: "hubspot".into(), ..Default::default() }).await.unwrap().into_inner();
        assert!(by_provider.credentials.is_empty());

        // Creating inside works; outside (provider or labels) is PERMISSION_DENIED.
        let mut ok = create("u2", api_key("k"));
        ok.provider = "stripe".into();
        ok.labels = [("team".to_owned(), "billing".to_owned()), ("env".to_owned(), "prod".to_owned())].into();
        let id = c.create_credential(ok.clone()).await.unwrap().into_inner().id;
        for (provider, team) in [("hubspot", Some("billing")), ("stripe", Some("sales")), ("stripe", None)] {
            let mut req = create("u2", api_key("k"));
            req.provider = provider.into();
            req.labels = team.map(labels).unwrap_or_default().into_iter().collect();
            let (code, message) = code_of(c.create_credential(req).await);
            assert_eq!(code, Code::PermissionDenied, "{provider} {team:?}: {message}");
            assert!(message.contains("provider=stripe label:team=billing"), "{message}");
        }
        // Moving one of its own outside is refused too.
        let relabel = pb::UpdateCredentialRequest { labels: Some(pb::Labels { values: labels("sales").into_iter().collect() }), ..update(&id) };
        assert_eq!(code_of(c.update_credential(relabel).await).0, Code::PermissionDenied);
        // Deleting a user deletes every credential of theirs: not for a limited token.
        let (code, message) = code_of(app.users(&limited).await.delete_user(pb::DeleteUserRequest { user_id: "u1".into() }).await);
        assert_eq!(code, Code::PermissionDenied, "{message}");
        assert_eq!(app.rows("credentials").await, 10);
    }

    async fn what_a_constrained_token_may_do_is_its_scopes(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        fake.with(|i| i.api_keys.insert("k-1".into()));
        key_provider(&app, &t, "stripe", pb::AuthMode::ApiKey, api(&fake)).await;
        let id = labelled(&app, &t, "stripe", "billing").await;
        let proxy_only = app.constrained_token(&t, &["credentials:proxy"], billing_stripe()).await;
        let mut c = app.client(&proxy_only).await;
        assert_eq!(code_of(c.reveal_credential(reveal(&id)).await).0, Code::PermissionDenied);
        assert_eq!(code_of(c.get_credential(get(&id)).await).0, Code::PermissionDenied);
        let answer = send(&mut proxy_at(app.addr, &proxy_only).await, proxy_get(&id, "/v1/x")).await.unwrap();
        assert_eq!(answer.status, 200);
    }

    async fn constraints_are_checked_stored_and_shown(app) {
        let t = app.tenant("acme").await;
        let mut admin = app.admin(&app.admin_token).await;
        let request = |scopes: &[&str], providers: &[&str], team: &str| pb::CreateServiceTokenRequest {
            tenant: t.id.clone(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            constraints: Some(pb::TokenConstraints {
                providers: providers.iter().map(|s| (*s).to_owned()).collect(),
                labels: if team.is_empty() { Default::default() } else { labels(team).into_iter().collect() },
            }),
            ..Default::default()
        };
        for (scopes, providers, field) in [
            (&["tenant:admin"][..], &["stripe"][..], "constraints"),
            (&["credentials:read"][..], &["Not A Slug"][..], "constraints.providers"),
        ] {
            let (code, message) = code_of(admin.create_service_token(request(scopes, providers, "")).await);
            assert_eq!(code, Code::InvalidArgument, "{message}");
            assert!(message.starts_with(field), "{message}");
        }
        let made = admin.create_service_token(request(&["credentials:proxy"], &["stripe", "hubspot", "stripe"], "billing")).await.unwrap().into_inner();
        let shown = made.token.unwrap().constraints.unwrap();
        assert_eq!(shown.providers, ["hubspot", "stripe"]);
        let listed = admin.list_service_tokens(pb::ListServiceTokensRequest { tenant: t.id.clone(), ..Default::default() }).await.unwrap().into_inner();
        let limited: Vec<_> = listed.tokens.iter().filter(|t| t.constraints.is_some()).collect();
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].constraints.as_ref().unwrap().labels.get("team").map(String::as_str), Some("billing"));
    }
}
