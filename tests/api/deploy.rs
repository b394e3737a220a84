//! The deployment files in `deploy/` stay true to the binary: every `CREDVAULT_*`
//! variable they set is one the server or the CLI reads, and the Kubernetes
//! configuration loads (unknown keys are errors).
use std::collections::BTreeSet;

/// Variables the client commands read, beside the server's settings.
const CLIENT_VARS: [&str; 6] = [
    "CREDVAULT_SERVER",
    "CREDVAULT_TOKEN",
    "CREDVAULT_CONFIG",
    "CREDVAULT_CA_FILE",
    "CREDVAULT_CLIENT_CERT_FILE",
    "CREDVAULT_CLIENT_KEY_FILE",
];

const FILES: [&str; 4] = [
    "deploy/Dockerfile",
    "deploy/compose/docker-compose.yml",
    "deploy/kubernetes/credvault.yaml",
    "deploy/systemd/credvault.service",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_variable_the_deployment_files_set_is_read_by_credvault() {
    let known: BTreeSet<String> = credvault::config::env_names()
        .chain(CLIENT_VARS.iter().map(|v| (*v).to_owned()))
        .collect();
    let name = regex::Regex::new(r"CREDVAULT_[A-Z0-9_]+").unwrap();
    let mut seen = 0;
    for file in FILES {
        for found in name.find_iter(&read(file)) {
            seen += 1;
            assert!(
                known.contains(found.as_str()),
                "{file}: {} is not a setting",
                found.as_str()
            );
        }
    }
    assert!(seen > 10, "the files set credvault's variables");
}

#[test]
fn the_kubernetes_configuration_loads() {
    let manifest = read("deploy/kubernetes/credvault.yaml");
    let start = manifest
        .find("credvault.toml: |")
        .expect("the ConfigMap's file");
    let toml: String = manifest[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credvault.toml");
    std::fs::write(&path, &toml).unwrap();
    let config = credvault::Config::load(Some(&path), Vec::new()).expect(&toml);
    assert_eq!(config.listen.port(), 50051);
    assert!(config.tls_files().unwrap().is_some());
    assert!(config.metrics_listen.is_some());
}
