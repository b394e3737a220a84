//! Envelope encryption as stored: tampering, moving blobs between rows, key rotation.
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::support::{KEY_V1, KEY_V2};
use credvault::proto::v1 as pb;

both_backends! {
    async fn a_blob_copied_onto_another_row_does_not_decrypt(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let a = c.create_credential(create("alice", api_key("alice-secret-xyz"))).await.unwrap().into_inner().id;
        let b = c.create_credential(create("bob", api_key("bob-secret-xyz"))).await.unwrap().into_inner().id;
        // Same user, too: the credential id alone is bound.
        let a2 = c.create_credential(create("alice", api_key("alice-other"))).await.unwrap().into_inner().id;

        let blob_a = app.blob(&a).await.unwrap();
        for victim in [&b, &a2] {
            let original = app.blob(victim).await.unwrap();
            app.set_blob(victim, &blob_a).await;
            let (code, message) = code_of(c.reveal_credential(reveal(victim)).await);
            assert_eq!(code, Code::DataLoss);
            assert!(message.contains("failed authentication"), "{message}");
            assert!(!message.contains("alice-secret-xyz"));
            app.set_blob(victim, &original).await;
        }
        let ok = c.reveal_credential(reveal(&a)).await.unwrap().into_inner();
        assert_eq!(ok.secret, Some(api_key("alice-secret-xyz")));
        let ok = c.reveal_credential(reveal(&b)).await.unwrap().into_inner();
        assert_eq!(ok.secret, Some(api_key("bob-secret-xyz")));
    }

    async fn flipping_any_stored_byte_fails_decryption(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let id = c.create_credential(create("u", basic("user", "flip-me"))).await.unwrap().into_inner().id;
        let blob = app.blob(&id).await.unwrap();
        assert_eq!(blob[0], 2, "format version");
        assert_eq!(&blob[1..5], &1u32.to_be_bytes(), "key version");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x80;
            app.set_blob(&id, &bad).await;
            let (code, message) = code_of(c.reveal_credential(reveal(&id)).await);
            // Byte 1..5 is the key version: flipping it names a key the ring lacks.
            let expected = if (1..5).contains(&i) { Code::Unavailable } else { Code::DataLoss };
            assert_eq!(code, expected, "byte {i}: {message}");
            assert!(!message.contains("flip-me"));
        }
        // Truncated and empty blobs fail the same way.
        for bad in [&blob[..blob.len() - 1], &blob[..10], &[][..]] {
            app.set_blob(&id, bad).await;
            assert_eq!(code_of(c.reveal_credential(reveal(&id)).await).0, Code::DataLoss);
        }
        app.set_blob(&id, &blob).await;
        assert!(c.reveal_credential(reveal(&id)).await.is_ok());
    }

    async fn a_new_active_key_keeps_old_rows_readable(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let old = c.create_credential(create("u", api_key("sealed-under-v1"))).await.unwrap().into_inner().id;
        let untouched = c.create_credential(create("u", api_key("v1-only"))).await.unwrap().into_inner().id;
        assert_eq!(&app.blob(&old).await.unwrap()[1..5], &1u32.to_be_bytes());

        app.restart_with_keys(&format!("{KEY_V1},{KEY_V2}")).await;
        app.admin(&app.admin_token).await.activate_key(pb::ActivateKeyRequest { version: 2 }).await.unwrap();
        let mut c = app.client(&t.token).await;
        let new = c.create_credential(create("u", api_key("sealed-under-v2"))).await.unwrap().into_inner().id;
        assert_eq!(&app.blob(&new).await.unwrap()[1..5], &2u32.to_be_bytes(), "new rows use v2");
        let r = c.reveal_credential(reveal(&old)).await.unwrap().into_inner();
        assert_eq!(r.secret, Some(api_key("sealed-under-v1")), "old rows still open");
        // Updating the secret re-seals under the active key.
        let mut req = update(&old);
        req.secret = Some(api_key("resealed"));
        c.update_credential(req).await.unwrap();
        assert_eq!(&app.blob(&old).await.unwrap()[1..5], &2u32.to_be_bytes());

        // Drop v1 (without rewrapping first): rows sealed under it give a clear
        // UNAVAILABLE naming the version.
        app.restart_with_keys(KEY_V2).await;
        let mut c = app.client(&t.token).await;
        let (code, message) = code_of(c.reveal_credential(reveal(&untouched)).await);
        assert_eq!(code, Code::Unavailable);
        assert!(message.contains("master key version 1"), "{message}");
        assert!(c.reveal_credential(reveal(&new)).await.is_ok());
        // The server is still healthy after the failure.
        assert!(c.get_credential(get(&untouched)).await.is_ok());
    }
}
