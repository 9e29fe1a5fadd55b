//! The tonic adapters of `socketgram.v1`: requests in, [`Core`](crate::Core) calls, replies
//! and streams out. This is the only place where a gRPC status code is chosen.

mod auth;
mod chat;
mod convert;
mod edge;
mod files;
mod staff;
mod telegram;

pub use auth::BearerAuth;
pub use chat::ChatApi;
pub use staff::StaffApi;
pub use telegram::TelegramApi;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::error::{CoreError, Kind};

/// Maps a core error to its gRPC status, once: the code, the message for people, and an
/// `ErrorInfo` detail whose `reason` ([`CoreError::reason`]) programs branch on.
pub fn status(e: CoreError) -> Status {
    let details = ErrorDetails::with_error_info(
        e.reason(),
        socketgram_proto::reason::DOMAIN,
        error_metadata(&e),
    );
    Status::with_error_details(code(&e), e.to_string(), details)
}

/// The data of an error that a client may want without parsing the message.
fn error_metadata(e: &CoreError) -> std::collections::HashMap<String, String> {
    match e {
        CoreError::TextTooLong { chars, limit } => [("chars", chars), ("limit", limit)]
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .into(),
        CoreError::StoredTextTooLong { stored, limit } => [("stored", stored), ("limit", limit)]
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .into(),
        CoreError::FileTooLarge { limit } => [("limit".to_owned(), limit.to_string())].into(),
        CoreError::FileTypeNotAllowed { content_type } => {
            [("type".to_owned(), content_type.clone())].into()
        }
        CoreError::TooManyAttachments { count, limit } => [("count", count), ("limit", limit)]
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .into(),
        CoreError::TooManyAttempts { retry_after_secs } => {
            [("retry_after_secs".to_owned(), retry_after_secs.to_string())].into()
        }
        _ => Default::default(),
    }
}

pub(crate) fn code(e: &CoreError) -> Code {
    match e.kind() {
        Kind::Invalid => Code::InvalidArgument,
        Kind::NotFound => Code::NotFound,
        Kind::OutOfRange => Code::OutOfRange,
        Kind::Exhausted => Code::ResourceExhausted,
        Kind::Refused => Code::FailedPrecondition,
        Kind::Unavailable => Code::Unavailable,
        // gRPC's code for "the operation may have completed" (a retry needs its idempotency key).
        Kind::OutcomeUnknown => Code::DeadlineExceeded,
        Kind::Internal => Code::Internal,
        Kind::Unauthenticated => Code::Unauthenticated,
        Kind::PermissionDenied => Code::PermissionDenied,
    }
}
