//! The edge's error type: what went wrong talking to the core, to Telegram or at start.

use teloxide::RequestError;

/// Errors of the Telegram edge.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// A call to the core failed (the status says why: unavailable, refused, ...).
    #[error("core call {call} failed: {status}")]
    Core {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    /// The core's event stream ended or broke; the edge subscribes again.
    #[error("the core's event stream ended")]
    StreamEnded,
    /// The Bot API refused a request or could not be reached.
    #[error("Telegram request failed: {0}")]
    Telegram(#[from] RequestError),
    /// A file could not be read from Telegram while it was passed on to the core (the core
    /// kept nothing of it).
    #[error("cannot download the file from Telegram: {0}")]
    Download(String),
    /// The Bot API does not know the token: nothing will work until it is fixed.
    #[error("Telegram refuses the bot token (telegram.token): {0}")]
    InvalidToken(RequestError),
    /// The configuration cannot run (e.g. webhook mode with nowhere to serve the webhook).
    #[error("invalid Telegram configuration: {0}")]
    Config(String),
    /// The webhook listener could not be bound or failed.
    #[error("webhook listener on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The process is shutting down.
    #[error("shutting down")]
    Shutdown,
}

impl TelegramError {
    /// Wraps a failed core call, naming it.
    pub(crate) fn core(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| TelegramError::Core {
            call,
            status: Box::new(status),
        }
    }

    /// The reason the core gave for refusing a call (`socketgram_proto::reason`).
    pub fn core_reason(&self) -> Option<String> {
        match self {
            TelegramError::Core { status, .. } => socketgram_proto::reason::of(status),
            _ => None,
        }
    }

    /// The message the core gave with its refusal (e.g. "no admin \"bob\""), for people.
    pub fn core_message(&self) -> Option<&str> {
        match self {
            TelegramError::Core { status, .. } => Some(status.message()),
            _ => None,
        }
    }

    /// A value of the refusal's metadata (e.g. `type` of FILE_TYPE_NOT_ALLOWED).
    pub fn core_metadata(&self, key: &str) -> Option<String> {
        match self {
            TelegramError::Core { status, .. } => socketgram_proto::reason::metadata(status, key),
            _ => None,
        }
    }

    /// Whether a core call failed for a reason that passes (the core or its storage away, a
    /// broken stream): trying again later may work.
    pub fn is_transient_core(&self) -> bool {
        use tonic::Code;
        match self {
            TelegramError::Core { status, .. } => matches!(
                status.code(),
                Code::Unavailable
                    | Code::Unknown
                    | Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
            ),
            TelegramError::StreamEnded => true,
            _ => false,
        }
    }
}

/// Why the staff chat (`[telegram] staff_chat_id`) cannot be run; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StaffSetup {
    /// The bot is not in the chat (or was removed).
    #[error(
        "the bot is not a member of the staff chat {chat_id} (telegram.staff_chat_id): add it to \
         the group as an administrator with the right \"Manage topics\""
    )]
    NotMember { chat_id: i64 },
    /// A member without administrator rights.
    #[error(
        "the bot is not an administrator of the staff chat {chat_id}: make it an administrator \
         with the right \"Manage topics\" (can_manage_topics)"
    )]
    NotAdmin { chat_id: i64 },
    /// An administrator without the right to make topics.
    #[error(
        "the bot may not manage topics in the staff chat {chat_id}: give it the administrator \
         right \"Manage topics\" (can_manage_topics)"
    )]
    NoManageTopics { chat_id: i64 },
    /// Not a supergroup with topics.
    #[error(
        "the staff chat {chat_id} is not a forum: turn on \"Topics\" in the group's settings \
         (a supergroup with topics)"
    )]
    NotForum { chat_id: i64 },
    /// Telegram refused the check itself.
    #[error("cannot check the staff chat {chat_id}: {error}")]
    Telegram {
        chat_id: i64,
        error: teloxide::RequestError,
    },
    /// The process is shutting down.
    #[error("shutting down")]
    Shutdown,
}
