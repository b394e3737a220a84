//! `request_id`: the same request returns the same credential, also concurrently; a
//! different request under a used id is refused; ids are kept for the window.
use std::time::Duration;

use credvault::proto::v1 as pb;
use credvault::service::retention::Retention;
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;

fn with_request_id(mut req: pb::CreateCredentialRequest, id: &str) -> pb::CreateCredentialRequest {
    req.request_id = id.into();
    req
}

both_backends! {
    async fn a_retried_create_returns_the_same_credential(app) {
        let t = app.tenant("acme").await;
        let mut c = app.client(&t.token).await;
        let req = with_request_id(create("u", api_key("idem-key")), "req-1");
        let first = c.create_credential(req.clone()).await.unwrap().into_inner();
        let again = c.create_credential(req.clone()).await.unwrap().into_inner();
        assert_eq!(first, again, "same id, same response");
        assert_eq!(app.rows("credentials").await, 1);

        // Same id, different payload (here only the secret differs): refused, nothing written.
        let other = with_request_id(create("u", api_key("another-key")), "req-1");
        let (code, message) = code_of(c.create_credential(other).await);
        assert_eq!(code, Code::InvalidArgument);
        assert!(message.starts_with("request_id:"), "{message}");
        assert!(!message.contains("another-key"));
        assert_eq!(app.rows("credentials").await, 1);

        // Another tenant's identical request_id is its own.
        let t2 = app.tenant("globex").await;
        let mut c2 = app.client(&t2.token).await;
        let theirs = c2.create_credential(req.clone()).await.unwrap().into_inner();
        assert_ne!(theirs.id, first.id);

        // Kept for the whole window (24 h by default) …
        app.clock.advance_ms(23 * 3_600_000);
        assert_eq!(c.create_credential(req.clone()).await.unwrap().into_inner().id, first.id);
        // … and forgotten after it.
        app.clock.advance_ms(2 * 3_600_000);
        let later = c.create_credential(req.clone()).await.unwrap().into_inner();
        assert_ne!(later.id, first.id);
        let pruned = Retention::new(&app.vault, Duration::from_secs(3600)).pass().await.unwrap();
        assert_eq!(pruned.unwrap().request_ids, 1, "only globex's old id was left to prune");

        // A retry after the credential was deleted says so instead of creating another.
        let gone = with_request_id(create("u", api_key("gone")), "req-2");
        let created = c.create_credential(gone.clone()).await.unwrap().into_inner();
        c.delete_credential(delete(&created.id)).await.unwrap();
        let (code, message) = code_of(c.create_credential(gone).await);
        assert_eq!(code, Code::FailedPrecondition);
        assert!(message.contains("deleted"), "{message}");
    }

    async fn concurrent_creates_with_one_request_id_make_one_credential(app) {
        let t = app.tenant("acme").await;
        let c = app.client(&t.token).await;
        let req = with_request_id(create("u", api_key("concurrent-key")), "req-concurrent");
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let mut c = c.clone();
                let req = req.clone();
                tokio::spawn(async move { c.create_credential(req).await.map(|r| r.into_inner()) })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap().expect("every concurrent retry succeeds"));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "all got the same response");
        assert_eq!(app.rows("credentials").await, 1);
        assert_eq!(app.rows("idempotency_keys").await, 1);
    }
}
