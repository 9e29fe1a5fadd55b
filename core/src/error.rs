//! The core's error: what a caller did wrong or what went wrong underneath, mapped to a gRPC
//! status once, in `grpc`.

use crate::store::StoreError;

/// Errors of the core's operations.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The request is malformed (empty or oversized text, missing author, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The conversation, admin or link does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A cursor beyond what exists (a resume id in the future).
    #[error("{0}")]
    OutOfRange(String),
    /// The database refused the write because of the data (a constraint).
    #[error("{0}")]
    Refused(String),
    /// The database is unreachable; nothing was stored; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The database went away while a write was being committed and has not answered since:
    /// whether it was stored is not known. A retry with the same client message id is safe.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// A bug or an unexpected database state.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => CoreError::Unavailable(format!(
                "{e}; nothing was stored, retry when the database is back"
            )),
            StoreError::Constraint(_) => CoreError::Refused(e.to_string()),
            StoreError::CommitOutcomeUnknown(_) => CoreError::OutcomeUnknown(e.to_string()),
            _ => CoreError::Internal(e.to_string()),
        }
    }
}

/// Result of the core's operations.
pub type CoreResult<T> = Result<T, CoreError>;
