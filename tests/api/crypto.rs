//! Envelope encryption as stored: tampering, moving blobs between rows, key rotation.
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::support::{KEY_V1, KEY_V2};
use credvault::crypto::{AadContext, Keyring};
use credvault::proto::v1 as pb;
use credvault::service::tenant_keys::CACHE_MS;

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
        assert_eq!(blob[0], 3, "format version: under the tenant's key");
        assert_eq!(&blob[1..5], &0u32.to_be_bytes(), "no master key version");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x80;
            app.set_blob(&id, &bad).await;
            let (code, message) = code_of(c.reveal_credential(reveal(&id)).await);
            assert_eq!(code, Code::DataLoss, "byte {i}: {message}");
            assert!(!message.contains("flip-me"));
        }
        // Truncated and empty blobs fail the same way.
        for bad in [&blob[..blob.len() - 1], &blob[..10], &[][..]] {
            app.set_blob(&id, bad).await;
            assert_eq!(code_of(c.reveal_credential(reveal(&id)).await).0, Code::DataLoss);
        }
        app.set_blob(&id, &blob).await;
        assert!(c.reveal_credential(reveal(&id)).await.is_ok());

        // The same for the tenant's key, read again once its time in memory is over.
        let key = app.tenant_key_blob(&t.id).await.unwrap();
        assert_eq!((key[0], &key[1..5]), (2, &1u32.to_be_bytes()[..]));
        for i in 0..key.len() {
            let mut bad = key.clone();
            bad[i] ^= 0x80;
            app.set_tenant_key_blob(&t.id, &bad).await;
            app.clock.advance_ms(CACHE_MS + 1);
            let (code, message) = code_of(c.reveal_credential(reveal(&id)).await);
            // Bytes 1..5 are the master key version: flipping one names a key the
            // ring lacks.
            let expected = if (1..5).contains(&i) { Code::Unavailable } else { Code::DataLoss };
            assert_eq!(code, expected, "tenant key byte {i}: {message}");
            assert!(message.contains(&format!("the key of tenant {}", t.id)), "{message}");
        }
        app.set_tenant_key_blob(&t.id, &key).await;
        app.clock.advance_ms(CACHE_MS + 1);
        assert!(c.reveal_credential(reveal(&id)).await.is_ok());
    }

    async fn a_new_active_key_keeps_old_rows_readable(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let old = c.create_credential(create("u", api_key("sealed-under-v1"))).await.unwrap().into_inner().id;
        let legacy = c.create_credential(create("u", api_key("v1-only"))).await.unwrap().into_inner().id;
        assert_eq!(app.blob(&old).await.unwrap()[..5], [3, 0, 0, 0, 0]);
        assert_eq!(app.tenant_key_blob(&t.id).await.unwrap()[..5], [2, 0, 0, 0, 1]);
        // As a version before tenant keys sealed it: directly under master key 1.
        let ring = Keyring::parse(&app.keys, None).unwrap();
        let aad = AadContext { tenant_id: &t.id, user_id: "u", credential_id: &legacy };
        app.set_blob(&legacy, &ring.seal(&aad, br#"{"api_key":{"key":"v1-only"}}"#)).await;

        app.restart_with_keys(&format!("{KEY_V1},{KEY_V2}")).await;
        app.admin(&app.admin_token).await.activate_key(pb::ActivateKeyRequest { version: 2 }).await.unwrap();
        let mut c = app.client(&t.token).await;
        let new = c.create_credential(create("u", api_key("sealed-after-v2"))).await.unwrap().into_inner().id;
        assert_eq!(app.blob(&new).await.unwrap()[..5], [3, 0, 0, 0, 0], "under the tenant's key");
        // A tenant made now has its key sealed under v2; acme's stays under v1 until rewrap.
        let other = app.tenant("other").await;
        let theirs = app.client(&other.token).await
            .create_credential(create("u", api_key("theirs"))).await.unwrap().into_inner().id;
        assert_eq!(app.tenant_key_blob(&other.id).await.unwrap()[..5], [2, 0, 0, 0, 2]);
        assert_eq!(app.tenant_key_blob(&t.id).await.unwrap()[..5], [2, 0, 0, 0, 1]);
        for (id, key) in [(&old, "sealed-under-v1"), (&legacy, "v1-only"), (&new, "sealed-after-v2")] {
            let r = c.reveal_credential(reveal(id)).await.unwrap().into_inner();
            assert_eq!(r.secret, Some(api_key(key)), "old and new rows open");
        }

        // Drop v1 (without rewrapping first): what is sealed under it, directly or
        // through the tenant key, gives a clear UNAVAILABLE naming the version.
        app.restart_with_keys(KEY_V2).await;
        let mut c = app.client(&t.token).await;
        for id in [&old, &legacy, &new] {
            let (code, message) = code_of(c.reveal_credential(reveal(id)).await);
            assert_eq!(code, Code::Unavailable);
            assert!(message.contains("master key version 1"), "{message}");
        }
        let r = app.client(&other.token).await.reveal_credential(reveal(&theirs)).await.unwrap();
        assert_eq!(r.into_inner().secret, Some(api_key("theirs")));
        // The server is still healthy after the failure.
        assert!(c.get_credential(get(&old)).await.is_ok());
    }
}
