//! A table of bad inputs, each with the status and field it must produce; none of
//! them may write anything.
use credvault::proto::v1 as pb;
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::support::T0;

type Mutate = fn(&mut pb::CreateCredentialRequest);

const BAD_CREATES: &[(&str, Mutate, Code, &str)] = &[
    (
        "missing user_id",
        |r| r.user_id.clear(),
        Code::InvalidArgument,
        "user_id:",
    ),
    (
        "user_id too long",
        |r| r.user_id = "u".repeat(256),
        Code::InvalidArgument,
        "user_id:",
    ),
    (
        "control character",
        |r| r.user_id = "a\u{7}b".into(),
        Code::InvalidArgument,
        "user_id:",
    ),
    (
        "bad email",
        |r| r.user_email = "not-an-email".into(),
        Code::InvalidArgument,
        "user_email:",
    ),
    (
        "missing name",
        |r| r.name.clear(),
        Code::InvalidArgument,
        "name:",
    ),
    (
        "name with newline",
        |r| r.name = "a\nb".into(),
        Code::InvalidArgument,
        "name:",
    ),
    (
        "missing provider",
        |r| r.provider.clear(),
        Code::InvalidArgument,
        "provider:",
    ),
    (
        "provider not a slug",
        |r| r.provider = "Sales Force".into(),
        Code::InvalidArgument,
        "provider:",
    ),
    (
        "missing secret",
        |r| r.secret = None,
        Code::InvalidArgument,
        "secret:",
    ),
    (
        "secret with no kind",
        |r| r.secret = Some(pb::Secret { kind: None }),
        Code::InvalidArgument,
        "secret:",
    ),
    (
        "empty api key",
        |r| r.secret = Some(api_key("")),
        Code::InvalidArgument,
        "secret.api_key.key:",
    ),
    (
        "empty basic username",
        |r| r.secret = Some(basic("", "pw")),
        Code::InvalidArgument,
        "secret.basic.username:",
    ),
    (
        "empty access token",
        |r| r.secret = Some(oauth2("", "rt", T0 + 1)),
        Code::InvalidArgument,
        "secret.oauth2.access_token:",
    ),
    (
        "oauth expiry nanos",
        |r| {
            let mut s = oauth2("at", "rt", T0);
            if let Some(pb::secret::Kind::Oauth2(o)) = &mut s.kind {
                o.expires_at = Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -5,
                });
            }
            r.secret = Some(s);
        },
        Code::InvalidArgument,
        "secret.oauth2.expires_at:",
    ),
    (
        "secret over 64 KiB",
        |r| r.secret = Some(api_key(&"k".repeat(65_537))),
        Code::ResourceExhausted,
        "secret:",
    ),
    (
        "too many labels",
        |r| r.labels = (0..65).map(|i| (format!("k{i}"), "v".into())).collect(),
        Code::InvalidArgument,
        "labels:",
    ),
    (
        "bad label key",
        |r| {
            r.labels.insert("has space".into(), "v".into());
        },
        Code::InvalidArgument,
        "labels:",
    ),
    (
        "label value too long",
        |r| {
            r.labels.insert("k".into(), "v".repeat(257));
        },
        Code::InvalidArgument,
        "labels:",
    ),
    (
        "expiry in the past",
        |r| r.expires_at = Some(ts(T0 - 1)),
        Code::InvalidArgument,
        "expires_at:",
    ),
    (
        "expiry out of range",
        |r| {
            r.expires_at = Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            })
        },
        Code::InvalidArgument,
        "expires_at:",
    ),
    (
        "request_id too long",
        |r| r.request_id = "r".repeat(256),
        Code::InvalidArgument,
        "request_id:",
    ),
];

both_backends! {
    async fn bad_inputs_get_clear_statuses_and_change_nothing(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let keep = c.create_credential(create("u", api_key("existing"))).await.unwrap().into_inner();
        let audit_rows = app.rows("audit_log").await;

        for (what, mutate, code, field) in BAD_CREATES {
            let mut req = create("u", api_key("fine"));
            mutate(&mut req);
            let (got, message) = code_of(c.create_credential(req).await);
            assert_eq!((got, what), (*code, what), "{message}");
            assert!(message.starts_with(field), "{what}: `{message}` should name {field}");
        }

        let id = keep.id.clone();
        let bad_updates: Vec<(&str, pb::UpdateCredentialRequest, Code, &str)> = vec![
            ("malformed id", update("cred_nope"), Code::InvalidArgument, "id:"),
            ("nothing to change", update(&id), Code::InvalidArgument, "update:"),
            ("expiry set and cleared", pb::UpdateCredentialRequest {
                expires_at: Some(ts(T0 + 1000)), clear_expires_at: true, ..update(&id)
            }, Code::InvalidArgument, "clear_expires_at:"),
            ("empty name", pb::UpdateCredentialRequest { name: Some(String::new()), ..update(&id) }, Code::InvalidArgument, "name:"),
            ("oversized secret", pb::UpdateCredentialRequest {
                secret: Some(api_key(&"k".repeat(70_000))), ..update(&id)
            }, Code::ResourceExhausted, "secret:"),
            ("past expiry", pb::UpdateCredentialRequest { expires_at: Some(ts(T0 - 5)), ..update(&id) }, Code::InvalidArgument, "expires_at:"),
        ];
        for (what, req, code, field) in bad_updates {
            let (got, message) = code_of(c.update_credential(req).await);
            assert_eq!((got, what), (code, what), "{message}");
            assert!(message.starts_with(field), "{what}: `{message}` should name {field}");
        }

        let bad_lists: Vec<(&str, pb::ListCredentialsRequest, &str)> = vec![
            ("page too big", pb::ListCredentialsRequest { page_size: 1001, ..Default::default() }, "page_size:"),
            ("negative page", pb::ListCredentialsRequest { page_size: -1, ..Default::default() }, "page_size:"),
            ("forged token", pb::ListCredentialsRequest { page_token: "bm9wZQ".into(), ..Default::default() }, "page_token:"),
            ("unknown status", pb::ListCredentialsRequest { status: 42, ..Default::default() }, "status:"),
            ("bad provider", pb::ListCredentialsRequest { provider: "NOPE".into(), ..Default::default() }, "provider:"),
        ];
        for (what, req, field) in bad_lists {
            let (got, message) = code_of(c.list_credentials(req).await);
            assert_eq!(got, Code::InvalidArgument, "{what}: {message}");
            assert!(message.starts_with(field), "{what}: `{message}` should name {field}");
        }
        for (got, message) in [
            code_of(c.get_credential(get("")).await),
            code_of(c.reveal_credential(reveal("cred_../../etc")).await),
            code_of(c.delete_credential(delete("DROP TABLE credentials")).await),
        ] {
            assert_eq!(got, Code::InvalidArgument, "{message}");
            assert!(message.starts_with("id:"), "{message}");
        }

        // Larger than the gRPC message limit (1 MiB by default): RESOURCE_EXHAUSTED, as
        // gRPC's status table says (tonic itself answers OUT_OF_RANGE).
        let (got, message) = code_of(c.create_credential(create("u", api_key(&"k".repeat(1_100_000)))).await);
        assert_eq!(got, Code::ResourceExhausted, "{message}");
        assert!(message.contains("max_message_bytes"), "{message}");

        // Nothing changed: the one credential is as it was, and only audit rows of
        // successful calls exist.
        assert_eq!(app.rows("credentials").await, 1);
        assert_eq!(app.rows("end_users").await, 1);
        assert_eq!(app.rows("audit_log").await, audit_rows);
        assert_eq!(c.get_credential(get(&id)).await.unwrap().into_inner(), keep);
        let r = c.reveal_credential(reveal(&id)).await.unwrap().into_inner();
        assert_eq!(r.secret, Some(api_key("existing")));
    }
}
