//! Domain errors, and the one table that maps them to gRPC status codes.
//!
//! Messages are written for the caller and never contain secrets: variants carry
//! field names, ids and reasons, never request values that could be secret.
use tonic::{Code, Status};

use crate::crypto::CryptoError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid; `field` names it as the API spells it.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A compare-and-set lost: the caller should re-read and retry.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller's token is over its rate limit; another token comes in `retry_after`.
    #[error("rate limit exceeded for this token; retry in {} ms", retry_after.as_millis())]
    RateLimited { retry_after: std::time::Duration },
    /// Storage or key material cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
    /// A stored ciphertext failed authentication.
    #[error("{0}")]
    DataLoss(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// The gRPC code for each error: the single place this mapping lives.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ResourceExhausted(_) | Self::RateLimited { .. } => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DataLoss(_) => Code::DataLoss,
        }
    }

    /// Decryption failures, phrased for the credential they concern.
    pub fn from_crypto(err: CryptoError, credential_id: &str) -> Self {
        match err {
            CryptoError::UnknownKeyVersion(v) => Self::Unavailable(format!(
                "credential {credential_id} is sealed under master key version {v}, which is not in \
                 the keyring: add that key to the configuration to read it"
            )),
            CryptoError::Authentication
            | CryptoError::Malformed(_)
            | CryptoError::NeedsTenantKey
            | CryptoError::TenantKeyDestroyed => Self::DataLoss(format!(
                "credential {credential_id} could not be decrypted: {err}"
            )),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        // The details go to the operator's log; the caller learns only that storage failed.
        tracing::error!(error = %err, "storage error");
        Self::Unavailable("storage is unavailable; retry later".into())
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            // google.rpc.RetryInfo in the details tells clients when to come back.
            Error::RateLimited { retry_after } => {
                use tonic_types::{ErrorDetails, StatusExt};
                Status::with_error_details(
                    err.code(),
                    err.to_string(),
                    ErrorDetails::with_retry_info(Some(retry_after)),
                )
            }
            _ => Status::new(err.code(), err.to_string()),
        }
    }
}
