//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`,
//! with the key the base64 part of a `whsec_` secret.
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rand::{RngCore, rngs::OsRng};
use secrecy::SecretString;
use sha2::Sha256;
use zeroize::Zeroizing;

pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` + base64 of 32 random bytes (the spec asks for 24 to 64).
pub fn new_secret() -> SecretString {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(key.as_mut());
    SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(key.as_ref())))
}

/// The `v1,…` signature of one message.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = Zeroizing::new(
        STANDARD
            .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
            .ok()?,
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Checks a `webhook-signature` header (space-separated signatures, any of which may
/// match) in constant time: what a receiver does.
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
