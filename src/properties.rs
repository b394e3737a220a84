//! Property tests: arbitrary input to the envelope decoder, the parsers and the
//! validators never panics, and a sealed blob opens only untouched and in place.
//! (proptest stands in for cargo-fuzz so these run in CI on stable Rust.)
use proptest::prelude::*;

use crate::crypto::{AadContext, CryptoError, HEADER_LEN, Keyring, MasterKey};
use crate::service::validate;

fn ring() -> Keyring {
    Keyring::new(
        vec![MasterKey::new(1, [7; 32]), MasterKey::new(2, [9; 32])],
        None,
    )
    .unwrap()
}

const CTX: AadContext<'static> = AadContext {
    tenant_id: "ten_p",
    user_id: "user",
    credential_id: "cred_p",
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Sealed blobs, then arbitrary edits: bytes overwritten (the header kept valid
    /// half the time, so AES-GCM itself is reached), truncation, extension. The
    /// decoder never panics, and only the untouched blob opens.
    #[test]
    fn mutated_sealed_blobs_never_open_and_never_panic(
        plaintext in proptest::collection::vec(any::<u8>(), 0..200),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        keep_header in any::<bool>(),
        resize in prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some)],
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let ring = ring();
        let blob = ring.seal(&CTX, &plaintext);
        let mut mutated = blob.clone();
        for (at, byte) in &edits {
            let i = at.index(mutated.len());
            mutated[i] = *byte;
        }
        if keep_header {
            mutated[..HEADER_LEN].copy_from_slice(&blob[..HEADER_LEN]);
        }
        match resize {
            Some(cut) => mutated.truncate(cut.index(blob.len())),
            None => mutated.extend_from_slice(&tail),
        }
        let result = ring.open(&CTX, &mutated);
        let _ = crate::crypto::key_version_of(&mutated);
        if mutated == blob {
            let opened = result.unwrap();
            prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
        } else {
            prop_assert!(result.is_err());
            // Same length, valid header: the tag check itself is what refuses it.
            if keep_header && mutated.len() == blob.len() {
                prop_assert!(matches!(result, Err(CryptoError::Authentication)));
            }
        }
    }

    #[test]
    fn any_change_to_a_sealed_blob_is_detected(
        plaintext in proptest::collection::vec(any::<u8>(), 0..200),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let ring = ring();
        let blob = ring.seal(&CTX, &plaintext);
        let opened = ring.open(&CTX, &blob).unwrap();
        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
        let mut changed = blob.clone();
        changed[position.index(blob.len())] ^= flip;
        prop_assert!(ring.open(&CTX, &changed).is_err());
        prop_assert!(ring.open(&CTX, &blob[..cut.index(blob.len())]).is_err());
    }

    #[test]
    fn a_blob_opens_only_where_it_was_sealed(tenant in ".{0,40}", user in ".{0,40}", id in ".{0,40}") {
        let ring = ring();
        let blob = ring.seal(&CTX, b"secret");
        let elsewhere = AadContext { tenant_id: &tenant, user_id: &user, credential_id: &id };
        let same = tenant == CTX.tenant_id && user == CTX.user_id && id == CTX.credential_id;
        prop_assert_eq!(ring.open(&elsewhere, &blob).is_ok(), same);
    }

    #[test]
    fn validators_and_parsers_never_panic(text in "\\PC{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300), n in any::<i64>(), nanos in any::<i32>()) {
        let _ = validate::text("f", &text, 255);
        let _ = validate::slug("f", &text);
        let _ = validate::email("f", &text);
        let _ = validate::credential_id(&text);
        let _ = validate::scopes("f", std::slice::from_ref(&text));
        let labels = std::iter::once((text.clone(), text.clone())).collect();
        let _ = validate::labels("f", &labels);
        let _ = Keyring::parse(&text, None);
        let _ = crate::grpc::convert::millis("f", Some(prost_types::Timestamp { seconds: n, nanos }));
        let _ = crate::oauth::redirect::allowed(&text, std::slice::from_ref(&text));
        let _ = serde_json::from_slice::<crate::model::SecretPayload>(&bytes);
        let _ = crate::webhooks::signing::verify(&text, &text, n, &bytes, &text);
        let _ = crate::config::Config::load(None, [("CREDVAULT_MAX_CONNECTIONS".to_owned(), text.clone()), ("CREDVAULT_WEBHOOK_RETRY_SCHEDULE_SECS".to_owned(), text)]);
    }
}
