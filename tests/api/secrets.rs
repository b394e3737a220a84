//! Canaries: unique secrets planted through every path, then looked for everywhere
//! they must not be: the database file and WAL (raw, base64, hex), the trace-level
//! logs of the whole process, `Debug` of requests and responses, and error messages.
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use credvault::proto::v1 as pb;
use secrecy::ExposeSecret;

use crate::both_backends;
use crate::fixtures::*;
use crate::support::{T0, logs};

/// Every form in which `canary` could appear in bytes: raw, hex, and base64 at each
/// of the three alignments (standard and URL-safe alphabets).
pub fn encodings(canary: &str) -> Vec<Vec<u8>> {
    let raw = canary.as_bytes();
    let mut forms = vec![raw.to_vec(), hex(raw, false), hex(raw, true)];
    for k in 0..3usize {
        let mut shifted = vec![0u8; k];
        shifted.extend_from_slice(raw);
        for encoded in [STANDARD.encode(&shifted), URL_SAFE_NO_PAD.encode(&shifted)] {
            // Drop the characters that also encode the padding bytes or the tail.
            let start = (8 * k).div_ceil(6);
            forms.push(encoded.as_bytes()[start..encoded.len() - 4].to_vec());
        }
    }
    forms
}

fn hex(bytes: &[u8], upper: bool) -> Vec<u8> {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect::<String>()
        .into_bytes()
}

pub fn assert_absent(place: &str, haystack: &[u8], canaries: &[String]) {
    for canary in canaries {
        for form in encodings(canary) {
            assert!(
                !contains(haystack, &form),
                "a canary ({}) appeared in {place}",
                String::from_utf8_lossy(&form)
            );
        }
    }
}

both_backends! {
    async fn canary_secrets_appear_nowhere_but_the_reveal(app) {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let canary = |what: &str| format!("CANARY-{what}-{tag}");
        let canaries: Vec<String> =
            ["apikey", "password", "access", "refresh", "updated", "invalid"].iter().map(|w| canary(w)).collect();
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let mut debug = String::new();

        let requests = [
            create("u-api", api_key(&canary("apikey"))),
            create("u-basic", basic("alice", &canary("password"))),
            create("u-oauth", oauth2(&canary("access"), &canary("refresh"), T0 + 3_600_000)),
        ];
        let mut ids = Vec::new();
        for req in requests {
            debug += &format!("{req:?}");
            let created = c.create_credential(req).await.unwrap().into_inner();
            debug += &format!("{created:?}");
            ids.push(created.id);
        }
        let mut req = update(&ids[0]);
        req.secret = Some(api_key(&canary("updated")));
        debug += &format!("{req:?}");
        c.update_credential(req).await.unwrap();

        let mut revealed_secrets = Vec::new();
        for id in &ids {
            let r = c.reveal_credential(reveal(id)).await.unwrap().into_inner();
            debug += &format!("{r:?}");
            revealed_secrets.push(r.secret.unwrap());
        }
        // The reveal is the one place they must appear.
        assert_eq!(revealed_secrets[0], api_key(&canary("updated")));
        assert_eq!(revealed_secrets[1], basic("alice", &canary("password")));

        // Secrets in rejected requests are not echoed back either.
        let mut bad = create("u", api_key(&canary("invalid")));
        bad.user_email = canary("invalid");
        let (_, message) = code_of(c.create_credential(bad.clone()).await);
        bad.user_email = String::new();
        bad.secret = Some(api_key(&format!("{}{}", canary("invalid"), "x".repeat(70_000))));
        let (_, message2) = code_of(c.create_credential(bad).await);
        debug += &message;
        debug += &message2;

        assert_absent("Debug output or error messages", debug.as_bytes(), &canaries);
        assert_absent("logs", &logs().contents(), &canaries);
        let bearer = t.token.expose_secret().to_owned();
        assert!(!contains(&logs().contents(), bearer.as_bytes()), "a bearer token was logged");
        assert!(!contains(&logs().contents(), app.admin_token.expose_secret().as_bytes()));
        // The whole database (SQLite: the file and its WAL; PostgreSQL: every row).
        // Non-secret metadata is stored in clear, so the search does find what is there.
        let dump = app.database_dump().await;
        assert!(contains(&dump, b"u-basic@example.com"));
        assert_absent("the database", &dump, &canaries);
        // The logs were really captured at trace level (this test can fail).
        let captured = String::from_utf8_lossy(&logs().contents()).into_owned();
        assert!(captured.contains("TRACE") && captured.contains("credential created"));
    }
}

#[test]
fn the_canary_search_finds_every_encoding() {
    let canary = "CANARY-selftest-0123456789".to_owned();
    for prefix in ["", "x", "xy", "xyz"] {
        let planted = format!("{prefix}{canary}");
        let haystacks = [
            planted.clone().into_bytes(),
            STANDARD.encode(&planted).into_bytes(),
            URL_SAFE_NO_PAD.encode(&planted).into_bytes(),
            hex(planted.as_bytes(), false),
            hex(planted.as_bytes(), true),
        ];
        for haystack in haystacks {
            let found = encodings(&canary)
                .iter()
                .any(|form| contains(&haystack, form));
            assert!(found, "missed {}", String::from_utf8_lossy(&haystack));
        }
    }
}

#[test]
fn secret_bearing_messages_redact_their_debug() {
    let oauth = oauth2("tok-A", "tok-R", T0);
    let reveal = pb::RevealCredentialResponse {
        credential: None,
        secret: Some(basic("user-U", "pass-P")),
    };
    let token = pb::CreateServiceTokenResponse {
        token: None,
        secret: "cvt_SECRET".into(),
    };
    let started = pb::StartOAuthResponse {
        authorization_url: "https://idp.test/authorize?state=STATE-S".into(),
        expires_at: None,
    };
    let endpoint = pb::CreateWebhookEndpointResponse {
        endpoint: None,
        secret: "whsec_SIGNING".into(),
    };
    let link = pb::CreateConnectLinkResponse {
        url: "https://vault.test/connect/LINK-TOKEN".into(),
        signing_secret: "whsec_NOTIFY".into(),
        ..Default::default()
    };
    let rotated = pb::RotateConnectSecretResponse {
        secret: "whsec_ROTATED".into(),
    };
    let shown = format!(
        "{oauth:?} {reveal:?} {token:?} {started:?} {endpoint:?} {link:?} {rotated:?} {:?}",
        create("u", api_key("key-K"))
    );
    for secret in [
        "tok-A",
        "tok-R",
        "user-U",
        "pass-P",
        "cvt_SECRET",
        "key-K",
        "STATE-S",
        "whsec_SIGNING",
        "LINK-TOKEN",
        "whsec_NOTIFY",
        "whsec_ROTATED",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("[redacted]") && shown.contains("crm.read"),
        "non-secret fields still show"
    );
}
