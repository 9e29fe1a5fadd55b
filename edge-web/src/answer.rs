//! How a request is answered: [`Refusal`], the one type a refused request ends with (its wire
//! code is chosen here and nowhere else), and [`Reply::answer`], the one path every answer
//! takes. A client that asked for an acknowledgement gets every answer through it (`{data}` /
//! `{error}`); one that did not (the legacy pages never ask) gets only refusals, as a
//! `chat error` event. Either way a request is answered once.

use std::sync::Arc;

use serde_json::{Value, json};
use socketgram_admin_php_compat::events::{ErrorPayload, PayloadError, outgoing};
use socketioxide::{
    adapter::LocalAdapter,
    extract::{AckSender, SocketRef},
    handler::{FromMessageParts, Value as RawValue},
    socket::Socket,
};
use tonic::{Code, Status};
use tracing::info;

use crate::log::{REFUSALS, clip, log_id};

/// Why a request was refused, for people (the message) and for programs (the code).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The payload is not what the event takes.
    #[error("{0}")]
    Invalid(String),
    /// Not for this connection: another visitor's, or the other role's event.
    #[error("{0}")]
    Forbidden(String),
    #[error("too many events: slow down")]
    RateLimited,
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    #[error("{0}")]
    NotFound(String),
    /// Nothing was done; the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// It may or may not have been done (the database went away at the commit): sending the
    /// message again with the same client message id is safe, without one it may store twice.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The request is valid but cannot be done in this state.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Internal(String),
}

impl Refusal {
    /// The wire code of `chat error` and of `{error}` acknowledgements.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Forbidden(_) => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::UnknownEvent(_) => "unknown_event",
            Self::NotFound(_) => "not_found",
            Self::Unavailable(_) => "unavailable",
            Self::OutcomeUnknown(_) => "outcome_unknown",
            Self::Refused(_) => "refused",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<PayloadError> for Refusal {
    fn from(e: PayloadError) -> Self {
        Self::Invalid(e.0)
    }
}

/// The core's answer, as the client is told it.
impl From<Status> for Refusal {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => Self::Invalid(message),
            Code::NotFound => Self::NotFound(message),
            Code::Unavailable => Self::Unavailable(message),
            // The core's code for "may have completed".
            Code::DeadlineExceeded => Self::OutcomeUnknown(message),
            // A limit on how many of a thing may exist (the team's canned replies).
            Code::FailedPrecondition | Code::ResourceExhausted => Self::Refused(message),
            Code::Unauthenticated | Code::PermissionDenied => Self::Forbidden(message),
            _ => Self::Internal(message),
        }
    }
}

/// What a handler ends with: the acknowledgement's data, or why not.
pub type Answer = Result<Value, Refusal>;

/// The acknowledgement of one request, and whether the client asked for one.
pub struct Reply {
    ack: AckSender,
    asked: bool,
}

impl FromMessageParts<LocalAdapter> for Reply {
    type Error = std::convert::Infallible;
    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut RawValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        // socketioxide keeps the ack id to itself; it is read here, where it is handed over.
        Ok(Self {
            ack: AckSender::from_message_parts(s, v, ack_id)?,
            asked: ack_id.is_some(),
        })
    }
}

impl Reply {
    /// Answers the request `event` of socket `s`.
    pub fn answer(self, s: &SocketRef, event: &str, answer: Answer) {
        answer_with(s, Some(self), event, answer);
    }
}

/// [`Reply::answer`] for a request whose reply may already be used up (`None`): a refusal then
/// goes out as `chat error`, a success needs no answer.
pub fn answer_with(s: &SocketRef, reply: Option<Reply>, event: &str, answer: Answer) {
    let refusal = match answer {
        Ok(data) => {
            if let Some(reply) = reply.filter(|r| r.asked) {
                let _ = reply.ack.send(&json!({ "data": data }));
            }
            return;
        }
        Err(refusal) => refusal,
    };
    let event = clip(event);
    let (code, message) = (refusal.code(), refusal.to_string());
    crate::metrics::refused(code);
    REFUSALS.log(|suppressed| {
        info!(conn = %log_id(&s.id), %event, code, %message, suppressed, "request refused");
    });
    let payload = ErrorPayload {
        event,
        code,
        message,
    };
    match reply {
        Some(reply) if reply.asked => {
            let _ = reply.ack.send(&json!({ "error": &payload }));
        }
        _ => {
            if s.emit(outgoing::ERROR, &payload).is_ok() {
                crate::metrics::sent(outgoing::ERROR, 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_codes_become_wire_codes() {
        for (code, wire) in [
            (Code::InvalidArgument, "invalid"),
            (Code::NotFound, "not_found"),
            (Code::Unavailable, "unavailable"),
            // Told apart from "nothing was stored": a retry without a client id may duplicate.
            (Code::DeadlineExceeded, "outcome_unknown"),
            (Code::FailedPrecondition, "refused"),
            (Code::PermissionDenied, "forbidden"),
            (Code::Internal, "internal"),
        ] {
            let refusal = Refusal::from(Status::new(code, "why"));
            assert_eq!(
                (refusal.code(), refusal.to_string().as_str()),
                (wire, "why")
            );
        }
    }
}
