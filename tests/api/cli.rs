//! The offline operator commands, through the real binary: bootstrap once, recover,
//! refuse a wrong key, say each cause of an error once; `serve` on a configured
//! database does not bootstrap itself.
use std::process::{Command, Output};

use crate::support::KEY_V1;

fn credvault(db: &std::path::Path, keys: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_credvault"))
        .args(args)
        .env_clear()
        .env(
            "CREDVAULT_DATABASE_URL",
            format!("sqlite://{}", db.display()),
        )
        .env("CREDVAULT_MASTER_KEYS", keys)
        .env("CREDVAULT_LISTEN", "127.0.0.1:0")
        .env("CREDVAULT_HTTP_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bootstrap_once_recover_and_refuse_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vault.db");
    let first = credvault(&db, KEY_V1, &["admin", "bootstrap"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("export CREDVAULT_TOKEN=cvt_"));

    let again = credvault(&db, KEY_V1, &["admin", "bootstrap"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already bootstrapped"),
        "{}",
        text(&again.stderr)
    );

    let recovered = credvault(&db, KEY_V1, &["admin", "recover"]);
    assert!(recovered.status.success(), "{}", text(&recovered.stderr));
    assert!(text(&recovered.stdout).contains("export CREDVAULT_TOKEN=cvt_"));

    let wrong = "1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let refused = credvault(&db, wrong, &["admin", "recover"]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("key check"), "{stderr}");
    assert!(!stderr.contains("CREDVAULT_TOKEN="), "{stderr}");
}

#[test]
fn a_malformed_key_entry_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = credvault(
        &dir.path().join("v.db"),
        "1:not-base64",
        &["admin", "bootstrap"],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("master key entry 1").count(), 1, "{stderr}");
}

#[tokio::test]
async fn serve_on_a_configured_database_does_not_bootstrap_itself() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_credvault"))
        .arg("serve")
        .env_clear()
        .env(
            "CREDVAULT_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("v.db").display()),
        )
        .env("CREDVAULT_MASTER_KEYS", KEY_V1)
        .env("CREDVAULT_LISTEN", "127.0.0.1:0")
        .env("CREDVAULT_HTTP_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let serving = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            if line.contains("credvault serving gRPC") {
                return;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), serving)
        .await
        .expect("serve starts");
    child.kill().await.unwrap();
    let stdout = child.wait_with_output().await.unwrap().stdout;
    assert!(
        !text(&stdout).contains("CREDVAULT_TOKEN"),
        "no token minted on its own"
    );
    assert!(log.contains("credvault admin bootstrap"), "{log}");
    assert!(
        !log.contains("\u{1b}["),
        "no ANSI colours when logs are not a terminal"
    );
}

/// `credvault connect link|get|list|revoke` against a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_links_from_the_command_line() {
    use secrecy::ExposeSecret;
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite)
        .await
        .unwrap();
    let t = app.tenant("acme").await;
    let api = crate::connect_kit::KeyApi::start().await;
    crate::connect_kit::key_provider(&app, &t, "billing", "Billing", &api).await;
    let run = |args: Vec<String>| {
        let output = Command::new(env!("CARGO_BIN_EXE_credvault"))
            .args(&args)
            .env_clear()
            .env("CREDVAULT_SERVER", format!("http://{}", app.addr))
            .env("CREDVAULT_TOKEN", t.token.expose_secret())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let minted = run(args(&[
        "connect",
        "link",
        "--user",
        "u1",
        "--provider",
        "billing",
        "--name",
        "me-1",
    ]));
    let url = minted["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://{}/connect/", app.http_addr)),
        "{url}"
    );
    let id = minted["id"].as_str().unwrap().to_owned();
    assert_eq!(run(args(&["connect", "get", &id]))["status"], "pending");
    assert_eq!(
        run(args(&["connect", "list", "--status", "pending"]))[0]["id"],
        id.as_str()
    );
    let revoked = run(args(&["connect", "revoke", &id]));
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(crate::support::browse(url).await.0, 410);
}
