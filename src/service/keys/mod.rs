//! The master keys over time: checking that the configured keys are the ones the
//! database was written with, the cluster-wide active version, and rewrap.
mod columns;
pub mod lifecycle;
pub mod rewrap;

use super::Vault;
use crate::crypto::KeyCheck;
use crate::error::{Error, Result};

impl Vault {
    /// Compares each configured key version's check value with the one stored for
    /// that version (storing it the first time a version is seen). A mismatch means a
    /// wrong key was configured under that version: starting would make every secret
    /// sealed under it look tampered with (DATA_LOSS), so the caller refuses to start.
    pub async fn verify_keyring(&self) -> Result<()> {
        let now = self.now();
        for version in self.keyring.versions() {
            let Some(value) = self.keyring.check_value(version) else {
                continue;
            };
            let stored = self.store.key_check(version, &value, now).await?;
            let check = self.keyring.check(version, &stored);
            if check == Some(KeyCheck::MatchesLegacy) {
                // Proven the same key by the old derivation: store the current one.
                self.store
                    .replace_key_check(version, &stored, &value)
                    .await?;
            } else if check != Some(KeyCheck::Matches) {
                return Err(Error::FailedPrecondition(format!(
                    "master key version {version} is not the key this database was written \
                     with (its key check value differs): check CREDVAULT_MASTER_KEYS or the \
                     key file for a wrong or mistyped key"
                )));
            }
        }
        Ok(())
    }
}
