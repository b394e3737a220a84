//! Use without reveal (issue 14): ProxyService.Call against an in-process provider
//! API. Each auth mode goes where the provider takes it, the caller never receives
//! the secret, a refused OAuth token is refreshed once (shared across replicas), and
//! paths, headers and addresses that could steer a credential elsewhere are refused.
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::both_backends;
use crate::fake_provider::FakeProvider;
use crate::fixtures::*;
use crate::oauth::{MINUTE, register, seed};
use crate::support::{ProxyClient, TestApp, TestTenant, logs, proxy_at};

/// An answer as the caller sees it, every message joined.
pub struct Answer {
    pub status: i32,
    pub headers: Vec<pb::HttpHeader>,
    pub body: Vec<u8>,
    pub messages: usize,
}

pub async fn send(
    proxy: &mut ProxyClient,
    call: pb::ProxyCallRequest,
) -> Result<Answer, tonic::Status> {
    let mut stream = proxy.call(call).await?.into_inner();
    let mut answer = Answer {
        status: 0,
        headers: Vec::new(),
        body: Vec::new(),
        messages: 0,
    };
    while let Some(m) = stream.message().await? {
        if answer.messages == 0 {
            answer.status = m.status;
            answer.headers = m.headers;
        }
        answer.messages += 1;
        answer.body.extend_from_slice(&m.body);
    }
    Ok(answer)
}

pub fn get(id: &str, path: &str) -> pb::ProxyCallRequest {
    pb::ProxyCallRequest {
        credential_id: id.into(),
        method: "GET".into(),
        path: path.into(),
        ..Default::default()
    }
}

pub fn api(fake: &FakeProvider) -> pb::ProviderApi {
    pb::ProviderApi {
        base_url: fake.url("/api"),
        ..Default::default()
    }
}

/// Registers an API-key or basic provider whose API is `fake`'s.
pub async fn key_provider(
    app: &TestApp,
    t: &TestTenant,
    slug: &str,
    mode: pb::AuthMode,
    api: pb::ProviderApi,
) {
    app.oauth(&t.token)
        .await
        .create_provider(pb::CreateProviderRequest {
            slug: slug.into(),
            auth_mode: mode.into(),
            api: Some(api),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// An OAuth provider at `fake`, with its API there too.
pub async fn oauth_provider(app: &TestApp, t: &TestTenant, fake: &FakeProvider, slug: &str) {
    register(app, t, fake, slug).await;
    app.oauth(&t.token)
        .await
        .update_provider(pb::UpdateProviderRequest {
            slug: slug.into(),
            api: Some(api(fake)),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A credential of `provider` for user `u1`.
pub async fn credential(
    app: &TestApp,
    t: &TestTenant,
    provider: &str,
    secret: pb::Secret,
) -> String {
    let mut req = create("u1", secret);
    req.provider = provider.into();
    store(app, t, req).await
}

/// Stores `req` with the tenant's token; its id.
pub async fn store(app: &TestApp, t: &TestTenant, req: pb::CreateCredentialRequest) -> String {
    app.client(&t.token)
        .await
        .create_credential(req)
        .await
        .unwrap()
        .into_inner()
        .id
}

fn header<'a>(r: &'a crate::fake_provider::ApiRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn answer_text(a: &Answer) -> String {
    let headers: Vec<String> = a
        .headers
        .iter()
        .map(|h| format!("{}: {}", h.name, h.value))
        .collect();
    format!(
        "{} {} {}",
        a.status,
        headers.join("\n"),
        String::from_utf8_lossy(&a.body)
    )
}

both_backends! {
    async fn each_auth_mode_goes_where_the_provider_takes_it_and_never_back(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        let canaries = ["CANARY-at-7c1e", "CANARY-key-52ab", "CANARY-qkey-90fe", "CANARY-pass-33d0"];
        fake.with(|i| {
            i.live_access_tokens.insert(canaries[0].into());
            i.api_keys.extend([canaries[1].to_owned(), canaries[2].to_owned()]);
            i.basic_logins.insert(format!("alice:{}", canaries[3]));
        });
        oauth_provider(&app, &t, &fake, "crm").await;
        let header_key = pb::ProviderApi { key_header: "X-Api-Key".into(), ..api(&fake) };
        key_provider(&app, &t, "keyco", pb::AuthMode::ApiKey, header_key).await;
        let query_key = pb::ProviderApi { key_query_param: "api_key".into(), ..api(&fake) };
        key_provider(&app, &t, "querykey", pb::AuthMode::ApiKey, query_key).await;
        key_provider(&app, &t, "basicco", pb::AuthMode::Basic, api(&fake)).await;
        let ids = [
            credential(&app, &t, "crm", oauth2(canaries[0], "", credvault::clock::Clock::now_ms(&app.clock) + 60 * MINUTE)).await,
            credential(&app, &t, "keyco", api_key(canaries[1])).await,
            credential(&app, &t, "querykey", api_key(canaries[2])).await,
            credential(&app, &t, "basicco", basic("alice", canaries[3])).await,
        ];
        let proxy_only = app.token(&t, &["credentials:proxy"]).await;
        let mut proxy = proxy_at(app.addr, &proxy_only).await;
        for id in &ids {
            let mut call = get(id, "/v1/customers");
            call.query = vec![pb::QueryParam { name: "limit".into(), value: "3".into() }];
            call.headers = vec![pb::HttpHeader { name: "Stripe-Version".into(), value: "2024-06-20".into() }];
            let answer = send(&mut proxy, call).await.unwrap();
            assert_eq!(answer.status, 200, "{}", answer_text(&answer));
            let text = answer_text(&answer);
            for canary in canaries {
                assert!(!text.contains(canary), "the answer carries {canary}: {text}");
            }
            assert!(text.contains("\"path\":\"/api/v1/customers\""), "{text}");
            if id == &ids[2] {
                // The API echoed its query, key and all: masked, same length.
                assert!(text.contains("api_key=****************\""), "{text}");
            }
            assert!(answer.headers.iter().any(|h| h.name == "x-fake"), "{text}");
        }
        let seen = fake.with(|i| i.api_requests.clone());
        assert_eq!(seen.len(), 4);
        assert!(seen.iter().all(|r| r.accepted && r.path == "/api/v1/customers"));
        assert!(seen.iter().all(|r| header(r, "stripe-version") == Some("2024-06-20")));
        assert_eq!(header(&seen[0], "authorization"), Some(format!("Bearer {}", canaries[0]).as_str()));
        assert_eq!(header(&seen[1], "x-api-key"), Some(canaries[1]));
        assert_eq!(header(&seen[1], "authorization"), None);
        assert_eq!(seen[2].query, format!("limit=3&api_key={}", canaries[2]));
        assert!(header(&seen[3], "authorization").unwrap().starts_with("Basic "));

        // Audited: who, what, the status; the query's names but not its values.
        let records = app.audit_rows(&t.id).await;
        let proxied: Vec<_> = records.iter().filter(|r| r.action == "proxy").collect();
        assert_eq!(proxied.len(), 4);
        let detail: serde_json::Value = serde_json::from_str(&proxied[0].detail).unwrap();
        assert_eq!(detail["method"], "GET");
        assert_eq!(detail["path"], "/v1/customers");
        assert_eq!(detail["query"], serde_json::json!(["limit"]));
        assert_eq!(detail["status"], 200);
        assert_eq!(proxied[0].credential_id, ids[0]);
        assert!(!proxied[0].detail.contains('3'), "{}", proxied[0].detail);

        let logged = logs().contents();
        let dump = app.database_dump().await;
        for canary in canaries {
            assert!(!contains(&logged, canary.as_bytes()), "{canary} reached the logs");
            assert!(!contains(&dump, canary.as_bytes()), "{canary} is in the database in the clear");
        }
    }

    async fn a_refused_oauth_token_is_refreshed_once_and_the_call_sent_again(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        oauth_provider(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        // Its access token is not one the API knows (revoked at the provider, say).
        let (id, _) = seed(&app, &mut c, &fake, "crm", 60 * MINUTE).await;
        let mut proxy = proxy_at(app.addr, &t.token).await;
        let answer = send(&mut proxy, get(&id, "/v1/me")).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer_text(&answer));
        assert_eq!(fake.refresh_requests(), 1);
        let seen = fake.with(|i| i.api_requests.clone());
        assert_eq!(seen.iter().map(|r| r.accepted).collect::<Vec<_>>(), [false, true]);
        // The new token is kept: the next call needs no refresh.
        assert_eq!(send(&mut proxy, get(&id, "/v1/me")).await.unwrap().status, 200);
        assert_eq!(fake.refresh_requests(), 1);
        let detail = app.audit_rows(&t.id).await.into_iter().find(|r| r.action == "proxy").unwrap().detail;
        assert!(detail.contains("\"retried\":true"), "{detail}");

        // When the refresh cannot help, the provider's 401 comes back, tried once.
        fake.with(|i| i.live_access_tokens.clear());
        fake.script(crate::fake_provider::Scripted::Answer(400, r#"{"error":"invalid_grant"}"#.into(), None));
        let answer = send(&mut proxy, get(&id, "/v1/me")).await.unwrap();
        assert_eq!(answer.status, 401);
        assert_eq!(fake.refresh_requests(), 2);
        assert_eq!(fake.with(|i| i.api_requests.len()), 4, "one call, not retried after the failed refresh");
    }

    async fn provider_errors_are_passed_back_and_never_retried(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        fake.with(|i| i.api_keys.insert("k-1".into()));
        key_provider(&app, &t, "keyco", pb::AuthMode::ApiKey, api(&fake)).await;
        let id = credential(&app, &t, "keyco", api_key("k-1")).await;
        let mut proxy = proxy_at(app.addr, &t.token).await;
        for (status, method) in [(429, "POST"), (500, "GET"), (503, "PUT")] {
            fake.with(|i| i.api_status = Some(status));
            let before = fake.with(|i| i.api_requests.len());
            let call = pb::ProxyCallRequest { method: method.into(), body: b"{\"amount\":100}".to_vec(), ..get(&id, "/v1/charges") };
            let answer = send(&mut proxy, call).await.unwrap();
            assert_eq!(answer.status, i32::from(status));
            assert_eq!(fake.with(|i| i.api_requests.len()), before + 1, "{method} {status}: sent once");
        }
        let last = fake.with(|i| i.api_requests.last().cloned().unwrap());
        assert_eq!(last.body, b"{\"amount\":100}");
        assert_eq!(last.method, "PUT");
    }

    async fn large_answers_stream_back_in_chunks_and_large_requests_are_refused(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        fake.with(|i| {
            i.api_keys.insert("k-1".into());
            i.api_body_bytes = 2 * 1024 * 1024 + 512 * 1024;
        });
        key_provider(&app, &t, "keyco", pb::AuthMode::ApiKey, api(&fake)).await;
        let id = credential(&app, &t, "keyco", api_key("k-1")).await;
        let mut proxy = proxy_at(app.addr, &t.token).await;
        let answer = send(&mut proxy, get(&id, "/v1/export")).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body.len(), 2 * 1024 * 1024 + 512 * 1024);
        assert_eq!(answer.messages, 3, "1 MiB, 1 MiB and the rest");
        assert!(answer.body.iter().enumerate().all(|(n, b)| *b == b'a' + (n % 26) as u8));

        let big = pb::ProxyCallRequest { method: "POST".into(), body: vec![b'x'; 1024 * 1024 + 1], ..get(&id, "/v1/x") };
        let (code, message) = match send(&mut proxy, big).await { Err(s) => (s.code(), s.message().to_owned()), Ok(_) => panic!("accepted") };
        assert_eq!(code, Code::ResourceExhausted, "{message}");
        assert_eq!(fake.with(|i| i.api_requests.len()), 1);
    }

    async fn paths_and_headers_that_could_steer_the_credential_are_refused(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        fake.with(|i| i.api_keys.insert("k-1".into()));
        let limited = pb::ProviderApi {
            path_prefixes: vec!["/v1/customers".into()],
            key_header: "X-Api-Key".into(),
            ..api(&fake)
        };
        key_provider(&app, &t, "keyco", pb::AuthMode::ApiKey, limited).await;
        let id = credential(&app, &t, "keyco", api_key("k-1")).await;
        let mut proxy = proxy_at(app.addr, &t.token).await;
        let escapes = [
            "v1/customers", "https://evil.example/v1/customers", "//evil.example/v1/customers",
            "/v1/customers/../../admin", "/v1/customers/%2e%2e/%2e%2e/admin", "/v1/customers%2f..%2fadmin",
            "/v1/customers/%5c..", "/v1/customers\\..\\admin", "/v1/customers?all=1", "/v1/customers#x",
            "/v1/customers/\r\nHost: evil.example",
        ];
        for path in escapes {
            let status = send(&mut proxy, get(&id, path)).await.err().unwrap_or_else(|| panic!("{path:?} was sent"));
            assert_eq!(status.code(), Code::InvalidArgument, "{path:?}: {}", status.message());
        }
        let status = send(&mut proxy, get(&id, "/v1/invoices")).await.err().unwrap();
        assert_eq!(status.code(), Code::PermissionDenied, "{}", status.message());
        assert!(status.message().contains("/v1/customers"), "{}", status.message());
        for (name, value) in [
            ("Authorization", "Bearer mine"), ("cookie", "session=1"), ("Host", "evil.example"),
            ("Transfer-Encoding", "chunked"), ("Proxy-Authorization", "Basic eA=="),
            ("X-Api-Key", "mine"), ("X-Note", "a\r\nAuthorization: Bearer mine"), ("Bad Name", "v"),
        ] {
            let call = pb::ProxyCallRequest { headers: vec![pb::HttpHeader { name: name.into(), value: value.into() }], ..get(&id, "/v1/customers") };
            let status = send(&mut proxy, call).await.err().unwrap_or_else(|| panic!("{name} was sent"));
            assert_eq!(status.code(), Code::InvalidArgument, "{name}: {}", status.message());
            assert!(!status.message().contains("mine"), "{}", status.message());
        }
        assert_eq!(fake.with(|i| i.api_requests.len()), 0, "nothing left the vault");
        let ok = send(&mut proxy, get(&id, "/v1/customers/cus_1")).await.unwrap();
        assert_eq!(ok.status, 200);
        assert_eq!(fake.with(|i| i.api_requests[0].path.clone()), "/api/v1/customers/cus_1");
    }

    async fn two_replicas_share_one_refresh_after_a_refusal(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        oauth_provider(&app, &t, &fake, "crm").await;
        let mut c = app.client(&t.token).await;
        let (id, _) = seed(&app, &mut c, &fake, "crm", 60 * MINUTE).await;
        let peer = app.spawn_peer().await;
        let mut calls = Vec::new();
        for n in 0..8 {
            let addr = if n % 2 == 0 { app.addr } else { peer.addr };
            let (token, id) = (t.token.clone(), id.clone());
            calls.push(tokio::spawn(async move {
                let mut proxy = proxy_at(addr, &token).await;
                send(&mut proxy, get(&id, "/v1/me")).await.map(|a| a.status)
            }));
        }
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), 200);
        }
        // Rotation with reuse detection: a second refresh with the old token would
        // have revoked the family and failed the calls.
        assert_eq!(fake.refresh_requests(), 1);
    }
}

both_backends! {
    tweak = |c| credvault::Config { provider_allow_private_addresses: false, ..c };

    async fn api_addresses_outside_the_policy_are_refused(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        let mut oauth = app.oauth(&t.token).await;
        for base in [
            fake.url("/api"), "http://169.254.169.254/latest".into(), "http://[::ffff:127.0.0.1]/".into(),
            "http://0x7f000001/".into(), "http://2130706433/".into(), "http://10.0.0.1/".into(),
            "http://user:pw@api.example.com/".into(), "ftp://api.example.com/".into(),
            "https://api.example.com/v1?x=1".into(),
        ] {
            let create = pb::CreateProviderRequest {
                slug: "keyco".into(),
                auth_mode: pb::AuthMode::ApiKey.into(),
                api: Some(pb::ProviderApi { base_url: base.clone(), ..Default::default() }),
                ..Default::default()
            };
            let (code, message) = code_of(oauth.create_provider(create).await);
            assert_eq!(code, Code::InvalidArgument, "{base}: {message}");
            assert!(message.starts_with("api.base_url"), "{message}");
        }
        assert_eq!(app.rows("oauth_providers").await, 0);

        // A name that resolves to loopback passes registration and is refused at send.
        fake.with(|i| i.api_keys.insert("k-1".into()));
        let by_name = pb::ProviderApi { base_url: fake.url("/api").replace("127.0.0.1", "localhost"), ..Default::default() };
        key_provider(&app, &t, "keyco", pb::AuthMode::ApiKey, by_name).await;
        let id = credential(&app, &t, "keyco", api_key("k-1")).await;
        let status = send(&mut proxy_at(app.addr, &t.token).await, get(&id, "/v1/x")).await.err().unwrap();
        assert_eq!(status.code(), Code::PermissionDenied, "{}", status.message());
        assert!(status.message().contains("address policy"), "{}", status.message());
        assert_eq!(fake.with(|i| i.api_requests.len()), 0);
        let record = app.audit_rows(&t.id).await.into_iter().find(|r| r.action == "proxy").unwrap();
        assert_eq!(record.outcome, "PERMISSION_DENIED");
    }
}

both_backends! {
    async fn pointing_a_provider_api_somewhere_new_takes_the_reveal_scope(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        key_provider(&app, &t, "keyco", pb::AuthMode::ApiKey, api(&fake)).await;
        let writer = app.token(&t, &["providers:write", "providers:read"]).await;
        let mut oauth = app.oauth(&writer).await;
        let elsewhere = pb::UpdateProviderRequest {
            slug: "keyco".into(),
            api: Some(pb::ProviderApi { base_url: "http://203.0.113.9/".into(), ..Default::default() }),
            ..Default::default()
        };
        let (code, message) = code_of(oauth.update_provider(elsewhere).await);
        assert_eq!(code, Code::PermissionDenied, "{message}");
        assert!(message.contains("credentials:reveal"), "{message}");
        // Other changes, and the same base URL, need no more than providers:write.
        let rename = pb::UpdateProviderRequest {
            slug: "keyco".into(),
            display_name: Some("Key Co".into()),
            api: Some(pb::ProviderApi { path_prefixes: vec!["/v1/".into()], ..api(&fake) }),
            ..Default::default()
        };
        let updated = oauth.update_provider(rename).await.unwrap().into_inner();
        assert_eq!(updated.api.unwrap().path_prefixes, ["/v1/"]);
        // A catalog template's own API is not a move either.
        let stripe = pb::CreateProviderRequest { slug: "stripe".into(), template: "stripe".into(), ..Default::default() };
        let created = oauth.create_provider(stripe).await.unwrap().into_inner();
        assert_eq!(created.api.unwrap().base_url, "https://api.stripe.com");
    }

    async fn calls_that_cannot_be_made_say_why(app) {
        let fake = FakeProvider::start().await;
        let t = app.tenant("acme").await;
        let mut proxy = proxy_at(app.addr, &t.token).await;
        // No provider registered, then one without API settings.
        let id = credential(&app, &t, "nowhere", api_key("k-1")).await;
        let status = send(&mut proxy, get(&id, "/v1/x")).await.err().unwrap();
        assert_eq!(status.code(), Code::FailedPrecondition, "{}", status.message());
        assert!(status.message().contains("not registered"), "{}", status.message());
        register(&app, &t, &fake, "crm").await;
        let id = credential(&app, &t, "crm", oauth2("at", "", credvault::clock::Clock::now_ms(&app.clock) + MINUTE)).await;
        let status = send(&mut proxy, get(&id, "/v1/x")).await.err().unwrap();
        assert_eq!(status.code(), Code::FailedPrecondition, "{}", status.message());
        assert!(status.message().contains("api.base_url"), "{}", status.message());
        // A credential that needs its user again is not used.
        app.oauth(&t.token).await
            .update_provider(pb::UpdateProviderRequest { slug: "crm".into(), api: Some(api(&fake)), ..Default::default() })
            .await
            .unwrap();
        app.clock.advance_ms(2 * MINUTE);
        let status = send(&mut proxy, get(&id, "/v1/x")).await.err().unwrap();
        assert_ne!(status.code(), Code::Ok);
        assert_eq!(fake.with(|i| i.api_requests.len()), 0, "an expired token is never sent");
        for (method, path) in [("TRACE", "/v1/x"), ("GET", "")] {
            let call = pb::ProxyCallRequest { method: method.into(), ..get(&id, path) };
            assert_eq!(send(&mut proxy, call).await.err().unwrap().code(), Code::InvalidArgument, "{method} {path}");
        }
        let status = send(&mut proxy, get("cred_nope", "/v1/x")).await.err().unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
