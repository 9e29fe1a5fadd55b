//! The core's vocabulary: conversations, messages, admins and Telegram links, independent of
//! the wire (proto) and of the database (store).

use chrono::NaiveDateTime;

/// A conversation is one visitor's room; its id is the legacy visitor id `cid` (LEGACY.md §1).
pub type ConversationId = u64;

/// The legacy `messages.id`.
pub type MessageId = u64;

/// `adm_account.aid` written on a visitor's message: the legacy convention (LEGACY.md §5).
pub const VISITOR_ADMIN_ID: &str = "0";

/// Legacy `messages.direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Visitor to support (1).
    ToSupport,
    /// Support to visitor (2).
    ToVisitor,
}

impl Direction {
    /// The value stored in `messages.direction`.
    pub fn code(self) -> i32 {
        match self {
            Direction::ToSupport => 1,
            Direction::ToVisitor => 2,
        }
    }

    /// Reads `messages.direction`; anything but 2 is a visitor's message, as the legacy pages
    /// treat it.
    pub fn from_code(code: i64) -> Self {
        if code == 2 {
            Direction::ToVisitor
        } else {
            Direction::ToSupport
        }
    }
}

/// How a message reached the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The visitor, from the web.
    Visitor,
    /// A support admin.
    Admin,
    /// The visitor, from a linked Telegram chat.
    Telegram,
    /// Another backend answering as support.
    Backend,
}

impl Origin {
    /// The value stored in `sg_message_meta.origin`.
    pub fn code(self) -> i32 {
        match self {
            Origin::Visitor => 1,
            Origin::Admin => 2,
            Origin::Telegram => 3,
            Origin::Backend => 4,
        }
    }

    /// Reads `sg_message_meta.origin`; a message with no meta row (stored by the legacy server)
    /// gets the origin its direction implies.
    pub fn from_code(code: Option<i64>, direction: Direction) -> Self {
        match code {
            Some(1) => Origin::Visitor,
            Some(2) => Origin::Admin,
            Some(3) => Origin::Telegram,
            Some(4) => Origin::Backend,
            _ => match direction {
                Direction::ToSupport => Origin::Visitor,
                Direction::ToVisitor => Origin::Admin,
            },
        }
    }

    /// The direction a message of this origin travels.
    pub fn direction(self) -> Direction {
        match self {
            Origin::Visitor | Origin::Telegram => Direction::ToSupport,
            Origin::Admin | Origin::Backend => Direction::ToVisitor,
        }
    }
}

/// A message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub direction: Direction,
    pub origin: Origin,
    /// `messages.aid`: the admin's login, or [`VISITOR_ADMIN_ID`].
    pub admin_id: String,
    /// Plain text (the store takes care of the column's HTML encoding).
    pub text: String,
    /// `messages.date`: wall-clock time in the configured GMT offset, whole seconds.
    pub local_date: NaiveDateTime,
    /// Files attached to it, in the order they were given.
    pub attachments: Vec<Attachment>,
    /// The sender's idempotency key it was stored with (`sg_message_meta.client_msg_id`).
    pub client_msg_id: Option<String>,
}

/// The id of a stored file (`sg_attachments.id`).
pub type AttachmentId = u64;

/// A file stored for a conversation, attached to one of its messages or waiting to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub conversation_id: ConversationId,
    /// The message it is attached to; `None` while it waits for one.
    pub message_id: Option<MessageId>,
    /// The uploader's name for it, made safe (`files::safe_name`).
    pub name: String,
    /// Sniffed from the content.
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Images: pixels (0 otherwise).
    pub width: u32,
    pub height: u32,
    /// Where the storage keeps it (random, never shown).
    pub key: String,
    pub thumbnail: Option<Thumbnail>,
    /// `VISITOR_ADMIN_ID` for the visitor, else the admin's login.
    pub uploaded_by: String,
    /// By the core's clock, in milliseconds since 1970.
    pub created_at_ms: i64,
}

/// A smaller copy of an image attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thumbnail {
    pub key: String,
    pub content_type: String,
    pub size: u64,
}

/// A message to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub origin: Origin,
    /// The admin's login for support messages, [`VISITOR_ADMIN_ID`] for visitor messages.
    pub admin_id: String,
    pub text: String,
    /// The sender's idempotency key: stored once per conversation.
    pub client_msg_id: Option<String>,
    pub local_date: NaiveDateTime,
    /// Uploaded files of the conversation, waiting for a message, that this one takes.
    pub attachments: Vec<Attachment>,
}

/// The outcome of storing one [`NewMessage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub message: StoredMessage,
    /// The client message id had been stored before; nothing new was written.
    pub duplicate: bool,
}

/// A committed batch: one outcome per message, and the greatest message id committed before
/// the batch's own. Writers commit in id order, so a reader that has seen every message up to
/// `prev` can take the batch's new messages as the next ones, with nothing missing between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub prev: MessageId,
    pub appended: Vec<Appended>,
}

/// What a reader of messages wants to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Conversation(ConversationId),
    All,
}

impl Scope {
    /// Whether a message of `conversation` belongs to this scope.
    pub fn contains(self, conversation: ConversationId) -> bool {
        match self {
            Scope::Conversation(c) => c == conversation,
            Scope::All => true,
        }
    }
}

/// Who read a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    Support,
    Visitor,
}

/// A conversation with its last message and unread counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationSummary {
    pub conversation_id: ConversationId,
    pub last_message: Option<StoredMessage>,
    pub unread_by_support: u32,
    pub unread_by_visitor: u32,
    /// Support's read mark: every message up to this id is read by support (0: none).
    pub support_read_id: MessageId,
    /// The visitor's read mark ("Seen" under support's replies up to it).
    pub visitor_read_id: MessageId,
    /// The admin the conversation belongs to, if any.
    pub assignee: Option<String>,
    /// Where support stands with it (a snooze that ran out reads as open).
    pub status: Status,
    /// What is known of the visitor besides messages, if anything.
    pub context: Option<VisitorContext>,
    /// Whether a Telegram chat is linked to the conversation (the visitor writes from there too).
    pub telegram_linked: bool,
}

pub use socketgram_common::context::{ContextError, Page, Vouched};

/// What is known of a conversation's visitor besides messages (`sg_visitor_context`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VisitorContext {
    /// What the host site vouched for: the only verified part.
    pub verified: Option<Vouched>,
    /// What the visitor's page reported: never verified.
    pub page: Option<Page>,
    /// When it last changed, in milliseconds since 1970 by the database's clock.
    pub updated_at_ms: i64,
}

/// A context part as its column (and the replicas' news) holds it: JSON.
pub(crate) fn part_json<T: serde::Serialize>(part: &T) -> String {
    serde_json::to_string(part).expect("a context part serialises")
}

/// A context part read back from [`part_json`]'s form.
pub(crate) fn part_from_json<T: serde::de::DeserializeOwned>(
    json: &str,
) -> Result<T, serde_json::Error> {
    serde_json::from_str(json)
}

/// A visitor's context as it is now stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextChanged {
    pub conversation_id: ConversationId,
    pub context: VisitorContext,
}

/// Where support stands with a conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Status {
    /// Needs an answer (every conversation starts so).
    #[default]
    Open,
    /// Waiting on something else (the visitor, a colleague).
    Pending,
    /// Done; the visitor writing again reopens it.
    Resolved,
    /// Out of the way until a time (milliseconds since 1970), then open again; the visitor
    /// writing reopens it earlier.
    Snoozed { until_ms: i64 },
}

impl Status {
    /// The value stored in `sg_conversations.status`.
    pub fn code(self) -> i32 {
        self.kind().code()
    }

    /// Reads `sg_conversations.status` and `snoozed_until_ms` as of `now_ms`: a snooze that
    /// ran out is open, and so is a code no version wrote.
    pub fn from_row(code: i64, snoozed_until_ms: Option<i64>, now_ms: i64) -> Self {
        match (code, snoozed_until_ms) {
            (1, _) => Status::Pending,
            (2, _) => Status::Resolved,
            (3, Some(until_ms)) if until_ms > now_ms => Status::Snoozed { until_ms },
            _ => Status::Open,
        }
    }

    /// The status without its time.
    pub fn kind(self) -> StatusKind {
        match self {
            Status::Open => StatusKind::Open,
            Status::Pending => StatusKind::Pending,
            Status::Resolved => StatusKind::Resolved,
            Status::Snoozed { .. } => StatusKind::Snoozed,
        }
    }

    /// Whether a visitor's message reopens it.
    pub fn reopens_on_visitor_message(self) -> bool {
        matches!(self, Status::Resolved | Status::Snoozed { .. })
    }
}

/// A status without its time, as a listing filters by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusKind {
    Open,
    Pending,
    Resolved,
    Snoozed,
}

impl StatusKind {
    /// The value stored in `sg_conversations.status`.
    pub fn code(self) -> i32 {
        match self {
            StatusKind::Open => 0,
            StatusKind::Pending => 1,
            StatusKind::Resolved => 2,
            StatusKind::Snoozed => 3,
        }
    }
}

/// Why a conversation's status changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusChange {
    /// Support set it: this admin, or a backend on their behalf.
    By(String),
    /// The visitor wrote to a resolved or snoozed conversation.
    VisitorWrote,
    /// The snooze ran out.
    SnoozeEnded,
}

/// Which conversations a listing keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    pub assignee: AssigneeFilter,
    /// Only those with one of these statuses; empty: any.
    pub statuses: Vec<StatusKind>,
    /// Only those this text finds: by the visitor id, by what the host site vouched for (name,
    /// email, fields), or in a message's text, case-insensitively (ASCII letters only on
    /// SQLite). `None` or blank: no search.
    pub text: Option<String>,
}

/// Which conversations a listing keeps, by assignee.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AssigneeFilter {
    /// Every one.
    #[default]
    Any,
    /// Those that belong to nobody.
    Nobody,
    /// Those of this admin.
    Admin(String),
}

/// What an assignment found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assigned {
    /// Done: the conversation belongs to the one asked for (or nobody) now.
    Done,
    /// A take found it assigned already, to this admin.
    Taken(String),
    /// No such conversation.
    Unknown,
}

/// A row of `adm_account`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// `aid`: the login.
    pub admin_id: String,
    /// `name`.
    pub name: String,
    /// `lid`: -1 superuser, 0 no rights, 1 all tools, 2 chat only.
    pub rights: i32,
}

/// Legacy `telegram.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TelegramMode {
    /// 0: the bot shows its menu.
    Menu,
    /// 1: every text goes to support.
    Writing,
}

impl TelegramMode {
    /// The value stored in `telegram.status`.
    pub fn code(self) -> i32 {
        match self {
            TelegramMode::Menu => 0,
            TelegramMode::Writing => 1,
        }
    }

    /// Reads `telegram.status`.
    pub fn from_code(code: i64) -> Self {
        if code == 1 {
            TelegramMode::Writing
        } else {
            TelegramMode::Menu
        }
    }
}

/// A Telegram chat linked to a visitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelegramLink {
    /// 64 bits: today's Telegram ids exceed the legacy `INT(10)` (LEGACY.md §9.11).
    pub chat_id: i64,
    pub conversation_id: ConversationId,
    pub mode: TelegramMode,
    /// False once Telegram refused delivery for good (the user blocked the bot).
    pub active: bool,
}

/// A named lease (`sg_leases`) as one acquire or renewal found it: who holds it and for how
/// long, by the database's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    /// Whether the holder that asked holds it now.
    pub granted: bool,
    /// Who holds it; `None` when nobody does (no row, or expired).
    pub holder: Option<String>,
    /// When it expires, in milliseconds since 1970 by the database's clock; `None` when free.
    pub expires_at_ms: Option<i64>,
    /// How long it still ran when it was read, by the database's clock (zero when free).
    pub remaining: std::time::Duration,
}

/// A team's canned reply (`sg_canned_replies`): a saved answer that support's clients expand
/// from `/shortcut`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CannedReply {
    /// 1..=32 of `a-z0-9_-`.
    pub shortcut: String,
    /// As written (not escaped).
    pub text: String,
    /// The admin who last wrote it.
    pub updated_by: String,
    /// When, in milliseconds since 1970 by the database's clock.
    pub updated_at_ms: i64,
}

/// A signed-in session of an admin (`sg_admin_sessions`), known by the SHA-256 of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSession {
    /// Lowercase hex SHA-256 of the session's secret (the secret itself is never stored).
    pub id: String,
    pub admin_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// Support's private note on a conversation (`sg_notes`): never sent to the visitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Increasing in the order notes were added (its own sequence, not a message id).
    pub id: u64,
    pub conversation_id: ConversationId,
    /// The admin who wrote it.
    pub admin_id: String,
    /// As written (not escaped).
    pub text: String,
    /// When, in milliseconds since 1970 by the database's clock.
    pub created_at_ms: i64,
}

/// The record of one erasure (`sg_erasures`): never anything of what was erased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub conversation_id: ConversationId,
    /// The admin who erased it.
    pub erased_by: String,
    /// When, in milliseconds since 1970 by the database's clock.
    pub erased_at_ms: i64,
    /// How many messages and notes went.
    pub messages: u64,
    pub notes: u64,
}
