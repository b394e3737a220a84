//! The sealed-secret format, byte for byte (mirrored in `docs/encryption.md`):
//!
//! ```text
//! offset  len  field
//!      0    1  format version (1)
//!      1    4  master key version, big-endian u32
//!      5   12  nonce for the wrapped data key
//!     17   48  wrapped data key: AES-256-GCM(KEK, 32-byte DEK) ‖ 16-byte tag
//!     65   12  nonce for the payload
//!     77   n+16 payload: AES-256-GCM(DEK, plaintext) ‖ 16-byte tag
//! ```
//!
//! Both encryptions use AAD = bytes 0..5 ‖ purpose (0x01 data key, 0x02 payload) ‖
//! for tenant id, user id and credential id in turn: u16 big-endian length ‖ UTF-8 bytes.
use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use rand::{RngCore, rngs::OsRng};
use zeroize::Zeroizing;

use super::{CryptoError, Keyring};

pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 5;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const DEK_LEN: usize = 32;
const WRAPPED_DEK_LEN: usize = DEK_LEN + TAG_LEN;
const PAYLOAD_NONCE_AT: usize = HEADER_LEN + NONCE_LEN + WRAPPED_DEK_LEN;
const PAYLOAD_AT: usize = PAYLOAD_NONCE_AT + NONCE_LEN;
/// The shortest possible blob: an empty payload.
pub const MIN_BLOB_LEN: usize = PAYLOAD_AT + TAG_LEN;

const PURPOSE_DATA_KEY: u8 = 0x01;
const PURPOSE_PAYLOAD: u8 = 0x02;

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

/// The master key version a blob was sealed under, read from its header.
pub fn key_version_of(blob: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = blob.get(1..HEADER_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// The random inputs of one sealing; fixed only in known-answer tests.
pub(crate) struct SealRandomness {
    pub dek: Zeroizing<[u8; DEK_LEN]>,
    pub dek_nonce: [u8; NONCE_LEN],
    pub payload_nonce: [u8; NONCE_LEN],
}

impl SealRandomness {
    fn from_os() -> Self {
        let mut r = Self {
            dek: Zeroizing::new([0; DEK_LEN]),
            dek_nonce: [0; NONCE_LEN],
            payload_nonce: [0; NONCE_LEN],
        };
        OsRng.fill_bytes(r.dek.as_mut());
        OsRng.fill_bytes(&mut r.dek_nonce);
        OsRng.fill_bytes(&mut r.payload_nonce);
        r
    }
}

impl Keyring {
    /// Seals `plaintext` for the row `ctx` under the active master key.
    pub fn seal(&self, ctx: &AadContext<'_>, plaintext: &[u8]) -> Vec<u8> {
        self.seal_with(ctx, plaintext, SealRandomness::from_os())
    }

    pub(crate) fn seal_with(
        &self,
        ctx: &AadContext<'_>,
        plaintext: &[u8],
        r: SealRandomness,
    ) -> Vec<u8> {
        let (version, kek) = self.active_cipher();
        self.count_seal(version);
        let mut blob = Vec::with_capacity(MIN_BLOB_LEN + plaintext.len());
        blob.push(FORMAT_VERSION);
        blob.extend_from_slice(&version.to_be_bytes());

        let wrapped = encrypt(
            kek,
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

    /// Opens a blob sealed for the row `ctx`. Fails, returning no plaintext, if any
    /// byte was changed or the blob belongs to another row.
    pub fn open(
        &self,
        ctx: &AadContext<'_>,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if blob.len() < MIN_BLOB_LEN {
            return Err(CryptoError::Malformed("too short"));
        }
        if blob[0] != FORMAT_VERSION {
            return Err(CryptoError::Malformed("unknown format version"));
        }
        let version = key_version_of(blob).ok_or(CryptoError::Malformed("too short"))?;
        let kek = self
            .cipher(version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        let header = &blob[..HEADER_LEN];

        let dek_nonce = &blob[HEADER_LEN..HEADER_LEN + NONCE_LEN];
        let wrapped = &blob[HEADER_LEN + NONCE_LEN..PAYLOAD_NONCE_AT];
        let dek = decrypt(kek, dek_nonce, wrapped, &ctx.aad(header, PURPOSE_DATA_KEY))?;
        let dek = Aes256Gcm::new_from_slice(&dek).map_err(|_| CryptoError::Authentication)?;

        let payload_nonce = &blob[PAYLOAD_NONCE_AT..PAYLOAD_AT];
        decrypt(
            &dek,
            payload_nonce,
            &blob[PAYLOAD_AT..],
            &ctx.aad(header, PURPOSE_PAYLOAD),
        )
    }
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
    fn garbage_is_malformed_not_a_panic() {
        let ring = ring(&[1]);
        assert_eq!(
            ring.open(&CTX, b"").unwrap_err(),
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

/// The worked example of `docs/encryption.md`, checked against the document itself.
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
        std::array::from_fn(|i| start + i as u8)
    }

    pub(crate) fn example() -> (Keyring, Vec<u8>) {
        let ring = Keyring::new(vec![MasterKey::new(1, seq(0x00))], None).unwrap();
        let randomness = SealRandomness {
            dek: Zeroizing::new(seq(0x20)),
            dek_nonce: seq(0x40),
            payload_nonce: seq(0x50),
        };
        let blob = ring.seal_with(&CTX, PLAINTEXT, randomness);
        (ring, blob)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hex after `label: ` on its own line of `docs/encryption.md`.
    fn documented(label: &str) -> &'static str {
        let doc = include_str!("../../docs/encryption.md");
        doc.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("docs/encryption.md has no `{label}` line"))
            .trim()
    }

    #[test]
    fn sealing_the_documented_inputs_gives_the_documented_blob() {
        let (ring, blob) = example();
        assert_eq!(hex(&blob), documented("blob: "));
        assert_eq!(
            hex(&CTX.aad(&blob[..HEADER_LEN], PURPOSE_DATA_KEY)),
            documented("aad-dek: ")
        );
        assert_eq!(blob.len(), 126);
        assert_eq!(ring.open(&CTX, &blob).unwrap().as_slice(), PLAINTEXT);
    }

    /// Follows the document's steps with the AES-GCM primitive alone.
    #[test]
    fn the_documented_steps_decrypt_it_without_the_keyring() {
        let blob: Vec<u8> = (0..documented("blob: ").len() / 2)
            .map(|i| u8::from_str_radix(&documented("blob: ")[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let kek = Aes256Gcm::new(&seq::<32>(0x00).into());
        let header = &blob[..5];
        let dek = kek
            .decrypt(
                Nonce::from_slice(&blob[5..17]),
                Payload {
                    msg: &blob[17..65],
                    aad: &CTX.aad(header, 1),
                },
            )
            .unwrap();
        let dek = Aes256Gcm::new_from_slice(&dek).unwrap();
        let plain = dek
            .decrypt(
                Nonce::from_slice(&blob[65..77]),
                Payload {
                    msg: &blob[77..],
                    aad: &CTX.aad(header, 2),
                },
            )
            .unwrap();
        assert_eq!(plain, PLAINTEXT);
    }
}
