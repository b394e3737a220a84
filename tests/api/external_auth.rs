//! ExternalAuthService against an in-process "customer auth server" that records
//! every request: connectors checked when saved, logins passed through with every
//! placeholder escaped for where it stands, answers mapped, users linked by external
//! id, lockouts shared by replicas, the circuit breaker, forgot-password, and a canary
//! password that appears nowhere but in the one request.
use std::time::Duration;

use base64::Engine;
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::auth_kit::{Answer, FakeAuth, json_connector, login, register};
use crate::both_backends;
use crate::fixtures::*;
use crate::secrets::assert_absent;
use crate::support::{TestApp, TestTenant, external_auth_at, logs};

/// A tenant with a registered user `u-ada` (ada@corp.example) and a connector.
async fn setup(app: &TestApp, connector: pb::Connector) -> (TestTenant, String) {
    let t = app.tenant("acme").await;
    let mut users = app.users(&t.token).await;
    users
        .register_user(register("u-ada", "ada@corp.example"))
        .await
        .unwrap();
    let mut auth = app.external_auth(&t.token).await;
    let created = auth
        .create_connector(pb::CreateConnectorRequest {
            connector: Some(connector),
        })
        .await
        .unwrap()
        .into_inner();
    (t, created.id)
}

pub async fn events(app: &TestApp, t: &TestTenant) -> Vec<serde_json::Value> {
    let mut w = app.webhooks(&t.token).await;
    let list = w
        .list_events(pb::ListEventsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    list.events
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect()
}

fn with_body(server: &FakeAuth, method: &str, format: pb::BodyFormat, body: &str) -> pb::Connector {
    let mut c = json_connector(server);
    let a = c.authentication.as_mut().unwrap();
    a.url = server.url("/login/{{USERID}}?org={{ORGID}}&os={{DEVICEOS}}&ext={{USEREXTERNALID}}");
    a.method = method.into();
    a.format = format.into();
    a.headers.insert(
        "X-Device".to_owned(),
        "{{DEVICENAME}} at {{DEVICEIP}}".to_owned(),
    );
    a.body = body.into();
    c
}

/// Hostile values: quotes, markup, ampersands, non-ASCII, and strings that would
/// end a JSON string or an XML element early.
const HOSTILE_PASSWORD: &str =
    "p\"a'ss<&>é\\\"},\"admin\":true,\"x\":\"</password><admin>1</admin>";
const HOSTILE_USER: &str = "u/ada?&x=\"<é>#";
const HOSTILE_DEVICE: &str = "Ada's \"Mac\" <&> ü";

both_backends! {
    async fn every_method_and_format_carries_hostile_values_intact(app) {
        let server = FakeAuth::start().await;
        let json = r#"{"email":"{{USEREMAIL}}","password":"{{USERPASSWORD}}","id":"{{USERID}}"}"#;
        let (t, _) = setup(&app, json_connector(&server)).await;
        let mut users = app.users(&t.token).await;
        users.register_user(register(HOSTILE_USER, "o'brien+x@corp.example")).await.unwrap();
        let mut auth = app.external_auth(&t.token).await;
        let cases = [
            ("POST", pb::BodyFormat::Json, json.to_owned()),
            ("PUT", pb::BodyFormat::UrlEncoded, "email={{USEREMAIL}}&password={{USERPASSWORD}}&id={{USERID}}".to_owned()),
            ("POST", pb::BodyFormat::Xml, "<login id=\"{{USERID}}\"><email>{{USEREMAIL}}</email><password>{{USERPASSWORD}}</password></login>".to_owned()),
            ("GET", pb::BodyFormat::Json, String::new()),
        ];
        for (i, (method, format, body)) in cases.into_iter().enumerate() {
            let mut c = with_body(&server, method, format, &body);
            c.name = format!("case-{i}");
            let id = auth.create_connector(pb::CreateConnectorRequest { connector: Some(c) }).await.unwrap().into_inner().id;
            let mut req = login(&id, "", HOSTILE_PASSWORD);
            req.user_id = HOSTILE_USER.into();
            req.device.as_mut().unwrap().name = HOSTILE_DEVICE.into();
            req.device.as_mut().unwrap().os = HOSTILE_DEVICE.into();
            let out = auth.authenticate(req).await.unwrap().into_inner();
            assert!(out.authenticated, "{method} {format:?}: {out:?}");
            let seen = server.last();
            assert_eq!(seen.method.as_str(), method);
            // The URL: each value stayed one path segment or query value.
            let path = seen.uri.split('?').next().unwrap();
            assert_eq!(path.matches('/').count(), 2, "{}", seen.uri);
            let decoded: String = url::form_urlencoded::parse(path.trim_start_matches("/login/").as_bytes()).map(|(k, _)| k.into_owned()).collect();
            assert_eq!(decoded.replace('+', " "), HOSTILE_USER.replace('+', " "));
            assert_eq!(seen.query("org").unwrap(), t.id);
            assert_eq!(seen.query("os").unwrap(), HOSTILE_DEVICE);
            assert_eq!(seen.query("ext").unwrap(), "");
            assert_eq!(seen.header("x-device"), format!("{HOSTILE_DEVICE} at 203.0.113.7"));
            assert_eq!(seen.header("x-api-key"), "tenant-key-1");
            match format {
                _ if method == "GET" => {
                    assert!(seen.body.is_empty(), "GET carries no body");
                    assert_eq!(seen.header("content-type"), "");
                }
                pb::BodyFormat::Json => {
                    assert_eq!(seen.header("content-type"), "application/json");
                    let v: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
                    assert_eq!(v.as_object().unwrap().len(), 3, "the structure is unchanged");
                    assert_eq!((v["password"].as_str(), v["id"].as_str()), (Some(HOSTILE_PASSWORD), Some(HOSTILE_USER)));
                    assert_eq!(v["email"], "o'brien+x@corp.example");
                }
                pb::BodyFormat::UrlEncoded => {
                    assert_eq!(seen.header("content-type"), "application/x-www-form-urlencoded");
                    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&seen.body).into_owned().collect();
                    assert_eq!(pairs, [("email".into(), "o'brien+x@corp.example".into()), ("password".into(), HOSTILE_PASSWORD.into()), ("id".into(), HOSTILE_USER.into())]);
                }
                pb::BodyFormat::Xml => {
                    assert_eq!(seen.header("content-type"), "application/xml");
                    let text = String::from_utf8(seen.body.clone()).unwrap();
                    let doc = roxmltree::Document::parse(&text).unwrap();
                    let root = doc.root_element();
                    assert_eq!(root.attribute("id"), Some(HOSTILE_USER));
                    let children: Vec<_> = root.children().filter(|n| n.is_element()).collect();
                    assert_eq!(children.len(), 2, "no element was injected");
                    assert_eq!(children[1].text(), Some(HOSTILE_PASSWORD));
                }
                _ => unreachable!(),
            }
        }
        // A line break where it would start a new header: nothing is sent.
        let mut c = json_connector(&server);
        c.name = "password-header".into();
        c.authentication.as_mut().unwrap().headers.insert("X-Password".into(), "{{USERPASSWORD}}".into());
        let id = auth.create_connector(pb::CreateConnectorRequest { connector: Some(c) }).await.unwrap().into_inner().id;
        let before = server.count();
        let out = auth.authenticate(login(&id, "o'brien+x@corp.example", "pw\r\nX-Evil: 1")).await.unwrap().into_inner();
        assert_eq!((out.authenticated, out.error_code.as_str()), (false, "invalid_credentials"));
        assert_eq!(server.count(), before, "a value with CR/LF in a header sends nothing");
        // Device fields are checked before anything happens.
        let mut req = login(&id, "o'brien+x@corp.example", "pw");
        req.device.as_mut().unwrap().name = "x\r\nX-Evil: 1".into();
        assert_eq!(code_of(auth.authenticate(req).await).0, Code::InvalidArgument);
    }

    async fn basic_auth_needs_no_placeholders(app) {
        let server = FakeAuth::start().await;
        let mut c = json_connector(&server);
        let a = c.authentication.as_mut().unwrap();
        a.body = String::new();
        a.method = "GET".into();
        a.auth_type = pb::ConnectorAuthType::Basic.into();
        let (t, id) = setup(&app, c).await;
        let mut auth = app.external_auth(&t.token).await;
        assert!(auth.authenticate(login(&id, "ada@corp.example", "s3cr:et")).await.unwrap().into_inner().authenticated);
        let expected = base64::engine::general_purpose::STANDARD.encode("ada@corp.example:s3cr:et");
        assert_eq!(server.last().header("authorization"), format!("Basic {expected}"));
    }

    async fn only_200_authenticates_and_refusals_are_mapped(app) {
        let server = FakeAuth::start().await;
        let mut c = json_connector(&server);
        c.authentication.as_mut().unwrap().timeout_ms = 300;
        c.error_mapping = vec![pb::ErrorRule {
            status_min: 400, status_max: 499, match_path: "/reason".into(), match_value: "EXPIRED".into(),
            error_code: "password_expired".into(), message: "Your password has expired: reset it.".into(),
        }];
        let (t, id) = setup(&app, c).await;
        let mut auth = app.external_auth(&t.token).await;
        let mut attempt = async |answer: Answer| {
            server.answer(answer);
            auth.authenticate(login(&id, "ADA@corp.example", "pw")).await.unwrap().into_inner()
        };
        let ok = attempt(Answer::status(200)).await;
        assert!(ok.authenticated && ok.user_id == "u-ada" && ok.error_code.is_empty(), "{ok:?}");
        let no = attempt(Answer::status(401)).await;
        assert_eq!((no.authenticated, no.error_code.as_str()), (false, "invalid_credentials"));
        assert_eq!(no.message, "The email or password is incorrect.");
        let mapped = attempt(Answer::json(403, r#"{"reason":"EXPIRED"}"#)).await;
        assert_eq!((mapped.error_code.as_str(), mapped.message.as_str()), ("password_expired", "Your password has expired: reset it."));
        assert_eq!(attempt(Answer::status(201)).await.error_code, "login_refused", "only 200 authenticates");
        assert_eq!(attempt(Answer::status(500)).await.error_code, "upstream_unavailable");
        let slow = Answer { delay: Duration::from_secs(2), ..Answer::status(200) };
        assert_eq!(attempt(slow).await.error_code, "upstream_unavailable", "a timeout");
        let before = server.count();
        let redirect = Answer { headers: vec![("location", server.url("/elsewhere"))], ..Answer::status(302) };
        assert_eq!(attempt(redirect).await.error_code, "login_refused");
        assert_eq!(server.count(), before + 1, "the redirect was not followed");

        let types: Vec<String> = events(&app, &t).await.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
        assert_eq!(types.iter().filter(|t| *t == "user.authenticated").count(), 1);
        assert_eq!(types.iter().filter(|t| *t == "user.authentication_failed").count(), 6);
        let failed = events(&app, &t).await.into_iter().find(|e| e["type"] == "user.authentication_failed").unwrap();
        assert_eq!(failed["data"]["userId"], "u-ada");
        assert_eq!(failed["data"]["userEmail"], "ada@corp.example");
        assert_eq!(failed["data"]["errorCode"], "invalid_credentials");
    }

    async fn users_are_linked_by_external_id_from_json_xml_or_a_header(app) {
        let server = FakeAuth::start().await;
        let (t, _) = setup(&app, json_connector(&server)).await;
        let mut users = app.users(&t.token).await;
        let mut auth = app.external_auth(&t.token).await;
        let sources = [
            (pb::ExternalIdSource::JsonPointer, "/user/id", Answer::json(200, r#"{"user":{"id":"E-1"}}"#), Answer::json(200, r#"{"user":{"id":"E-2"}}"#)),
            (pb::ExternalIdSource::XmlPath, "/r/user/id", Answer { body: "<r><user><id>E-1</id></user></r>".into(), ..Answer::status(200) }, Answer { body: "<r><user><id>E-9</id></user></r>".into(), ..Answer::status(200) }),
            (pb::ExternalIdSource::Header, "X-User-Id", Answer { headers: vec![("x-user-id", "E-1".into())], ..Answer::status(200) }, Answer { headers: vec![("x-user-id", "E-3".into())], ..Answer::status(200) }),
        ];
        for (i, (source, path, first, other)) in sources.into_iter().enumerate() {
            let user = format!("u-{i}");
            users.register_user(register(&user, &format!("{user}@corp.example"))).await.unwrap();
            let mut c = json_connector(&server);
            c.name = format!("linking-{i}");
            c.link_users = true;
            c.external_id = Some(pb::ExternalIdLocation { source: source.into(), path: path.into() });
            let id = auth.create_connector(pb::CreateConnectorRequest { connector: Some(c) }).await.unwrap().into_inner().id;
            server.answer(first.clone());
            let mut req = login(&id, "", "pw");
            req.user_id = user.clone();
            let out = auth.authenticate(req.clone()).await.unwrap().into_inner();
            // Each user is a different one: E-1 is linked to u-0 only.
            if i == 0 {
                assert!(out.authenticated && out.external_id == "E-1", "{source:?}: {out:?}");
                let stored = users.get_user(pb::GetUserRequest { key: Some(pb::get_user_request::Key::UserId(user.clone())) }).await.unwrap().into_inner();
                assert_eq!(stored.external_id, "E-1");
                // The same id again is fine.
                assert!(auth.authenticate(req.clone()).await.unwrap().into_inner().authenticated);
            } else {
                assert_eq!(out.error_code, "external_id_mismatch", "{source:?}: E-1 belongs to u-0");
            }
            server.answer(other);
            let out = auth.authenticate(req.clone()).await.unwrap().into_inner();
            if i == 0 {
                assert_eq!((out.authenticated, out.error_code.as_str()), (false, "external_id_mismatch"), "{source:?}");
            } else {
                assert!(out.authenticated, "{source:?}: {out:?}");
                server.answer(Answer::json(200, r#"{"user":{"id":"E-7"}}"#));
                server.answer(Answer { body: "<r><user><id>E-7</id></user></r>".into(), headers: vec![("x-user-id", "E-7".into())], ..Answer::status(200) });
                let out = auth.authenticate(req).await.unwrap().into_inner();
                assert_eq!(out.error_code, "external_id_mismatch", "{source:?}: a different id later is refused");
            }
        }
        let mismatches = events(&app, &t).await.into_iter().filter(|e| e["data"]["errorCode"] == "external_id_mismatch").count();
        assert_eq!(mismatches, 5, "each mismatch is an event");
    }

    async fn unknown_users_and_failed_pre_validation_send_nothing(app) {
        let server = FakeAuth::start().await;
        let mut c = json_connector(&server);
        c.pre_validation = Some(pb::PreValidation {
            allowed_email_domains: vec!["corp.example".into()], username_prefix: String::new(), pattern: "[a-z.]+@.*".into(),
        });
        let (t, id) = setup(&app, c).await;
        let mut users = app.users(&t.token).await;
        users.register_user(register("u-x", "mallory@evil.example")).await.unwrap();
        let mut auth = app.external_auth(&t.token).await;
        let code = |r: pb::AuthenticateResponse| r.error_code;
        assert_eq!(code(auth.authenticate(login(&id, "nobody@corp.example", "pw")).await.unwrap().into_inner()), "unknown_user");
        assert_eq!(code(auth.authenticate(login(&id, "mallory@evil.example", "pw")).await.unwrap().into_inner()), "pre_validation_failed");
        assert_eq!(code(auth.authenticate(login(&id, "ada9@corp.example", "pw")).await.unwrap().into_inner()), "pre_validation_failed");
        let mut by_id = login(&id, "", "pw");
        by_id.user_id = "u-x".into();
        assert_eq!(code(auth.authenticate(by_id).await.unwrap().into_inner()), "pre_validation_failed", "the user's email is checked too");
        assert_eq!(server.count(), 0, "no request reached the auth server");
        assert!(auth.authenticate(login(&id, "ada@corp.example", "pw")).await.unwrap().into_inner().authenticated);
        assert_eq!(server.count(), 1);
    }

    async fn lockouts_are_shared_by_replicas(app) {
        let server = FakeAuth::start().await;
        let (t, id) = setup(&app, json_connector(&server)).await;
        let peer = app.spawn_peer().await;
        let mut here = app.external_auth(&t.token).await;
        let mut there = external_auth_at(peer.addr, &t.token).await;
        server.answer(Answer::status(401));
        for i in 0..5 {
            let client = if i % 2 == 0 { &mut here } else { &mut there };
            let out = client.authenticate(login(&id, "ada@corp.example", "wrong")).await.unwrap().into_inner();
            assert_eq!(out.error_code, "invalid_credentials", "attempt {i}");
        }
        assert_eq!(server.count(), 5);
        server.answer(Answer::status(200));
        let locked = there.authenticate(login(&id, "ada@corp.example", "right")).await.unwrap().into_inner();
        assert_eq!(locked.error_code, "locked_out");
        assert_eq!(locked.retry_at.unwrap().seconds, (crate::support::T0 + 60_000) / 1000);
        assert_eq!(server.count(), 5, "a locked attempt sends nothing");
        assert!(events(&app, &t).await.iter().any(|e| e["type"] == "user.locked_out"));
        app.clock.advance_ms(61_000);
        assert!(here.authenticate(login(&id, "ada@corp.example", "right")).await.unwrap().into_inner().authenticated);
        let failing = |prefix: &'static str| app.count("SELECT COUNT(*) FROM auth_failures WHERE subject LIKE $1", prefix);
        assert_eq!(failing("user:%").await, 0, "a success forgets the user's failures");
        assert_eq!(failing("ip:%").await, 1, "but not the address's");
        // Bad input is an error, not an attempt.
        let (code, _) = code_of(here.authenticate(login(&id, "ada@corp.example", "")).await);
        assert_eq!(code, Code::InvalidArgument);
        let mut bad_ip = login(&id, "ada@corp.example", "pw");
        bad_ip.device.as_mut().unwrap().ip = "not-an-ip".into();
        assert_eq!(code_of(here.authenticate(bad_ip).await).0, Code::InvalidArgument);
    }

    async fn the_circuit_opens_when_the_endpoint_keeps_failing(app) {
        let server = FakeAuth::start().await;
        let (t, id) = setup(&app, json_connector(&server)).await;
        let mut auth = app.external_auth(&t.token).await;
        server.answer(Answer::status(503));
        for _ in 0..5 {
            let out = auth.authenticate(login(&id, "ada@corp.example", "pw")).await.unwrap().into_inner();
            assert_eq!(out.error_code, "upstream_unavailable");
        }
        let out = auth.authenticate(login(&id, "ada@corp.example", "pw")).await.unwrap().into_inner();
        assert_eq!(out.error_code, "upstream_unavailable");
        assert_eq!(server.count(), 5, "an open circuit sends nothing");
        let health = auth.get_connector(pb::GetConnectorRequest { id: id.clone() }).await.unwrap().into_inner().health.unwrap();
        assert!(health.circuit_open && health.consecutive_failures == 5, "{health:?}");
        // Upstream failures do not lock the user out.
        app.clock.advance_ms(31_000);
        server.answer(Answer::status(200));
        assert!(auth.authenticate(login(&id, "ada@corp.example", "pw")).await.unwrap().into_inner().authenticated);
        let health = auth.get_connector(pb::GetConnectorRequest { id }).await.unwrap().into_inner().health.unwrap();
        assert!(!health.circuit_open);
    }

    async fn forgot_password_is_forwarded_as_a_get(app) {
        let server = FakeAuth::start().await;
        let mut c = json_connector(&server);
        c.forgot_password = Some(pb::ForgotPasswordTemplate {
            url: server.url("/forgot?email={{USEREMAIL}}&ip={{DEVICEIP}}"),
            headers: [("X-Api-Key".to_owned(), "tenant-key-1".to_owned())].into(),
        });
        let (t, id) = setup(&app, c).await;
        let mut auth = app.external_auth(&t.token).await;
        let req = pb::ForgotPasswordRequest {
            connector_id: id.clone(), email: "ada@corp.example".into(),
            device: Some(pb::Device { ip: "198.51.100.1".into(), ..Default::default() }), ..Default::default()
        };
        assert!(auth.forgot_password(req.clone()).await.unwrap().into_inner().forwarded);
        let seen = server.last();
        assert_eq!(seen.method.as_str(), "GET");
        assert!(seen.body.is_empty());
        assert_eq!((seen.query("email").unwrap().as_str(), seen.query("ip").unwrap().as_str()), ("ada@corp.example", "198.51.100.1"));
        server.answer(Answer::status(404));
        let out = auth.forgot_password(req).await.unwrap().into_inner();
        assert_eq!((out.forwarded, out.error_code.as_str()), (false, "login_refused"));
    }

    async fn connectors_are_checked_when_saved(app) {
        let server = FakeAuth::start().await;
        let t = app.tenant("acme").await;
        let mut auth = app.external_auth(&t.token).await;
        let mut refuse = async |change: fn(&mut pb::Connector), field: &str, words: &str| {
            let mut c = json_connector(&server);
            change(&mut c);
            let (code, message) = code_of(auth.create_connector(pb::CreateConnectorRequest { connector: Some(c) }).await);
            assert_eq!(code, Code::InvalidArgument, "{message}");
            assert!(message.starts_with(field) && message.contains(words), "{field}/{words}: {message}");
        };
        refuse(|c| c.authentication.as_mut().unwrap().body = r#"{"a":"{{USERNAME}}"}"#.into(), "authentication.body", "`{{USERNAME}}` at byte 6").await;
        refuse(|c| c.authentication.as_mut().unwrap().body = r#"{"a":{{USEREMAIL}}}"#.into(), "authentication.body", "not valid JSON").await;
        refuse(|c| { let a = c.authentication.as_mut().unwrap(); a.format = pb::BodyFormat::Xml.into(); a.body = "<a>{{USEREMAIL}}</b>".into(); }, "authentication.body", "not valid XML").await;
        refuse(|c| { let a = c.authentication.as_mut().unwrap(); a.url = format!("{}?p={{{{USERPASSWORD}}}}", a.url); }, "authentication.url", "may not be in a URL").await;
        refuse(|c| c.authentication.as_mut().unwrap().url = "http://{{ORGID}}.corp.example/login".into(), "authentication.url", "scheme and host are written out").await;
        refuse(|c| c.authentication.as_mut().unwrap().method = "GET".into(), "authentication.body", "only sent with POST or PUT").await;
        refuse(|c| c.authentication.as_mut().unwrap().method = "DELETE".into(), "authentication.method", "POST, PUT or GET").await;
        refuse(|c| c.authentication.as_mut().unwrap().timeout_ms = 60_000, "authentication.timeout_ms", "30000").await;
        refuse(|c| c.forgot_password = Some(pb::ForgotPasswordTemplate { url: "http://127.0.0.1/f".into(), headers: [("X-P".to_owned(), "{{USERPASSWORD}}".to_owned())].into() }), "forgot_password.headers", "refused in a forgot-password").await;
        refuse(|c| c.link_users = true, "external_id", "required when link_users").await;
        refuse(|c| c.error_mapping = vec![pb::ErrorRule { status_min: 200, error_code: "x".into(), ..Default::default() }], "error_mapping.status_min", "only 200 authenticates").await;
        refuse(|c| c.pre_validation = Some(pb::PreValidation { pattern: "(".into(), ..Default::default() }), "pre_validation.pattern", "regular expression").await;
        assert_eq!(app.rows("auth_connectors").await, 0, "nothing was stored");

        // Private addresses need a vault admin.
        let mut c = json_connector(&server);
        c.allow_private_network = true;
        let (code, _) = code_of(auth.create_connector(pb::CreateConnectorRequest { connector: Some(c) }).await);
        assert_eq!(code, Code::PermissionDenied);

        // Create, read, update (compare-and-set), list, delete.
        let created = auth.create_connector(pb::CreateConnectorRequest { connector: Some(json_connector(&server)) }).await.unwrap().into_inner();
        assert_eq!(created.authentication.as_ref().unwrap().timeout_ms, 5000, "the default timeout");
        let (code, _) = code_of(auth.create_connector(pb::CreateConnectorRequest { connector: Some(json_connector(&server)) }).await);
        assert_eq!(code, Code::AlreadyExists, "names are unique");
        let mut changed = created.clone();
        changed.name = "renamed".into();
        let updated = auth.update_connector(pb::UpdateConnectorRequest { connector: Some(changed.clone()), expected_version: Some(1) }).await.unwrap().into_inner();
        assert_eq!((updated.name.as_str(), updated.version), ("renamed", 2));
        let (code, _) = code_of(auth.update_connector(pb::UpdateConnectorRequest { connector: Some(changed), expected_version: Some(1) }).await);
        assert_eq!(code, Code::Aborted);
        let got = auth.get_connector(pb::GetConnectorRequest { id: created.id.clone() }).await.unwrap().into_inner();
        assert_eq!(got.authentication.unwrap().headers["X-Api-Key"], "tenant-key-1");
        assert_eq!(auth.list_connectors(pb::ListConnectorsRequest {}).await.unwrap().into_inner().connectors.len(), 1);
        // The configuration is sealed at rest (the header key is not in the database).
        assert!(!contains(&app.database_dump().await, b"tenant-key-1"));
        // Another tenant sees nothing.
        let other = app.tenant("other").await;
        let (code, _) = code_of(app.external_auth(&other.token).await.get_connector(pb::GetConnectorRequest { id: created.id.clone() }).await);
        assert_eq!(code, Code::NotFound);
        auth.delete_connector(pb::DeleteConnectorRequest { id: created.id.clone() }).await.unwrap();
        let (code, _) = code_of(auth.get_connector(pb::GetConnectorRequest { id: created.id }).await);
        assert_eq!(code, Code::NotFound);
    }

    async fn a_canary_password_appears_nowhere_but_the_request(app) {
        let server = FakeAuth::start().await;
        let (t, id) = setup(&app, json_connector(&server)).await;
        let mut auth = app.external_auth(&t.token).await;
        let canary = format!("CANARY-login-{}", uuid::Uuid::new_v4().simple());
        let mut debug = String::new();
        for status in [401, 200, 500] {
            server.answer(Answer::status(status));
            let req = login(&id, "ada@corp.example", &canary);
            debug += &format!("{req:?}");
            let out = auth.authenticate(req).await.unwrap().into_inner();
            debug += &format!("{out:?}");
        }
        let mut bad = login(&id, "ada@corp.example", &canary);
        bad.device.as_mut().unwrap().ip = "bad ip".into();
        debug += &code_of(auth.authenticate(bad).await).1;
        // It did reach the auth server, in the body.
        let body = String::from_utf8(server.last().body).unwrap();
        assert!(body.contains(&canary));
        let canaries = [canary];
        assert_absent("Debug output or errors", debug.as_bytes(), &canaries);
        assert_absent("logs", &logs().contents(), &canaries);
        assert_absent("the database", &app.database_dump().await, &canaries);
        let events = serde_json::to_vec(&events(&app, &t).await).unwrap();
        assert!(contains(&events, b"user.authenticated"));
        assert_absent("events", &events, &canaries);
        let audited = app.count("SELECT COUNT(*) FROM audit_log WHERE action = $1", "user.authenticate").await;
        assert_eq!(audited, 3, "every attempt is audited");
    }
}
