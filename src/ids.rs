//! Identifiers and bearer tokens.
//!
//! Ids are UUIDv7 (time-ordered, so listings sort by creation) behind a type prefix.
//! Tokens carry 256 bits from the OS CSPRNG; only their SHA-256 is ever stored.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{RngCore, rngs::OsRng};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

pub const CREDENTIAL_PREFIX: &str = "cred_";
pub const TENANT_PREFIX: &str = "ten_";
pub const TOKEN_ID_PREFIX: &str = "tok_";
pub const PROVIDER_PREFIX: &str = "prov_";
pub const STATE_PREFIX: &str = "st_";
pub const EVENT_PREFIX: &str = "evt_";
pub const ENDPOINT_PREFIX: &str = "whk_";
pub const DELIVERY_PREFIX: &str = "dlv_";
/// Prefix of bearer tokens, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_SECRET_PREFIX: &str = "cvt_";

/// A new id such as `cred_0190c2b7e5a87d3f9c1e2a4b6d8f0a12`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// True when `id` has the shape of an id made by [`new_id`] with `prefix`.
pub fn is_well_formed(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// 32 bytes from the OS CSPRNG, base64url: for tokens and OAuth `state`.
pub fn random_token() -> SecretString {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

/// A fresh bearer token: `cvt_` + base64url of 32 random bytes.
pub fn new_token_secret() -> SecretString {
    use secrecy::ExposeSecret;
    SecretString::from(format!(
        "{TOKEN_SECRET_PREFIX}{}",
        random_token().expose_secret()
    ))
}

/// What is stored for a token (or an OAuth `state`): its SHA-256. Tokens have 256 bits of entropy, so a fast
/// hash is enough; a slow password hash would only slow every request.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// [`token_hash`] as lowercase hex.
pub fn token_hash_hex(token: &str) -> String {
    hex(&token_hash(token))
}

/// `bytes` as lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let a = new_id(CREDENTIAL_PREFIX);
        let b = new_id(CREDENTIAL_PREFIX);
        assert_ne!(a, b);
        assert!(is_well_formed(&a, CREDENTIAL_PREFIX));
        assert!(!is_well_formed(&a, TENANT_PREFIX));
        assert!(!is_well_formed("cred_xyz", CREDENTIAL_PREFIX));
    }

    #[test]
    fn tokens_are_long_and_hash_stably() {
        let t = new_token_secret();
        let t = t.expose_secret();
        assert!(t.starts_with(TOKEN_SECRET_PREFIX));
        assert_eq!(t.len(), TOKEN_SECRET_PREFIX.len() + 43);
        assert_eq!(token_hash(t), token_hash(t));
        assert_ne!(
            token_hash(t),
            token_hash(new_token_secret().expose_secret())
        );
    }
}
