//! Versioned master keys (KEKs), loaded from configuration, never from the database.
use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rand::{RngCore, rngs::OsRng};
use sha2::Sha256;
use zeroize::Zeroizing;

/// One 256-bit master key and its version.
pub struct MasterKey {
    pub version: u32,
    key: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    pub fn new(version: u32, key: [u8; 32]) -> Self {
        Self {
            version,
            key: Zeroizing::new(key),
        }
    }

    /// A fresh random key from the OS CSPRNG.
    pub fn generate(version: u32) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        Self { version, key }
    }

    /// The key in the textual form used by key files and `CREDVAULT_MASTER_KEYS`:
    /// `<version>:<base64 of 32 bytes>`.
    pub fn to_line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}:{}",
            self.version,
            STANDARD.encode(self.key.as_ref())
        ))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("version", &self.version)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Why key material could not be loaded. Messages name versions and positions only.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("no master keys configured")]
    Empty,
    #[error("master key entry {0}: expected `<version>:<base64 of 32 bytes>`")]
    Syntax(usize),
    #[error("master key entry {0}: version must be a whole number from 1 to 4294967295")]
    Version(usize),
    #[error("master key entry {0}: key must be exactly 32 bytes of standard base64")]
    KeyBytes(usize),
    #[error("master key version {0} is listed twice")]
    Duplicate(u32),
    #[error("active key version {0} is not among the configured master keys")]
    ActiveMissing(u32),
}

type HmacSha256 = Hmac<Sha256>;

/// Domain label of the key derived from each KEK for request fingerprints.
const FINGERPRINT_LABEL: &[u8] = b"credvault/v1/request-fingerprint";
/// Domain label of the key derived from each KEK for its key check value, and the
/// fixed message that key authenticates.
const KEY_CHECK_KEY_LABEL: &[u8] = b"credvault/v1/key-check-key";
const KEY_CHECK_MESSAGE: &[u8] = b"credvault/v1/key-check";

/// The master keys, with exactly one active for new writes. Ciphers are keyed once
/// here and reused; `Aes256Gcm` zeroizes its key schedule on drop.
pub struct Keyring {
    ciphers: BTreeMap<u32, Aes256Gcm>,
    /// Per version, HMAC-SHA256(KEK, FINGERPRINT_LABEL): a key that is not the KEK.
    fingerprint_keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    /// Per version, the key check value: HMAC-SHA256(HMAC-SHA256(KEK,
    /// KEY_CHECK_KEY_LABEL), KEY_CHECK_MESSAGE). Stored in the database, it tells a
    /// wrong key from tampered data; it reveals nothing about the KEK.
    check_values: BTreeMap<u32, [u8; 32]>,
    active: u32,
    /// Seals per version since this keyring was built (for `/metrics`).
    seals: BTreeMap<u32, std::sync::atomic::AtomicU64>,
}

impl Keyring {
    /// Builds a keyring; `active` defaults to the highest version.
    pub fn new(keys: Vec<MasterKey>, active: Option<u32>) -> Result<Self, KeyringError> {
        let mut ciphers = BTreeMap::new();
        let mut fingerprint_keys = BTreeMap::new();
        let mut check_values = BTreeMap::new();
        for k in &keys {
            let cipher = Aes256Gcm::new(k.key.as_ref().into());
            if ciphers.insert(k.version, cipher).is_some() {
                return Err(KeyringError::Duplicate(k.version));
            }
            fingerprint_keys.insert(
                k.version,
                Zeroizing::new(hmac(k.key.as_ref(), FINGERPRINT_LABEL)),
            );
            let check_key = Zeroizing::new(hmac(k.key.as_ref(), KEY_CHECK_KEY_LABEL));
            check_values.insert(k.version, hmac(check_key.as_ref(), KEY_CHECK_MESSAGE));
        }
        let highest = *ciphers.keys().next_back().ok_or(KeyringError::Empty)?;
        let active = active.unwrap_or(highest);
        if !ciphers.contains_key(&active) {
            return Err(KeyringError::ActiveMissing(active));
        }
        Ok(Self {
            seals: ciphers.keys().map(|v| (*v, Default::default())).collect(),
            ciphers,
            fingerprint_keys,
            check_values,
            active,
        })
    }

    /// How many seals each version made since this keyring was built.
    pub fn seal_counts(&self) -> Vec<(u32, u64)> {
        self.seals
            .iter()
            .map(|(v, n)| (*v, n.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }

    pub(crate) fn count_seal(&self, version: u32) {
        if let Some(n) = self.seals.get(&version) {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Parses entries separated by commas or newlines (`#` starts a comment line).
    pub fn parse(text: &str, active: Option<u32>) -> Result<Self, KeyringError> {
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        let mut keys = Vec::new();
        for (i, entry) in entries.enumerate() {
            let n = i + 1;
            let (version, b64) = entry.split_once(':').ok_or(KeyringError::Syntax(n))?;
            let version: u32 = version
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or(KeyringError::Version(n))?;
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(b64.trim())
                    .map_err(|_| KeyringError::KeyBytes(n))?,
            );
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyringError::KeyBytes(n))?;
            keys.push(MasterKey::new(version, key));
        }
        Self::new(keys, active)
    }

    /// The version new secrets are sealed under.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.ciphers.keys().copied()
    }

    /// A keyed fingerprint of `data` under the key derived from master key `version`:
    /// lets requests be compared later without storing anything guessable from them.
    pub fn fingerprint(&self, version: u32, data: &[u8]) -> Option<[u8; 32]> {
        self.fingerprint_keys
            .get(&version)
            .map(|key| hmac(key.as_ref(), data))
    }

    /// The key check value of each configured version.
    pub fn check_values(&self) -> impl Iterator<Item = (u32, [u8; 32])> + '_ {
        self.check_values.iter().map(|(v, c)| (*v, *c))
    }

    pub(super) fn active_cipher(&self) -> (u32, &Aes256Gcm) {
        // `new` guarantees the active version is present.
        (self.active, &self.ciphers[&self.active])
    }

    pub(super) fn cipher(&self, version: u32) -> Option<&Aes256Gcm> {
        self.ciphers.get(&version)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.ciphers.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: u32, byte: u8) -> String {
        format!("{v}:{}", STANDARD.encode([byte; 32]))
    }

    #[test]
    fn parses_several_versions_and_picks_highest() {
        let text = format!("# keys\n{}\n{}", line(1, 1), line(7, 2));
        let ring = Keyring::parse(&text, None).unwrap();
        assert_eq!(ring.active_version(), 7);
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1, 7]);
        let ring = Keyring::parse(&format!("{},{}", line(1, 1), line(2, 2)), Some(1)).unwrap();
        assert_eq!(ring.active_version(), 1);
    }

    #[test]
    fn rejects_bad_entries_without_echoing_them() {
        assert_eq!(Keyring::parse("", None).unwrap_err(), KeyringError::Empty);
        assert_eq!(
            Keyring::parse("abc", None).unwrap_err(),
            KeyringError::Syntax(1)
        );
        assert_eq!(
            Keyring::parse(&format!("{},x:AAAA", line(1, 1)), None).unwrap_err(),
            KeyringError::Version(2)
        );
        assert_eq!(
            Keyring::parse("1:AAAA", None).unwrap_err(),
            KeyringError::KeyBytes(1)
        );
        assert_eq!(
            Keyring::parse(&format!("{},{}", line(3, 1), line(3, 2)), None).unwrap_err(),
            KeyringError::Duplicate(3)
        );
        assert_eq!(
            Keyring::parse(&line(1, 1), Some(2)).unwrap_err(),
            KeyringError::ActiveMissing(2)
        );
        let err = Keyring::parse("1:c2VjcmV0LWtleS1tYXRlcmlhbA==", None).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn fingerprints_are_keyed_per_version() {
        let ring = Keyring::new(
            vec![MasterKey::new(1, [1; 32]), MasterKey::new(2, [2; 32])],
            None,
        )
        .unwrap();
        let a = ring.fingerprint(1, b"request").unwrap();
        assert_eq!(a, ring.fingerprint(1, b"request").unwrap());
        assert_ne!(a, ring.fingerprint(2, b"request").unwrap());
        assert_ne!(a, ring.fingerprint(1, b"other").unwrap());
        assert!(ring.fingerprint(3, b"request").is_none());
    }

    #[test]
    fn key_check_values_tell_keys_apart_and_are_not_the_key() {
        let ring = |byte| Keyring::new(vec![MasterKey::new(1, [byte; 32])], None).unwrap();
        let a: Vec<_> = ring(1).check_values().collect();
        assert_eq!(a, ring(1).check_values().collect::<Vec<_>>());
        assert_ne!(a, ring(2).check_values().collect::<Vec<_>>());
        assert_ne!(a[0].1, [1; 32]);
        assert_ne!(Some(a[0].1), ring(1).fingerprint(1, KEY_CHECK_MESSAGE));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = MasterKey::new(1, [0xAB; 32]);
        let shown = format!("{k:?}");
        let shown = format!("{shown} {:?}", Keyring::new(vec![k], None).unwrap());
        assert!(shown.contains("[redacted]"));
        assert!(!shown.to_lowercase().contains("ab, ab") && !shown.contains("171"));
    }
}
