//! The tonic adapters of `socketgram.v1`: requests in, [`Core`](crate::Core) calls, replies
//! and streams out. This is the only place where a gRPC status code is chosen.

mod auth;
mod chat;
mod convert;
mod edge;
mod telegram;

pub use auth::BearerAuth;
pub use chat::ChatApi;
pub use telegram::TelegramApi;

use tonic::{Code, Status};

use crate::error::CoreError;

/// Maps a core error to its gRPC status, once.
pub fn status(e: CoreError) -> Status {
    let code = code(&e);
    Status::new(code, e.to_string())
}

pub(crate) fn code(e: &CoreError) -> Code {
    match e {
        CoreError::InvalidArgument(_) => Code::InvalidArgument,
        CoreError::NotFound(_) => Code::NotFound,
        CoreError::OutOfRange(_) => Code::OutOfRange,
        CoreError::Refused(_) => Code::FailedPrecondition,
        CoreError::Unavailable(_) => Code::Unavailable,
        // gRPC's code for "the operation may have completed" (a retry needs its idempotency key).
        CoreError::OutcomeUnknown(_) => Code::DeadlineExceeded,
        CoreError::Internal(_) => Code::Internal,
    }
}
