//! Envelope encryption of secrets (see `docs/encryption.md` for the byte layout).
//!
//! A [`Keyring`] holds versioned master keys (KEKs) from configuration. Each sealed
//! secret gets its own random data key (DEK); the payload is sealed with the DEK and the
//! DEK with a wrapping key derived for that seal alone (HKDF-SHA256 of a key and a
//! random salt), both AES-256-GCM, both bound by AAD to the row they live in. The key
//! is the tenant's [`TenantKey`] for tenant-owned values (format 3) and the active KEK
//! for the tenant keys themselves (format 2).
//!
//! ```
//! use credvault::crypto::{AadContext, Keyring};
//!
//! let ring = Keyring::parse("1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", None).unwrap();
//! let row = AadContext { tenant_id: "ten_a", user_id: "user-1", credential_id: "cred_1" };
//! let blob = ring.seal(&row, b"sk_live_123");
//! assert_eq!(ring.open(&row, &blob).unwrap().as_slice(), b"sk_live_123");
//!
//! // The same blob moved to another row does not open.
//! let elsewhere = AadContext { credential_id: "cred_2", ..row };
//! assert!(ring.open(&elsewhere, &blob).is_err());
//! ```
mod envelope;
mod keyring;

pub use envelope::{
    AadContext, FORMAT_VERSION, HEADER_LEN, LEGACY_FORMAT_VERSION, TENANT_FORMAT_VERSION,
    TenantKey, format_of, key_version_of, tenant_key_aad,
};
pub use keyring::{KeyCheck, Keyring, KeyringError, MasterKey};

/// Why a blob could not be opened. None of these carry key or plaintext bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed secret is malformed: {0}")]
    Malformed(&'static str),
    #[error("master key version {0} is not in the keyring")]
    UnknownKeyVersion(u32),
    #[error("sealed secret failed authentication (modified, truncated or moved to another row)")]
    Authentication,
    /// A format-3 value: only its tenant's key opens it.
    #[error("sealed under a tenant key")]
    NeedsTenantKey,
    /// The tenant's key is gone: the tenant was deleted, and with it every way to open
    /// what was sealed under the key.
    #[error("sealed under its tenant's key, which was destroyed when the tenant was deleted")]
    TenantKeyDestroyed,
}
