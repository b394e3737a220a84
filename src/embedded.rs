//! The embedded default: with no database configured, SQLite in `data_dir`; with no
//! master key either, a generated development key file there.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::crypto::MasterKey;

/// What [`apply`] did that the operator must hear about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EmbeddedDefaults {
    /// The database URL chosen, when none was configured.
    pub database_url: Option<String>,
    /// The development key file in use, when no master key was configured.
    pub dev_key_file: Option<PathBuf>,
    /// True when that key file was created just now.
    pub dev_key_created: bool,
}

/// Fills in the embedded defaults, creating `data_dir` and the dev key as needed.
pub fn apply(config: &mut Config) -> std::io::Result<EmbeddedDefaults> {
    let mut done = EmbeddedDefaults::default();
    if config.database_url.is_some() {
        return Ok(done);
    }
    create_private_dir(&config.data_dir)?;
    let url = format!(
        "sqlite://{}",
        config.data_dir.join("credvault.db").display()
    );
    config.database_url = Some(url.clone());
    done.database_url = Some(url);
    if config.master_keys.is_none() && config.master_key_file.is_none() {
        let path = config.data_dir.join("dev-master.key");
        done.dev_key_created = create_dev_key(&path)?;
        config.master_key_file = Some(path.clone());
        done.dev_key_file = Some(path);
    }
    Ok(done)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes a new key (mode 0600) unless the file exists; returns whether it wrote.
fn create_dev_key(path: &Path) -> std::io::Result<bool> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    let line = MasterKey::generate(1).to_line();
    writeln!(
        file,
        "# credvault DEVELOPMENT master key. Do not use in production."
    )?;
    writeln!(file, "{}", line.as_str())?;
    file.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_dev_key_once_and_it_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let first = apply(&mut config).unwrap();
        assert!(first.dev_key_created);
        let key_file = first.dev_key_file.clone().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(config.keyring().unwrap().active_version(), 1);
        let before = std::fs::read(&key_file).unwrap();
        let mut again = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        assert!(!apply(&mut again).unwrap().dev_key_created);
        assert_eq!(
            std::fs::read(&key_file).unwrap(),
            before,
            "an existing key is never replaced"
        );
    }

    #[test]
    fn configured_database_gets_no_dev_key() {
        let mut config = Config {
            database_url: Some("postgres://x".into()),
            ..Config::default()
        };
        assert_eq!(apply(&mut config).unwrap(), EmbeddedDefaults::default());
        assert!(config.master_key_file.is_none());
    }
}
