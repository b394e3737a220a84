//! Versioned master keys (KEKs), loaded from configuration, never from the database.
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::{Engine, engine::general_purpose::STANDARD};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::{RngCore, rngs::OsRng};
use sha2::Sha256;
use subtle::ConstantTimeEq;
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

/// HKDF `info` labels of the keys derived from each KEK for purposes other than
/// sealing. Each purpose has its own key; none is the KEK.
const FINGERPRINT_INFO: &[u8] = b"credvault/v2/request-fingerprint";
const KEY_CHECK_INFO: &[u8] = b"credvault/v2/key-check";
const AUDIT_INFO: &[u8] = b"credvault/v2/audit-checkpoint";
/// The message a key check key authenticates.
const KEY_CHECK_MESSAGE: &[u8] = b"credvault/v2/key-check-value";
/// Marks values derived the format-2 way, so stored ones tell their derivation.
const DERIVATION_V2: u8 = 2;

/// The keys of format 1, derived by HMAC(KEK, label). Only read to accept (and upgrade)
/// what older versions stored.
mod legacy {
    pub const FINGERPRINT_LABEL: &[u8] = b"credvault/v1/request-fingerprint";
    pub const KEY_CHECK_KEY_LABEL: &[u8] = b"credvault/v1/key-check-key";
    pub const KEY_CHECK_MESSAGE: &[u8] = b"credvault/v1/key-check";
}

/// What a stored key check value says about a configured key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// It is the key, checked the current way.
    Matches,
    /// It is the key, but the stored value is of the older derivation: store
    /// [`Keyring::check_value`] in its place.
    MatchesLegacy,
    /// Another key was configured under this version.
    Differs,
}

/// The master keys, with exactly one active for new writes. The active version can
/// change while running (it is a cluster-wide fact kept in the database).
pub struct Keyring {
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    /// Format-1 ciphers, keyed directly by the KEK; only opens old blobs. `Aes256Gcm`
    /// zeroizes its key schedule on drop.
    ciphers: BTreeMap<u32, Aes256Gcm>,
    active: AtomicU32,
    /// Seals per version since this keyring was built (for `/metrics` and the
    /// persisted seal counters).
    seals: BTreeMap<u32, AtomicU64>,
}

impl Keyring {
    /// Builds a keyring; `active` defaults to the highest version.
    pub fn new(keys: Vec<MasterKey>, active: Option<u32>) -> Result<Self, KeyringError> {
        let mut by_version = BTreeMap::new();
        let mut ciphers = BTreeMap::new();
        for k in keys {
            ciphers.insert(k.version, Aes256Gcm::new(k.key.as_ref().into()));
            if by_version.insert(k.version, k.key).is_some() {
                return Err(KeyringError::Duplicate(k.version));
            }
        }
        let highest = *by_version.keys().next_back().ok_or(KeyringError::Empty)?;
        let active = active.unwrap_or(highest);
        if !by_version.contains_key(&active) {
            return Err(KeyringError::ActiveMissing(active));
        }
        Ok(Self {
            seals: by_version
                .keys()
                .map(|v| (*v, Default::default()))
                .collect(),
            keys: by_version,
            ciphers,
            active: AtomicU32::new(active),
        })
    }

    /// How many seals each version made since this keyring was built.
    pub fn seal_counts(&self) -> Vec<(u32, u64)> {
        self.seals
            .iter()
            .map(|(v, n)| (*v, n.load(Ordering::Relaxed)))
            .collect()
    }

    pub(crate) fn count_seal(&self, version: u32) {
        if let Some(n) = self.seals.get(&version) {
            n.fetch_add(1, Ordering::Relaxed);
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
            keys.push(parse_entry(i + 1, entry)?);
        }
        Self::new(keys, active)
    }

    /// The version new secrets are sealed under.
    pub fn active_version(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Makes `version` the one new secrets are sealed under.
    pub fn set_active(&self, version: u32) -> Result<(), KeyringError> {
        if !self.keys.contains_key(&version) {
            return Err(KeyringError::ActiveMissing(version));
        }
        self.active.store(version, Ordering::Release);
        Ok(())
    }

    pub fn holds(&self, version: u32) -> bool {
        self.keys.contains_key(&version)
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// A keyed fingerprint of `data` under the key derived from master key `version`:
    /// lets requests be compared later without storing anything guessable from them.
    /// The first byte names the derivation (2).
    pub fn fingerprint(&self, version: u32, data: &[u8]) -> Option<Vec<u8>> {
        self.tagged_mac(version, FINGERPRINT_INFO, data)
    }

    /// The MAC of an audit checkpoint's bytes under the audit key derived from master
    /// key `version`: `0x02 ‖ HMAC-SHA256(HKDF(KEK, info "credvault/v2/audit-checkpoint"), message)`.
    pub fn audit_mac(&self, version: u32, message: &[u8]) -> Option<Vec<u8>> {
        self.tagged_mac(version, AUDIT_INFO, message)
    }

    /// Whether `stored` is the audit MAC of `message` under `version`, in constant
    /// time; `None` when the keyring lacks the version.
    pub fn audit_mac_matches(&self, version: u32, stored: &[u8], message: &[u8]) -> Option<bool> {
        let expected = self.audit_mac(version, message)?;
        Some(bool::from(expected.as_slice().ct_eq(stored)))
    }

    /// `0x02 ‖ HMAC-SHA256(HKDF(KEK of version, info), data)`.
    fn tagged_mac(&self, version: u32, info: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        let key = self.derive(version, None, info)?;
        let mut tagged = vec![DERIVATION_V2];
        tagged.extend_from_slice(&hmac(key.as_ref(), data));
        Some(tagged)
    }

    /// Whether `stored` is the fingerprint of `data` under `version`, in constant
    /// time; stored fingerprints of either derivation are understood.
    pub fn fingerprint_matches(&self, version: u32, stored: &[u8], data: &[u8]) -> Option<bool> {
        let expected = if stored.len() == 32 {
            let key = Zeroizing::new(hmac(
                self.keys.get(&version)?.as_ref(),
                legacy::FINGERPRINT_LABEL,
            ));
            hmac(key.as_ref(), data).to_vec()
        } else {
            self.fingerprint(version, data)?
        };
        Some(bool::from(expected.as_slice().ct_eq(stored)))
    }

    /// The key check value of `version`, tagged with its derivation:
    /// `0x02 ‖ HMAC-SHA256(HKDF(KEK, info "credvault/v2/key-check"), "credvault/v2/key-check-value")`.
    /// It tells a wrong key from tampered data and reveals nothing about the KEK.
    pub fn check_value(&self, version: u32) -> Option<Vec<u8>> {
        self.tagged_mac(version, KEY_CHECK_INFO, KEY_CHECK_MESSAGE)
    }

    /// Compares a stored key check value with the configured key `version`, in
    /// constant time; values stored by older versions (32 bytes, untagged) are accepted.
    pub fn check(&self, version: u32, stored: &[u8]) -> Option<KeyCheck> {
        if stored.len() == 32 {
            let key = Zeroizing::new(hmac(
                self.keys.get(&version)?.as_ref(),
                legacy::KEY_CHECK_KEY_LABEL,
            ));
            let value = hmac(key.as_ref(), legacy::KEY_CHECK_MESSAGE);
            return Some(if bool::from(value.ct_eq(stored)) {
                KeyCheck::MatchesLegacy
            } else {
                KeyCheck::Differs
            });
        }
        let value = self.check_value(version)?;
        Some(if bool::from(value.as_slice().ct_eq(stored)) {
            KeyCheck::Matches
        } else {
            KeyCheck::Differs
        })
    }

    /// HKDF-SHA256 of master key `version` (the IKM) with `salt` and `info`.
    pub(super) fn derive(
        &self,
        version: u32,
        salt: Option<&[u8]>,
        info: &[u8],
    ) -> Option<Zeroizing<[u8; 32]>> {
        let kek = self.keys.get(&version)?;
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        Hkdf::<Sha256>::new(salt, kek.as_ref())
            .expand(info, out.as_mut())
            .ok()?;
        Some(out)
    }

    pub(super) fn cipher(&self, version: u32) -> Option<&Aes256Gcm> {
        self.ciphers.get(&version)
    }
}

fn parse_entry(n: usize, entry: &str) -> Result<MasterKey, KeyringError> {
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
    Ok(MasterKey::new(version, key))
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
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active_version())
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
    fn fingerprints_are_keyed_per_version_and_tagged() {
        let ring = Keyring::new(
            vec![MasterKey::new(1, [1; 32]), MasterKey::new(2, [2; 32])],
            None,
        )
        .unwrap();
        let a = ring.fingerprint(1, b"request").unwrap();
        assert_eq!((a.len(), a[0]), (33, DERIVATION_V2));
        assert_eq!(a, ring.fingerprint(1, b"request").unwrap());
        assert_ne!(a, ring.fingerprint(2, b"request").unwrap());
        assert_ne!(a, ring.fingerprint(1, b"other").unwrap());
        assert!(ring.fingerprint(3, b"request").is_none());
        assert_eq!(ring.fingerprint_matches(1, &a, b"request"), Some(true));
        assert_eq!(ring.fingerprint_matches(1, &a, b"other"), Some(false));
        assert_eq!(ring.fingerprint_matches(2, &a, b"request"), Some(false));
    }

    #[test]
    fn fingerprints_stored_by_older_versions_still_match() {
        let ring = Keyring::new(vec![MasterKey::new(1, [1; 32])], None).unwrap();
        let key = hmac(&[1; 32], legacy::FINGERPRINT_LABEL);
        let stored = hmac(&key, b"request");
        assert_eq!(ring.fingerprint_matches(1, &stored, b"request"), Some(true));
        assert_eq!(ring.fingerprint_matches(1, &stored, b"other"), Some(false));
    }

    #[test]
    fn key_check_values_tell_keys_apart_and_are_not_the_key() {
        let ring = |byte| Keyring::new(vec![MasterKey::new(1, [byte; 32])], None).unwrap();
        let a = ring(1).check_value(1).unwrap();
        assert_eq!(a, ring(1).check_value(1).unwrap());
        assert_ne!(a, ring(2).check_value(1).unwrap());
        assert_ne!(&a[1..], &[1; 32]);
        assert_ne!(Some(&a), ring(1).fingerprint(1, KEY_CHECK_MESSAGE).as_ref());
        assert_eq!(ring(1).check(1, &a), Some(KeyCheck::Matches));
        assert_eq!(ring(2).check(1, &a), Some(KeyCheck::Differs));
        assert_eq!(ring(1).check(2, &a), None);
    }

    #[test]
    fn key_check_values_stored_by_older_versions_are_recognised() {
        let ring = |byte| Keyring::new(vec![MasterKey::new(1, [byte; 32])], None).unwrap();
        let key = hmac(&[1; 32], legacy::KEY_CHECK_KEY_LABEL);
        let stored = hmac(&key, legacy::KEY_CHECK_MESSAGE);
        assert_eq!(ring(1).check(1, &stored), Some(KeyCheck::MatchesLegacy));
        assert_eq!(ring(2).check(1, &stored), Some(KeyCheck::Differs));
    }

    #[test]
    fn the_active_version_can_move_only_to_a_held_key() {
        let ring = Keyring::new(
            vec![MasterKey::new(1, [1; 32]), MasterKey::new(2, [2; 32])],
            Some(1),
        )
        .unwrap();
        assert_eq!(ring.active_version(), 1);
        ring.set_active(2).unwrap();
        assert_eq!(ring.active_version(), 2);
        assert_eq!(ring.set_active(3), Err(KeyringError::ActiveMissing(3)));
        assert_eq!(ring.active_version(), 2);
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
