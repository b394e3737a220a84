//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`,
//! with the key the base64 part of a `whsec_` secret.
use base64::{Engine, engine::general_purpose::STANDARD};
use rand::{RngCore, rngs::OsRng};
use secrecy::SecretString;
use zeroize::Zeroizing;

pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` + base64 of 32 random bytes (the spec asks for 24 to 64).
pub fn new_secret() -> SecretString {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut());
    SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(key.as_ref())))
}

/// The `v1,…` signature of one message, by the specification's own library
/// (`standardwebhooks`). `None` for a secret that is not base64 or a body that is not
/// UTF-8 (event payloads are JSON, so neither happens for stored events).
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    standardwebhooks::Webhook::new(secret)
        .ok()?
        .sign(msg_id, timestamp, body)
        .ok()
}

/// Checks a `webhook-signature` header (space-separated signatures, any of which may
/// match) in constant time, without the library's freshness window: what a receiver
/// does, for tests and tools that replay recorded deliveries.
pub fn verify(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(expected) = sign(secret, msg_id, timestamp, body) else {
        return false;
    };
    header
        .split(' ')
        .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    /// The Standard Webhooks specification's known-answer vector.
    #[test]
    fn known_answer_vector() {
        let signature = sign(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(
            signature.as_deref(),
            Some("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")
        );
    }

    /// The library's own verifier accepts what we send (a fresh timestamp, two
    /// signatures during a rotation overlap).
    #[test]
    fn the_reference_verifier_accepts_our_headers() {
        let (old, new) = (new_secret(), new_secret());
        let body = br#"{"type":"credential.expired"}"#;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let header = format!(
            "{} {}",
            sign(old.expose_secret(), "evt_1", now, body).unwrap(),
            sign(new.expose_secret(), "evt_1", now, body).unwrap()
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "evt_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", header.parse().unwrap());
        for secret in [&old, &new] {
            let verifier = standardwebhooks::Webhook::new(secret.expose_secret()).unwrap();
            verifier.verify(body, &headers).unwrap();
        }
        let stranger = standardwebhooks::Webhook::new(new_secret().expose_secret()).unwrap();
        assert!(stranger.verify(body, &headers).is_err());
    }

    #[test]
    fn verify_accepts_any_listed_signature_and_rejects_tampering() {
        let secret = new_secret();
        let secret = secret.expose_secret();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == 6 + 44);
        let good = sign(secret, "evt_1", 10, b"{}").unwrap();
        assert!(verify(
            secret,
            "evt_1",
            10,
            b"{}",
            &format!("v1,AAAA {good}")
        ));
        assert!(!verify(secret, "evt_1", 11, b"{}", &good));
        assert!(!verify(secret, "evt_2", 10, b"{}", &good));
        assert!(!verify(secret, "evt_1", 10, b"{ }", &good));
    }
}
