//! The sealed-secret formats, byte for byte (mirrored in `docs/encryption.md`).
//!
//! Format 2, written by every seal:
//!
//! ```text
//! offset  len  field
//!      0    1  format version (2)
//!      1    4  master key version, big-endian u32
//!      5   32  salt
//!     37   12  nonce for the wrapped data key
//!     49   48  wrapped data key: AES-256-GCM(WK, 32-byte DEK) ‖ 16-byte tag
//!     97   12  nonce for the payload
//!    109 n+16  payload: AES-256-GCM(DEK, plaintext) ‖ 16-byte tag
//! ```
//!
//! where the wrapping key WK = HKDF-SHA256(IKM = KEK, salt, info = "credvault/v2/wrap-key"),
//! a fresh key for every seal, so the master key itself encrypts nothing.
//!
//! Format 3, written for every tenant-owned value: the layout of format 2 with key
//! version 0, and WK = HKDF-SHA256(IKM = the tenant's key, salt, info =
//! "credvault/v3/tenant-wrap-key"). The tenant key is random and is itself sealed in
//! format 2 under the master key ([`TenantKey`]); destroying it shreds the tenant.
//!
//! Format 1 (read only; rewrapped by `credvault keys rewrap`) has no salt: the header
//! is 5 bytes and the data key is wrapped directly under the KEK.
//!
//! Both encryptions use AAD = header (bytes before the first nonce) ‖ purpose (0x01 data
//! key, 0x02 payload) ‖ for tenant id, user id and credential id in turn: u16 big-endian
//! length ‖ UTF-8 bytes.
use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use hkdf::Hkdf;
use rand::{RngCore, rngs::OsRng};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{CryptoError, Keyring};

/// The format every seal writes.
pub const FORMAT_VERSION: u8 = 2;
/// The format of blobs sealed before per-seal keys; still opened.
pub const LEGACY_FORMAT_VERSION: u8 = 1;
/// The format of values sealed under their tenant's key.
pub const TENANT_FORMAT_VERSION: u8 = 3;
const SALT_LEN: usize = 32;
/// The header of the format every seal writes: version, key version, salt.
pub const HEADER_LEN: usize = 5 + SALT_LEN;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const DEK_LEN: usize = 32;
const WRAPPED_DEK_LEN: usize = DEK_LEN + TAG_LEN;
/// The HKDF `info` of a seal's wrapping key.
const WRAP_KEY_INFO: &[u8] = b"credvault/v2/wrap-key";
/// The HKDF `info` of a format-3 seal's wrapping key.
const TENANT_WRAP_KEY_INFO: &[u8] = b"credvault/v3/tenant-wrap-key";
/// What a tenant key's own seal is bound to, in place of a credential id.
pub const TENANT_KEY_AAD_ID: &str = "tenant-key";

const PURPOSE_DATA_KEY: u8 = 0x01;
const PURPOSE_PAYLOAD: u8 = 0x02;

/// Where the fields of one format sit: everything after the header has the same shape.
#[derive(Clone, Copy)]
struct Layout {
    header: usize,
}

impl Layout {
    const V1: Layout = Layout { header: 5 };
    const V2: Layout = Layout { header: HEADER_LEN };

    fn of(format: u8) -> Option<Layout> {
        match format {
            LEGACY_FORMAT_VERSION => Some(Self::V1),
            FORMAT_VERSION | TENANT_FORMAT_VERSION => Some(Self::V2),
            _ => None,
        }
    }
    fn wrapped_at(self) -> usize {
        self.header + NONCE_LEN
    }
    fn payload_nonce_at(self) -> usize {
        self.wrapped_at() + WRAPPED_DEK_LEN
    }
    fn payload_at(self) -> usize {
        self.payload_nonce_at() + NONCE_LEN
    }
    /// The shortest blob of this format: an empty payload.
    fn min_len(self) -> usize {
        self.payload_at() + TAG_LEN
    }
}

/// The shortest possible blob of the current format: an empty payload.
pub const MIN_BLOB_LEN: usize = HEADER_LEN + NONCE_LEN + WRAPPED_DEK_LEN + NONCE_LEN + TAG_LEN;

/// Where a sealed secret lives. Bound into the AAD, so a blob copied to another row
/// (or another tenant, user or id) no longer opens.
#[derive(Debug, Clone, Copy)]
pub struct AadContext<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub credential_id: &'a str,
}

impl AadContext<'_> {
    fn aad(&self, header: &[u8], purpose: u8) -> Vec<u8> {
        let parts = [self.tenant_id, self.user_id, self.credential_id];
        let mut aad =
            Vec::with_capacity(HEADER_LEN + 1 + parts.iter().map(|p| 2 + p.len()).sum::<usize>());
        aad.extend_from_slice(header);
        aad.push(purpose);
        for part in parts {
            // Ids are validated to at most 255 characters, far below u16::MAX bytes.
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// The master key version a blob was sealed under, read from its header (the same
/// place in every format).
pub fn key_version_of(blob: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = blob.get(1..5)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// The format version of a blob (its first byte).
pub fn format_of(blob: &[u8]) -> Option<u8> {
    blob.first().copied()
}

/// The random inputs of one sealing; fixed only in known-answer tests.
pub(crate) struct SealRandomness {
    pub salt: [u8; SALT_LEN],
    pub dek: Zeroizing<[u8; DEK_LEN]>,
    pub dek_nonce: [u8; NONCE_LEN],
    pub payload_nonce: [u8; NONCE_LEN],
}

impl SealRandomness {
    fn from_os() -> Self {
        let mut r = Self {
            salt: [0; SALT_LEN],
            dek: Zeroizing::new([0; DEK_LEN]),
            dek_nonce: [0; NONCE_LEN],
            payload_nonce: [0; NONCE_LEN],
        };
        OsRng.fill_bytes(&mut r.salt);
        OsRng.fill_bytes(r.dek.as_mut());
        OsRng.fill_bytes(&mut r.dek_nonce);
        OsRng.fill_bytes(&mut r.payload_nonce);
        r
    }
}

impl Keyring {
    /// Seals `plaintext` for the row `ctx` under the active master key, in format 2.
    pub fn seal(&self, ctx: &AadContext<'_>, plaintext: &[u8]) -> Vec<u8> {
        self.seal_with(ctx, plaintext, SealRandomness::from_os())
    }

    pub(crate) fn seal_with(
        &self,
        ctx: &AadContext<'_>,
        plaintext: &[u8],
        r: SealRandomness,
    ) -> Vec<u8> {
        let version = self.active_version();
        let header = salted_header(FORMAT_VERSION, version, &r.salt, plaintext.len());
        // `active_version` is always in the keyring.
        let Some(wrap) = self.wrap_cipher(version, &r.salt) else {
            unreachable!("the active key version is in the keyring")
        };
        self.count_seal(version);
        finish_seal(header, &wrap, ctx, plaintext, &r)
    }

    /// Seals in the retired format 1 (data key wrapped directly under the KEK). Only
    /// for tests that need old blobs beside new ones; the vault never writes format 1.
    #[doc(hidden)]
    pub fn seal_legacy_format(&self, ctx: &AadContext<'_>, plaintext: &[u8]) -> Vec<u8> {
        self.seal_legacy_with(ctx, plaintext, SealRandomness::from_os())
    }

    pub(crate) fn seal_legacy_with(
        &self,
        ctx: &AadContext<'_>,
        plaintext: &[u8],
        r: SealRandomness,
    ) -> Vec<u8> {
        let version = self.active_version();
        let mut header = vec![LEGACY_FORMAT_VERSION];
        header.extend_from_slice(&version.to_be_bytes());
        let Some(kek) = self.cipher(version) else {
            unreachable!("the active key version is in the keyring")
        };
        finish_seal(header, kek, ctx, plaintext, &r)
    }

    /// Opens a blob sealed for the row `ctx` under a master key (format 1 or 2). Fails,
    /// returning no plaintext, if any byte was changed or the blob belongs to another
    /// row; a format-3 blob needs its tenant's key ([`TenantKey::open`]).
    pub fn open(
        &self,
        ctx: &AadContext<'_>,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (format, layout) = parse(blob)?;
        let version = key_version_of(blob).ok_or(CryptoError::Malformed("too short"))?;
        let derived;
        let wrap = match format {
            FORMAT_VERSION => {
                derived = self.wrap_cipher(version, &blob[5..HEADER_LEN]);
                derived.as_ref()
            }
            LEGACY_FORMAT_VERSION => self.cipher(version),
            _ => return Err(CryptoError::NeedsTenantKey),
        }
        .ok_or(CryptoError::UnknownKeyVersion(version))?;
        open_parts(wrap, layout, ctx, blob)
    }

    /// The AES-256-GCM cipher under a format-2 seal's own wrapping key.
    fn wrap_cipher(&self, version: u32, salt: &[u8]) -> Option<Aes256Gcm> {
        let key = self.derive(version, Some(salt), WRAP_KEY_INFO)?;
        Some(Aes256Gcm::new(key.as_ref().into()))
    }

    /// Seals a tenant's key under the active master key (format 2), bound to the tenant.
    pub fn seal_tenant_key(&self, tenant_id: &str, key: &TenantKey) -> Vec<u8> {
        self.seal(&tenant_key_aad(tenant_id), key.key.as_ref())
    }

    /// Opens what [`Keyring::seal_tenant_key`] sealed for `tenant_id`.
    pub fn open_tenant_key(&self, tenant_id: &str, blob: &[u8]) -> Result<TenantKey, CryptoError> {
        let plain = self.open(&tenant_key_aad(tenant_id), blob)?;
        let key: [u8; DEK_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed("a tenant key is 32 bytes"))?;
        Ok(TenantKey {
            key: Zeroizing::new(key),
        })
    }
}

/// The AAD context of a tenant key's own seal: the tenant, no user, and the id
/// `tenant-key`.
pub fn tenant_key_aad(tenant_id: &str) -> AadContext<'_> {
    AadContext {
        tenant_id,
        user_id: "",
        credential_id: TENANT_KEY_AAD_ID,
    }
}

/// One tenant's random 256-bit key: the root of every format-3 value of the tenant.
/// Stored only sealed under a master key; zeroized on drop.
pub struct TenantKey {
    key: Zeroizing<[u8; DEK_LEN]>,
}

impl TenantKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; DEK_LEN]);
        OsRng.fill_bytes(key.as_mut());
        Self { key }
    }

    /// Seals `plaintext` for the row `ctx` (of this key's tenant) in format 3.
    pub fn seal(&self, ctx: &AadContext<'_>, plaintext: &[u8]) -> Vec<u8> {
        self.seal_with(ctx, plaintext, SealRandomness::from_os())
    }

    pub(crate) fn seal_with(
        &self,
        ctx: &AadContext<'_>,
        plaintext: &[u8],
        r: SealRandomness,
    ) -> Vec<u8> {
        let header = salted_header(TENANT_FORMAT_VERSION, 0, &r.salt, plaintext.len());
        let wrap = self.wrap_cipher(&r.salt);
        finish_seal(header, &wrap, ctx, plaintext, &r)
    }

    /// Opens a format-3 blob sealed for the row `ctx` under this key.
    pub fn open(
        &self,
        ctx: &AadContext<'_>,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (format, layout) = parse(blob)?;
        if format != TENANT_FORMAT_VERSION {
            return Err(CryptoError::Malformed("not sealed under a tenant key"));
        }
        open_parts(&self.wrap_cipher(&blob[5..HEADER_LEN]), layout, ctx, blob)
    }

    fn wrap_cipher(&self, salt: &[u8]) -> Aes256Gcm {
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        let _ = Hkdf::<Sha256>::new(Some(salt), self.key.as_ref())
            .expand(TENANT_WRAP_KEY_INFO, key.as_mut());
        Aes256Gcm::new(key.as_ref().into())
    }
}

impl std::fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantKey([redacted])")
    }
}

/// The 37-byte header of formats 2 and 3 (format, key version, salt), in a buffer with
/// room for the rest of a blob sealing `payload_len` bytes.
fn salted_header(format: u8, key_version: u32, salt: &[u8], payload_len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(MIN_BLOB_LEN + payload_len);
    header.push(format);
    header.extend_from_slice(&key_version.to_be_bytes());
    header.extend_from_slice(salt);
    header
}

/// A blob's format and layout, once its length is checked.
fn parse(blob: &[u8]) -> Result<(u8, Layout), CryptoError> {
    let format = format_of(blob).ok_or(CryptoError::Malformed("too short"))?;
    let layout = Layout::of(format).ok_or(CryptoError::Malformed("unknown format version"))?;
    if blob.len() < layout.min_len() {
        return Err(CryptoError::Malformed("too short"));
    }
    Ok((format, layout))
}

/// Unwraps the data key under `wrap` and opens the payload with it.
fn open_parts(
    wrap: &Aes256Gcm,
    layout: Layout,
    ctx: &AadContext<'_>,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let header = &blob[..layout.header];
    let dek_nonce = &blob[layout.header..layout.wrapped_at()];
    let wrapped = &blob[layout.wrapped_at()..layout.payload_nonce_at()];
    let dek = decrypt(wrap, dek_nonce, wrapped, &ctx.aad(header, PURPOSE_DATA_KEY))?;
    let dek = Aes256Gcm::new_from_slice(&dek).map_err(|_| CryptoError::Authentication)?;
    let payload_nonce = &blob[layout.payload_nonce_at()..layout.payload_at()];
    decrypt(
        &dek,
        payload_nonce,
        &blob[layout.payload_at()..],
        &ctx.aad(header, PURPOSE_PAYLOAD),
    )
}

/// Wraps the data key under `wrap`, seals the payload under the data key and lays out
/// `header ‖ nonce₁ ‖ wrapped DEK ‖ nonce₂ ‖ payload`.
fn finish_seal(
    mut blob: Vec<u8>,
    wrap: &Aes256Gcm,
    ctx: &AadContext<'_>,
    plaintext: &[u8],
    r: &SealRandomness,
) -> Vec<u8> {
    let wrapped = encrypt(
        wrap,
        &r.dek_nonce,
        r.dek.as_ref(),
        &ctx.aad(&blob, PURPOSE_DATA_KEY),
    );
    let dek = Aes256Gcm::new(r.dek.as_ref().into());
    let sealed = encrypt(
        &dek,
        &r.payload_nonce,
        plaintext,
        &ctx.aad(&blob, PURPOSE_PAYLOAD),
    );
    blob.extend_from_slice(&r.dek_nonce);
    blob.extend_from_slice(&wrapped);
    blob.extend_from_slice(&r.payload_nonce);
    blob.extend_from_slice(&sealed);
    blob
}

fn encrypt(cipher: &Aes256Gcm, nonce: &[u8; NONCE_LEN], msg: &[u8], aad: &[u8]) -> Vec<u8> {
    // AES-GCM encryption fails only for messages over ~64 GiB; secrets are capped at 64 KiB.
    cipher
        .encrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .unwrap_or_default()
}

fn decrypt(
    cipher: &Aes256Gcm,
    nonce: &[u8],
    msg: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    const CTX: AadContext<'static> = AadContext {
        tenant_id: "ten_a",
        user_id: "user-1",
        credential_id: "cred_1",
    };

    fn ring(versions: &[u32]) -> Keyring {
        let keys = versions
            .iter()
            .map(|&v| MasterKey::new(v, [v as u8; 32]))
            .collect();
        Keyring::new(keys, None).unwrap()
    }

    #[test]
    fn round_trips_and_uses_fresh_randomness() {
        let ring = ring(&[1]);
        let a = ring.seal(&CTX, b"hello");
        let b = ring.seal(&CTX, b"hello");
        assert_ne!(a, b);
        assert_eq!(a.len(), MIN_BLOB_LEN + 5);
        assert_eq!(ring.open(&CTX, &a).unwrap().as_slice(), b"hello");
        assert_eq!(key_version_of(&a), Some(1));
    }

    #[test]
    fn every_flipped_byte_fails() {
        let ring = ring(&[1]);
        let blob = ring.seal(&CTX, b"secret payload");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                ring.open(&CTX, &bad).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        assert!(ring.open(&CTX, &blob[..blob.len() - 1]).is_err());
    }

    #[test]
    fn another_row_cannot_open_it() {
        let ring = ring(&[1]);
        let blob = ring.seal(&CTX, b"secret");
        for other in [
            AadContext {
                tenant_id: "ten_b",
                ..CTX
            },
            AadContext {
                user_id: "user-2",
                ..CTX
            },
            AadContext {
                credential_id: "cred_2",
                ..CTX
            },
            // Length prefixes keep field boundaries unambiguous.
            AadContext {
                tenant_id: "ten_au",
                user_id: "ser-1",
                ..CTX
            },
        ] {
            assert_eq!(
                ring.open(&other, &blob).unwrap_err(),
                CryptoError::Authentication
            );
        }
    }

    #[test]
    fn old_versions_open_and_missing_ones_say_so() {
        let v1 = ring(&[1]);
        let blob = v1.seal(&CTX, b"old");
        let both = ring(&[1, 2]);
        assert_eq!(both.open(&CTX, &blob).unwrap().as_slice(), b"old");
        assert_eq!(key_version_of(&both.seal(&CTX, b"new")), Some(2));
        assert_eq!(
            ring(&[2]).open(&CTX, &blob).unwrap_err(),
            CryptoError::UnknownKeyVersion(1)
        );
    }

    #[test]
    fn format_1_and_format_2_blobs_open_side_by_side() {
        let ring = ring(&[1, 2]);
        let old = ring.seal_legacy_format(&CTX, b"old");
        let new = ring.seal(&CTX, b"new");
        assert_eq!((format_of(&old), format_of(&new)), (Some(1), Some(2)));
        assert_eq!(old.len() + SALT_LEN, new.len());
        assert_eq!(ring.open(&CTX, &old).unwrap().as_slice(), b"old");
        assert_eq!(ring.open(&CTX, &new).unwrap().as_slice(), b"new");
        // A format-2 blob relabelled as format 1 (or back) fails, never a panic.
        let mut relabelled = new.clone();
        relabelled[0] = 1;
        assert_eq!(
            ring.open(&CTX, &relabelled).unwrap_err(),
            CryptoError::Authentication
        );
        let mut relabelled = old.clone();
        relabelled[0] = 2;
        assert!(ring.open(&CTX, &relabelled).is_err());
    }

    #[test]
    fn each_seal_wraps_under_its_own_key() {
        let ring = ring(&[1]);
        let a = ring.seal(&CTX, b"x");
        let b = ring.seal(&CTX, b"x");
        assert_ne!(a[5..HEADER_LEN], b[5..HEADER_LEN], "salts repeat");
        let (wa, wb) = (
            ring.derive(1, Some(&a[5..HEADER_LEN]), WRAP_KEY_INFO)
                .unwrap(),
            ring.derive(1, Some(&b[5..HEADER_LEN]), WRAP_KEY_INFO)
                .unwrap(),
        );
        assert_ne!(*wa, *wb);
        assert_ne!(*wa, [1u8; 32]);
        // The salt is authenticated: another salt derives another key.
        let mut resalted = a.clone();
        resalted[10] ^= 1;
        assert_eq!(
            ring.open(&CTX, &resalted).unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn tenant_keys_seal_their_own_values_and_are_sealed_under_the_master_key() {
        let ring = ring(&[1]);
        let (a, b) = (TenantKey::generate(), TenantKey::generate());
        let blob = a.seal(&CTX, b"secret");
        assert_eq!(
            (format_of(&blob), key_version_of(&blob)),
            (Some(3), Some(0))
        );
        assert_eq!(a.open(&CTX, &blob).unwrap().as_slice(), b"secret");
        assert_eq!(
            b.open(&CTX, &blob).unwrap_err(),
            CryptoError::Authentication
        );
        assert_eq!(
            ring.open(&CTX, &blob).unwrap_err(),
            CryptoError::NeedsTenantKey
        );
        let moved = AadContext {
            credential_id: "cred_2",
            ..CTX
        };
        assert_eq!(
            a.open(&moved, &blob).unwrap_err(),
            CryptoError::Authentication
        );
        // A master-key blob is not a tenant-key blob.
        assert!(a.open(&CTX, &ring.seal(&CTX, b"x")).is_err());

        let sealed = ring.seal_tenant_key("ten_a", &a);
        assert_eq!(format_of(&sealed), Some(FORMAT_VERSION));
        let opened = ring.open_tenant_key("ten_a", &sealed).unwrap();
        assert_eq!(opened.open(&CTX, &blob).unwrap().as_slice(), b"secret");
        // Bound to its tenant: another tenant's row cannot take it.
        assert_eq!(
            ring.open_tenant_key("ten_b", &sealed).unwrap_err(),
            CryptoError::Authentication
        );
        assert_eq!(format!("{a:?}"), "TenantKey([redacted])");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let ring = ring(&[1]);
        assert_eq!(
            ring.open(&CTX, b"").unwrap_err(),
            CryptoError::Malformed("too short")
        );
        let v1 = ring.seal_legacy_format(&CTX, b"");
        assert_eq!(
            ring.open(&CTX, &v1[..v1.len() - 1]).unwrap_err(),
            CryptoError::Malformed("too short")
        );
        let mut blob = ring.seal(&CTX, b"x");
        blob[0] = 9;
        assert_eq!(
            ring.open(&CTX, &blob).unwrap_err(),
            CryptoError::Malformed("unknown format version")
        );
    }
}

/// The worked examples of `docs/encryption.md`, checked against the document itself.
#[cfg(test)]
mod worked_example {
    use super::*;
    use crate::crypto::MasterKey;

    pub(crate) const CTX: AadContext<'static> = AadContext {
        tenant_id: "ten_example",
        user_id: "user-42",
        credential_id: "cred_0190c2b7e5a87d3f9c1e2a4b6d8f0a12",
    };
    pub(crate) const PLAINTEXT: &[u8] = br#"{"api_key":{"key":"sk_test_123"}}"#;

    fn seq<const N: usize>(start: u8) -> [u8; N] {
        std::array::from_fn(|i| start.wrapping_add(i as u8))
    }

    fn ring() -> Keyring {
        Keyring::new(vec![MasterKey::new(1, seq(0x00))], None).unwrap()
    }

    fn randomness() -> SealRandomness {
        SealRandomness {
            salt: seq(0x60),
            dek: Zeroizing::new(seq(0x20)),
            dek_nonce: seq(0x40),
            payload_nonce: seq(0x50),
        }
    }

    use crate::ids::hex;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len() / 2)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// The hex after `label` at the start of its own line of `docs/encryption.md`.
    fn documented(label: &str) -> &'static str {
        let doc = include_str!("../../docs/encryption.md");
        doc.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("docs/encryption.md has no `{label}` line"))
            .trim()
    }

    #[test]
    fn sealing_the_documented_inputs_gives_the_documented_blobs() {
        let ring = ring();
        let v2 = ring.seal_with(&CTX, PLAINTEXT, randomness());
        assert_eq!(hex(&v2), documented("blob-v2: "));
        assert_eq!(v2.len(), 158);
        assert_eq!(
            hex(&CTX.aad(&v2[..HEADER_LEN], PURPOSE_DATA_KEY)),
            documented("aad-dek-v2: ")
        );
        let wrap_key = ring
            .derive(1, Some(&seq::<32>(0x60)), WRAP_KEY_INFO)
            .unwrap();
        assert_eq!(hex(wrap_key.as_ref()), documented("wrap-key: "));
        assert_eq!(ring.open(&CTX, &v2).unwrap().as_slice(), PLAINTEXT);

        let v1 = ring.seal_legacy_with(&CTX, PLAINTEXT, randomness());
        assert_eq!(hex(&v1), documented("blob-v1: "));
        assert_eq!(v1.len(), 126);
        assert_eq!(ring.open(&CTX, &v1).unwrap().as_slice(), PLAINTEXT);
    }

    /// The tenant key of the worked example: bytes `80 81 … 9f`.
    fn tenant_key() -> TenantKey {
        TenantKey {
            key: Zeroizing::new(seq(0x80)),
        }
    }

    #[test]
    fn sealing_under_the_documented_tenant_key_gives_the_documented_blob() {
        let v3 = tenant_key().seal_with(&CTX, PLAINTEXT, randomness());
        assert_eq!(hex(&v3), documented("blob-v3: "));
        assert_eq!(v3.len(), 158);
        assert_eq!(tenant_key().open(&CTX, &v3).unwrap().as_slice(), PLAINTEXT);
        let mut wrap_key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&seq::<32>(0x60)), &seq::<32>(0x80))
            .expand(TENANT_WRAP_KEY_INFO, &mut wrap_key)
            .unwrap();
        assert_eq!(hex(&wrap_key), documented("tenant-wrap-key: "));
        // The master key alone does not open it.
        assert_eq!(
            ring().open(&CTX, &v3).unwrap_err(),
            CryptoError::NeedsTenantKey
        );
        // The tenant key, sealed under master key 1 with the same random inputs.
        let sealed = ring().seal_with(
            &tenant_key_aad(CTX.tenant_id),
            &seq::<32>(0x80),
            randomness(),
        );
        assert_eq!(hex(&sealed), documented("sealed-tenant-key: "));
        let opened = ring().open_tenant_key(CTX.tenant_id, &sealed).unwrap();
        assert_eq!(opened.open(&CTX, &v3).unwrap().as_slice(), PLAINTEXT);
    }

    /// Follows the document's steps with HKDF and AES-GCM alone.
    #[test]
    fn the_documented_steps_decrypt_it_without_the_keyring() {
        let blob = unhex(documented("blob-v2: "));
        let salt = &blob[5..37];
        let mut wrap_key = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &seq::<32>(0x00))
            .expand(b"credvault/v2/wrap-key", &mut wrap_key)
            .unwrap();
        let header = &blob[..37];
        let dek = Aes256Gcm::new(&wrap_key.into())
            .decrypt(
                Nonce::from_slice(&blob[37..49]),
                Payload {
                    msg: &blob[49..97],
                    aad: &CTX.aad(header, 1),
                },
            )
            .unwrap();
        let plain = Aes256Gcm::new_from_slice(&dek)
            .unwrap()
            .decrypt(
                Nonce::from_slice(&blob[97..109]),
                Payload {
                    msg: &blob[109..],
                    aad: &CTX.aad(header, 2),
                },
            )
            .unwrap();
        assert_eq!(plain, PLAINTEXT);
    }
}
