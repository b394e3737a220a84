//! The restore drill on SQLite: `credvault backup` (the real binary) copies the
//! database while creates are in flight; the copy, restored into an empty data
//! directory, reveals every credential acknowledged before the backup began, and its
//! audit log verifies.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use credvault::proto::v1 as pb;
use tokio::process::Command;

use crate::fixtures::{api_key, create, reveal};
use crate::support::{Backend, spawn_app};

/// `credvault backup --to FILE` on the database at `url`, through the real binary.
async fn backup(url: &str, to: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_credvault"))
        .args(["backup", "--to", to.to_str().unwrap()])
        .env_clear()
        .env("CREDVAULT_DATABASE_URL", url)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_writing_then_restore_reveals_everything_acknowledged() {
    let mut app = spawn_app(Backend::Sqlite).await.unwrap();
    let t = app.tenant("acme").await;
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (app.client(&t.token).await, acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut c = client;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let secret = format!("sk_drill_{i}");
                let created = c
                    .create_credential(create(&format!("u{}", i % 7), api_key(&secret)))
                    .await
                    .unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push((created.into_inner().id, secret));
                i += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    app.audit.chain().await.unwrap();
    app.audit.checkpoint().await.unwrap();
    let before = acked.lock().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let out = backup(&app.db.url(), &copy).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The writer kept going during the backup; a second backup to the same file is refused.
    let during = acked.lock().unwrap().len();
    let again = backup(&app.db.url(), &copy).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(during >= before.len());

    app.restore_sqlite_from(&copy).await;
    let mut c = app.client(&t.token).await;
    for (id, secret) in &before {
        let revealed = c.reveal_credential(reveal(id)).await.unwrap().into_inner();
        let Some(pb::secret::Kind::ApiKey(key)) = revealed.secret.unwrap().kind else {
            panic!("an api key")
        };
        assert_eq!(&key.key, secret);
    }
    app.audit.chain().await.unwrap();
    app.audit.checkpoint().await.unwrap();
    let mut a = app.audit_client(&app.admin_token).await;
    let chains = a
        .verify_audit_log(pb::VerifyAuditLogRequest {
            tenant_id: String::new(),
            all: true,
        })
        .await
        .unwrap()
        .into_inner()
        .chains;
    assert!(chains.iter().all(|c| c.intact), "{chains:?}");
    let acme = chains.iter().find(|c| c.tenant_id == t.id).unwrap();
    assert!(acme.records as usize >= before.len() + 2, "{acme:?}");
}
