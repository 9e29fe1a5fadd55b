//! The gRPC contract between the core, the edges and other backends (package
//! `socketgram.v1`), generated from `socketgram/v1/chat.proto`, and the messages core
//! replicas exchange over their bus (`socketgram.bus.v1`).

pub mod client;
mod context;

/// Types and services of `socketgram.v1`.
pub mod v1 {
    tonic::include_proto!("socketgram.v1");
}

/// What core replicas tell each other over NATS (package `socketgram.bus.v1`, from
/// `socketgram/bus/v1/bus.proto`): news of the database and the presence each replica holds.
/// Not a client API.
pub mod bus {
    tonic::include_proto!("socketgram.bus.v1");
}

/// The encoded descriptor set of every `.proto` here, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/socketgram_descriptor.bin"));

/// The `reason` of the `google.rpc.ErrorInfo` detail (domain [`reason::DOMAIN`]) that every
/// refused call carries, and of `EdgeSubscriptionError.reason`: what a client branches on,
/// rather than the message text.
pub mod reason {
    pub const DOMAIN: &str = "socketgram.v1";
    pub const EMPTY_TEXT: &str = "EMPTY_TEXT";
    pub const NUL_IN_TEXT: &str = "NUL_IN_TEXT";
    /// Over `[core] max_message_chars`, or over the column once escaped for storage; the
    /// detail's metadata says `chars` (or `stored`) and `limit`.
    pub const TEXT_TOO_LONG: &str = "TEXT_TOO_LONG";
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    pub const UNKNOWN_ADMIN: &str = "UNKNOWN_ADMIN";
    pub const UNKNOWN_CONVERSATION: &str = "UNKNOWN_CONVERSATION";
    pub const NO_SUCH_VISITOR: &str = "NO_SUCH_VISITOR";
    /// A Telegram chat linked to no visitor, or a staff member paired with no admin.
    pub const NOT_LINKED: &str = "NOT_LINKED";
    /// A conversation without a topic in the staff chat (or a topic of no conversation).
    pub const NO_STAFF_TOPIC: &str = "NO_STAFF_TOPIC";
    /// A Telegram link token (`RedeemLinkToken`) that is unknown, used already or expired:
    /// the visitor asks the widget for a new link.
    pub const LINK_TOKEN_INVALID: &str = "LINK_TOKEN_INVALID";
    pub const OUT_OF_RANGE: &str = "OUT_OF_RANGE";
    /// A limit on how many of a thing may exist (e.g. canned replies) is reached.
    pub const LIMIT_REACHED: &str = "LIMIT_REACHED";
    /// A take found the conversation assigned to someone already.
    pub const ALREADY_ASSIGNED: &str = "ALREADY_ASSIGNED";
    /// Nothing was stored; retry when the database is back.
    pub const DATABASE_UNAVAILABLE: &str = "DATABASE_UNAVAILABLE";
    pub const REFUSED_BY_DATABASE: &str = "REFUSED_BY_DATABASE";
    pub const DATABASE_ERROR: &str = "DATABASE_ERROR";
    /// It may or may not have been stored; a retry with the same client message id is safe.
    pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    /// A sign-in's login or password is wrong (which one is not said).
    pub const WRONG_CREDENTIALS: &str = "WRONG_CREDENTIALS";
    /// Too many failed sign-ins for the login lately; metadata `retry_after_secs`.
    pub const TOO_MANY_ATTEMPTS: &str = "TOO_MANY_ATTEMPTS";
    /// The session is unknown or was signed out: sign in again.
    pub const SESSION_ENDED: &str = "SESSION_ENDED";
    /// The session ran out: sign in again.
    pub const SESSION_EXPIRED: &str = "SESSION_EXPIRED";
    /// The admin's rights (`lid` 0) do not include the chat.
    pub const NO_RIGHTS: &str = "NO_RIGHTS";
    /// The LDAP directory staff sign in with cannot answer.
    pub const DIRECTORY_UNAVAILABLE: &str = "DIRECTORY_UNAVAILABLE";
    /// A file over `CoreInfo.max_attachment_bytes`; metadata `limit`.
    pub const FILE_TOO_LARGE: &str = "FILE_TOO_LARGE";
    /// A file whose sniffed type is not in `CoreInfo.attachment_types`; metadata `type`.
    pub const FILE_TYPE_NOT_ALLOWED: &str = "FILE_TYPE_NOT_ALLOWED";
    /// An upload that ended before all its bytes came.
    pub const UPLOAD_TRUNCATED: &str = "UPLOAD_TRUNCATED";
    /// More files in a message than `CoreInfo.max_attachments`.
    pub const TOO_MANY_ATTACHMENTS: &str = "TOO_MANY_ATTACHMENTS";
    /// An attachment id that is unknown, of another conversation, or attached already.
    pub const ATTACHMENT_UNAVAILABLE: &str = "ATTACHMENT_UNAVAILABLE";
    /// No such file, or not one of the conversation asked about.
    pub const UNKNOWN_ATTACHMENT: &str = "UNKNOWN_ATTACHMENT";
    /// The file storage cannot be written or read; nothing was stored.
    pub const FILE_STORAGE_UNAVAILABLE: &str = "FILE_STORAGE_UNAVAILABLE";
    pub const INTERNAL: &str = "INTERNAL";

    /// The core's `ErrorInfo` detail of a status, when it carries one.
    fn info(status: &tonic::Status) -> Option<tonic_types::ErrorInfo> {
        use tonic_types::StatusExt as _;
        status
            .get_error_details()
            .error_info()
            .filter(|info| info.domain == DOMAIN)
            .cloned()
    }

    /// A value of the status's `ErrorInfo` metadata (e.g. `retry_after_secs`), when it has one.
    pub fn metadata(status: &tonic::Status, key: &str) -> Option<String> {
        info(status).and_then(|info| info.metadata.get(key).cloned())
    }

    /// The reason of a status from the core, when it carries one.
    pub fn of(status: &tonic::Status) -> Option<String> {
        info(status).map(|info| info.reason)
    }
}
