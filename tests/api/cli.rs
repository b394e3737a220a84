//! The offline operator commands, through the real binary: bootstrap once, recover,
//! refuse a wrong key, say each cause of an error once; `serve` on a configured
//! database does not bootstrap itself.
use std::process::{Command, Output};

use secrecy::{ExposeSecret, SecretString};

use crate::support::{KEY_V1, TestApp};

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

/// Runs a client command against `app` with `token`; it must succeed and print JSON.
fn client_json(app: &TestApp, token: &SecretString, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_credvault"))
        .args(args)
        .env_clear()
        .env("CREDVAULT_SERVER", format!("http://{}", app.addr))
        .env("CREDVAULT_TOKEN", token.expose_secret())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `credvault connect link|get|list|revoke` against a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_links_from_the_command_line() {
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite)
        .await
        .unwrap();
    let t = app.tenant("acme").await;
    let api = crate::connect_kit::KeyApi::start().await;
    crate::connect_kit::key_provider(&app, &t, "billing", "Billing", &api).await;
    let run = |args: &[&str]| client_json(&app, &t.token, args);
    let minted = run(&[
        "connect",
        "link",
        "--user",
        "u1",
        "--provider",
        "billing",
        "--name",
        "me-1",
    ]);
    let url = minted["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://{}/connect/", app.http_addr)),
        "{url}"
    );
    let id = minted["id"].as_str().unwrap().to_owned();
    assert_eq!(run(&["connect", "get", &id])["status"], "pending");
    assert_eq!(
        run(&["connect", "list", "--status", "pending"])[0]["id"],
        id.as_str()
    );
    let revoked = run(&["connect", "revoke", &id]);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(crate::support::browse(url).await.0, 410);
}

/// `credvault user …` and `credvault auth connector …`: a connector configured
/// from a file authenticates a user registered from the shell; `get` hides header
/// values unless asked, and its output is a file `update` takes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_connectors_from_the_command_line() {
    use crate::auth_kit::{FakeAuth, login};
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite)
        .await
        .unwrap();
    let t = app.tenant("acme").await;
    let auth = FakeAuth::start().await;
    let run = |args: &[&str]| client_json(&app, &t.token, args);

    let user = run(&[
        "user",
        "register",
        "--user",
        "u1",
        "--email",
        "Ann@Example.com",
    ]);
    assert_eq!(user["email"], "Ann@Example.com");
    assert_eq!(
        run(&["user", "get", "--email", "ann@example.com"])["user_id"],
        "u1"
    );
    run(&["user", "register", "--user", "u2"]);
    assert_eq!(run(&["user", "list"]).as_array().unwrap().len(), 2);
    let updated = run(&["user", "update", "--user", "u2", "--external-id", "emp-2"]);
    assert_eq!(updated["external_id"], "emp-2");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("connector.json");
    let spec = serde_json::json!({
        "name": "corp-login",
        "authentication": {
            "url": auth.url("/login"),
            "method": "POST",
            "format": "JSON",
            "headers": {"X-Api-Key": "cli-canary-key"},
            "body": "{\"email\":\"{{USEREMAIL}}\",\"password\":\"{{USERPASSWORD}}\"}",
            "timeout_ms": 2000
        },
        "page": {"title": "Sign in to Acme"}
    });
    std::fs::write(&file, spec.to_string()).unwrap();
    let path = file.to_str().unwrap();
    let created = run(&["auth", "connector", "create", "--file", path]);
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ac_"), "{created}");
    assert_eq!(
        created["authentication"]["headers"]["X-Api-Key"],
        "[hidden]"
    );
    assert_eq!(created["health"]["circuit_open"], false);
    let shown = run(&["auth", "connector", "get", &id, "--show-header-values"]);
    assert_eq!(
        shown["authentication"]["headers"]["X-Api-Key"],
        "cli-canary-key"
    );
    assert_eq!(run(&["auth", "connector", "list"])[0]["id"], id.as_str());

    let outcome = app
        .external_auth(&t.token)
        .await
        .authenticate(login(&id, "ann@example.com", "pw-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(outcome.authenticated, "{outcome:?}");
    assert_eq!(auth.last().header("x-api-key"), "cli-canary-key");

    // `get` output (less the read-only fields) goes back in through `update`.
    let mut edited = shown.clone();
    for field in ["id", "version", "health", "created_at", "updated_at"] {
        edited.as_object_mut().unwrap().remove(field);
    }
    edited["page"]["title"] = "Sign in to Acme Corp".into();
    std::fs::write(&file, edited.to_string()).unwrap();
    let version = shown["version"].to_string();
    let after = run(&[
        "auth",
        "connector",
        "update",
        &id,
        "--file",
        path,
        "--expected-version",
        &version,
    ]);
    assert_eq!(after["page"]["title"], "Sign in to Acme Corp");
    let stale = Command::new(env!("CARGO_BIN_EXE_credvault"))
        .args([
            "auth",
            "connector",
            "update",
            &id,
            "--file",
            path,
            "--expected-version",
            &version,
        ])
        .env_clear()
        .env("CREDVAULT_SERVER", format!("http://{}", app.addr))
        .env("CREDVAULT_TOKEN", t.token.expose_secret())
        .output()
        .unwrap();
    assert!(!stale.status.success());
    assert!(
        text(&stale.stderr).contains("Aborted"),
        "{}",
        text(&stale.stderr)
    );

    run(&["auth", "connector", "delete", &id]);
    assert_eq!(run(&["auth", "connector", "list"]), serde_json::json!([]));
    let deleted = run(&["user", "delete", "--user", "u1"]);
    assert_eq!(deleted["deleted_credentials"], serde_json::json!([]));
}

/// `credvault audit list|export|verify` against a running server: the records a
/// tenant's calls left, as JSON and as JSON lines, and a verification that fails
/// (exit 1, naming the record) once a record is edited in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_from_the_command_line() {
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite)
        .await
        .unwrap();
    let t = app.tenant("acme").await;
    app.token(&t, &["credentials:read"]).await;
    app.audit.chain().await.unwrap();
    app.audit.checkpoint().await.unwrap();
    let admin = &app.admin_token;
    let listed = client_json(&app, admin, &["audit", "list", "--tenant", &t.id, "--all"]);
    let actions: Vec<&str> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["tenant.create", "token.create", "token.create"]);
    let export = Command::new(env!("CARGO_BIN_EXE_credvault"))
        .args([
            "audit",
            "export",
            "--tenant",
            &t.id,
            "--action",
            "token.create",
        ])
        .env_clear()
        .env("CREDVAULT_SERVER", format!("http://{}", app.addr))
        .env("CREDVAULT_TOKEN", admin.expose_secret())
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = text(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["seq"], 3);
    let verified = client_json(&app, admin, &["audit", "verify", "--all"]);
    assert!(
        verified["chains"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["intact"] == true)
    );

    app.execute(
        "UPDATE audit_log SET actor = 'someone' WHERE tenant_id = $1 AND seq = 2",
        &[&t.id],
    )
    .await;
    let broken = Command::new(env!("CARGO_BIN_EXE_credvault"))
        .args(["audit", "verify", "--tenant", &t.id])
        .env_clear()
        .env("CREDVAULT_SERVER", format!("http://{}", app.addr))
        .env("CREDVAULT_TOKEN", admin.expose_secret())
        .output()
        .unwrap();
    assert!(!broken.status.success());
    assert!(
        text(&broken.stderr).contains("record 2"),
        "{}",
        text(&broken.stderr)
    );
}

/// `credvault proxy`, `credvault provider set-api` and `credvault token create
/// --provider --label` against a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_calls_and_constrained_tokens_from_the_command_line() {
    use credvault::proto::v1 as pb;
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite)
        .await
        .unwrap();
    let t = app.tenant("acme").await;
    let fake = crate::fake_provider::FakeProvider::start().await;
    fake.with(|i| i.api_keys.insert("k-cli".into()));
    let api = crate::proxy::api(&fake);
    crate::proxy::key_provider(&app, &t, "keyco", pb::AuthMode::ApiKey, api.clone()).await;
    let mut req = crate::fixtures::create("u1", crate::fixtures::api_key("k-cli"));
    req.provider = "keyco".into();
    req.labels = [("team".to_owned(), "billing".to_owned())].into();
    let id = app
        .client(&t.token)
        .await
        .create_credential(req)
        .await
        .unwrap()
        .into_inner()
        .id;

    let run = |args: &[&str]| client_json(&app, &t.token, args);
    let provider = run(&[
        "provider",
        "set-api",
        "keyco",
        "--base-url",
        &api.base_url,
        "--path-prefix",
        "/v1/",
    ]);
    assert_eq!(provider["api"]["path_prefixes"][0], "/v1/");
    let minted = client_json(
        &app,
        &app.admin_token,
        &[
            "token",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "credentials:proxy",
            "--provider",
            "keyco",
            "--label",
            "team=billing",
        ],
    );
    assert_eq!(minted["constraints"]["providers"][0], "keyco");
    assert_eq!(minted["constraints"]["labels"]["team"], "billing");
    let listed = client_json(
        &app,
        &app.admin_token,
        &["token", "list", "--tenant", "acme"],
    );
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["constraints"]["providers"][0] == "keyco")
    );
    let token = secrecy::SecretString::from(minted["secret"].as_str().unwrap().to_owned());
    let answer = client_json(
        &app,
        &token,
        &["proxy", &id, "GET", "/v1/customers", "--query", "limit=3"],
    );
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["body"]["path"], "/api/v1/customers");
    assert_eq!(answer["body"]["query"], "limit=3");
    assert!(!answer.to_string().contains("k-cli"));
}
