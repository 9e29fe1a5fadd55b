//! The core's error: what a caller did wrong or what went wrong underneath, with its data.
//! The gRPC boundary (`grpc`) maps it to a status once, and puts [`CoreError::reason`] in the
//! status details, so a client can tell one refusal from another without reading its text.

use std::sync::Arc;

use crate::{domain::ConversationId, store::StoreError};

/// Errors of the core's operations.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the message is empty")]
    EmptyText,
    #[error("the message contains a NUL character")]
    NulInText,
    /// More characters than `[core] max_message_chars`.
    #[error("the message has {chars} characters; the limit is {limit}")]
    TextTooLong { chars: usize, limit: usize },
    /// Within the limit, but over the column once its markup is escaped for storage.
    #[error(
        "the message takes {stored} characters once its markup is escaped for storage; the \
         limit is {limit}"
    )]
    StoredTextTooLong { stored: usize, limit: usize },
    /// Another malformed request (a missing field, an id out of range, ...).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("unknown admin {0:?}")]
    UnknownAdmin(String),
    #[error("unknown conversation {0}")]
    UnknownConversation(ConversationId),
    /// On an adopted "with users" legacy schema, a conversation needs its `users` row.
    #[error("no visitor {0}: the `users` table has no such id")]
    NoSuchVisitor(ConversationId),
    #[error("Telegram chat {0} is not linked")]
    NotLinked(i64),
    /// A Telegram user of the staff group paired with no admin.
    #[error(
        "Telegram user {0} is no admin yet: pair them with `socketgram admin link-telegram \
         <login> {0}`"
    )]
    StaffMemberNotPaired(i64),
    /// No forum topic for that conversation (or no conversation for that topic).
    #[error("{0}")]
    NoStaffTopic(String),
    /// A Telegram link token that is unknown, was used already or has expired.
    #[error(
        "this Telegram link is unknown, used or expired: open the chat on the website and \
         choose \"Continue in Telegram\" again"
    )]
    LinkTokenInvalid,
    /// A take found the conversation assigned already, to this admin.
    #[error("the conversation is assigned to {0:?} already")]
    AlreadyAssigned(String),
    /// A limit on how many of a thing may exist is reached (e.g. canned replies).
    #[error("{0}")]
    LimitReached(String),
    /// A cursor beyond what exists (a resume id in the future).
    #[error("{0}")]
    OutOfRange(String),
    /// The store failed: unreachable (nothing was stored), a constraint, or a bug.
    #[error("{}", describe(.0))]
    Store(#[source] Arc<StoreError>),
    /// The database went away while a write was being committed and has not answered since:
    /// whether it was stored is not known. A retry with the same client message id is safe.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// A sign-in with a login or password that is not right (which of the two is not said).
    #[error("wrong login or password")]
    WrongCredentials,
    /// Too many failed sign-ins for a login lately.
    #[error("too many failed sign-ins for this login; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// A session that is unknown or ended (signed out, here or everywhere).
    #[error("{0}")]
    SessionEnded(&'static str),
    /// A session that ran out.
    #[error("the session has expired; sign in again")]
    SessionExpired,
    /// The LDAP directory of `[core.staff_ldap]` cannot answer (down, or misconfigured).
    #[error("{0}")]
    Directory(String),
    /// A known admin whose rights do not include the chat (`lid` 0).
    #[error("{0}")]
    NoRights(String),
    /// A file over `[core.attachments] max_bytes`.
    #[error("the file is larger than {} ({limit} bytes); nothing was kept", socketgram_common::files::human_size(*.limit))]
    FileTooLarge { limit: u64 },
    /// A file whose sniffed type is not in `[core.attachments] types`.
    #[error("this type of file ({content_type}) is not accepted; nothing was kept")]
    FileTypeNotAllowed { content_type: String },
    /// An upload that ended before its bytes did.
    #[error("{0}")]
    UploadTruncated(String),
    /// More files in a message than `[core.attachments] max_per_message`.
    #[error("a message may carry {limit} files; this one has {count}")]
    TooManyAttachments { count: usize, limit: usize },
    /// A message names a file it cannot take (unknown, another conversation's, taken).
    #[error("{0}")]
    AttachmentUnavailable(String),
    /// No such file (or not one of the conversation asked about, or not attached yet).
    #[error("no file {0}")]
    UnknownAttachment(u64),
    /// The file storage cannot be written or read.
    #[error("the file storage failed: {0}; nothing was kept")]
    FileStorage(String),
    /// The core stops; nothing was stored.
    #[error("the core is shutting down; nothing was stored")]
    ShuttingDown,
    /// A bug or an unexpected state.
    #[error("{0}")]
    Internal(String),
}

fn describe(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable(_) => {
            format!("{e}; nothing was stored, retry when the database is back")
        }
        _ => e.to_string(),
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CommitOutcomeUnknown(_) => CoreError::OutcomeUnknown(e.to_string()),
            e => CoreError::Store(Arc::new(e)),
        }
    }
}

/// What kind of failure an error is, for whoever chooses a protocol's code for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Invalid,
    NotFound,
    OutOfRange,
    /// Valid, but there are as many of the thing as may be.
    Exhausted,
    /// Valid, but the data refuses it (a database constraint).
    Refused,
    /// Nothing was done; retry later.
    Unavailable,
    /// Who is calling is not established (a wrong password, an ended session).
    Unauthenticated,
    /// Who is calling is known and may not do this.
    PermissionDenied,
    /// It may or may not have been done.
    OutcomeUnknown,
    Internal,
}

impl CoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        match self {
            Self::EmptyText
            | Self::NulInText
            | Self::TextTooLong { .. }
            | Self::StoredTextTooLong { .. }
            | Self::InvalidArgument(_)
            | Self::FileTypeNotAllowed { .. }
            | Self::UploadTruncated(_)
            | Self::FileTooLarge { .. }
            | Self::TooManyAttachments { .. } => Kind::Invalid,
            Self::AttachmentUnavailable(_) => Kind::Refused,
            Self::UnknownAttachment(_) => Kind::NotFound,
            Self::FileStorage(_) => Kind::Unavailable,
            Self::UnknownAdmin(_)
            | Self::UnknownConversation(_)
            | Self::NoSuchVisitor(_)
            | Self::NotLinked(_)
            | Self::StaffMemberNotPaired(_)
            | Self::NoStaffTopic(_)
            | Self::LinkTokenInvalid => Kind::NotFound,
            Self::OutOfRange(_) => Kind::OutOfRange,
            Self::LimitReached(_) | Self::TooManyAttempts { .. } => Kind::Exhausted,
            Self::WrongCredentials | Self::SessionEnded(_) | Self::SessionExpired => {
                Kind::Unauthenticated
            }
            Self::NoRights(_) => Kind::PermissionDenied,
            Self::Directory(_) => Kind::Unavailable,
            Self::AlreadyAssigned(_) => Kind::Refused,
            Self::Store(e) => match **e {
                StoreError::Unavailable(_) => Kind::Unavailable,
                StoreError::Constraint(_) => Kind::Refused,
                StoreError::CommitOutcomeUnknown(_) => Kind::OutcomeUnknown,
                _ => Kind::Internal,
            },
            Self::OutcomeUnknown(_) => Kind::OutcomeUnknown,
            Self::ShuttingDown => Kind::Unavailable,
            Self::Internal(_) => Kind::Internal,
        }
    }

    /// A stable machine-readable name of this error (`socketgram_proto::reason`), for clients
    /// to branch on.
    pub fn reason(&self) -> &'static str {
        use socketgram_proto::reason as r;
        match self {
            Self::EmptyText => r::EMPTY_TEXT,
            Self::NulInText => r::NUL_IN_TEXT,
            Self::TextTooLong { .. } | Self::StoredTextTooLong { .. } => r::TEXT_TOO_LONG,
            Self::InvalidArgument(_) => r::INVALID_ARGUMENT,
            Self::UnknownAdmin(_) => r::UNKNOWN_ADMIN,
            Self::UnknownConversation(_) => r::UNKNOWN_CONVERSATION,
            Self::NoSuchVisitor(_) => r::NO_SUCH_VISITOR,
            Self::NotLinked(_) | Self::StaffMemberNotPaired(_) => r::NOT_LINKED,
            Self::NoStaffTopic(_) => r::NO_STAFF_TOPIC,
            Self::LinkTokenInvalid => r::LINK_TOKEN_INVALID,
            Self::OutOfRange(_) => r::OUT_OF_RANGE,
            Self::LimitReached(_) => r::LIMIT_REACHED,
            Self::AlreadyAssigned(_) => r::ALREADY_ASSIGNED,
            Self::Store(_) => match self.kind() {
                Kind::Unavailable => r::DATABASE_UNAVAILABLE,
                Kind::Refused => r::REFUSED_BY_DATABASE,
                _ => r::DATABASE_ERROR,
            },
            Self::OutcomeUnknown(_) => r::OUTCOME_UNKNOWN,
            Self::WrongCredentials => r::WRONG_CREDENTIALS,
            Self::TooManyAttempts { .. } => r::TOO_MANY_ATTEMPTS,
            Self::SessionEnded(_) => r::SESSION_ENDED,
            Self::SessionExpired => r::SESSION_EXPIRED,
            Self::NoRights(_) => r::NO_RIGHTS,
            Self::Directory(_) => r::DIRECTORY_UNAVAILABLE,
            Self::FileTooLarge { .. } => r::FILE_TOO_LARGE,
            Self::FileTypeNotAllowed { .. } => r::FILE_TYPE_NOT_ALLOWED,
            Self::UploadTruncated(_) => r::UPLOAD_TRUNCATED,
            Self::TooManyAttachments { .. } => r::TOO_MANY_ATTACHMENTS,
            Self::AttachmentUnavailable(_) => r::ATTACHMENT_UNAVAILABLE,
            Self::UnknownAttachment(_) => r::UNKNOWN_ATTACHMENT,
            Self::FileStorage(_) => r::FILE_STORAGE_UNAVAILABLE,
            Self::ShuttingDown => r::SHUTTING_DOWN,
            Self::Internal(_) => r::INTERNAL,
        }
    }
}

/// Result of the core's operations.
pub type CoreResult<T> = Result<T, CoreError>;
