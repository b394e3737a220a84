//! Checks that the configured master keys are the ones the database was written with.
use subtle::ConstantTimeEq;

use super::Vault;
use crate::error::{Error, Result};

impl Vault {
    /// Compares each configured key version's check value with the one stored for
    /// that version (storing it the first time a version is seen). A mismatch means a
    /// wrong key was configured under that version: starting would make every secret
    /// sealed under it look tampered with (DATA_LOSS), so the caller refuses to start.
    pub async fn verify_keyring(&self) -> Result<()> {
        let now = self.now();
        for (version, value) in self.keyring.check_values() {
            let stored = self.store.key_check(version, &value, now).await?;
            if !bool::from(stored.as_slice().ct_eq(&value)) {
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
