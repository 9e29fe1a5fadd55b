//! Storage: one [`Store`] trait with the same behaviour on SQLite (the embedded default),
//! MySQL/MariaDB (the legacy schema, shared with the PHP admin) and PostgreSQL. Its queries are
//! written once, in `sql` ([`SqlStore`], generic over the sqlx database), reading the row types
//! of `rows`, with `batch` taking an append's batch apart into statements; what a backend says
//! differently is its [`Dialect`], implemented in the backend's module next to its connection,
//! with its migrations under `core/migrations/<backend>`. The conformance suite
//! (`tests/tests/store_conformance.rs`) proves the backends agree.
//!
//! The logical schema is the legacy one (LEGACY.md §5); Socketgram only adds to it:
//! `sg_conversations` (read marks, last message), `sg_message_meta` (origin and client message
//! id of each message), `sg_write_lock` (serialises writers across core replicas), an index
//! on `messages (cid, id)`, a 64-bit `telegram.chat_id`, `telegram.active` and
//! `sg_delivery_cursors` (how far each consumer that pushes messages elsewhere has got) and
//! `sg_leases` (who holds a named lease, until when by the database's clock), and
//! `sg_attachments` (files of messages: their description; the bytes are in the file storage,
//! `crate::files`), and `sg_telegram_link_tokens` (one-time "Continue in Telegram" tokens, by
//! digest).

mod batch;
mod dialect;
mod mysql;
mod nodelay;
mod postgres;
mod rows;
mod sql;
mod sqlite;
pub mod text;
mod write_tx;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{
    Admin, AdminSession, Appended, Assigned, Attachment, AttachmentId, CannedReply, Committed,
    ConversationFilter, ConversationId, ConversationSummary, Erasure, Lease, MessageId, NewMessage,
    Note, Page, Reader, Scope, Status, StoredMessage, TelegramLink, TelegramMode, VisitorContext,
    Vouched,
};

pub use dialect::Dialect;
pub use sql::SqlStore;

/// Store on a MySQL or MariaDB database.
pub type MySqlStore = SqlStore<sqlx::MySql>;
/// Store on a PostgreSQL database.
pub type PostgresStore = SqlStore<sqlx::Postgres>;
/// Store on a SQLite file.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;

/// Errors of the storage layer. Mapped to gRPC codes once, in `grpc`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or the connection broke; the operation did not happen
    /// (a transaction in flight was rolled back) and may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The connection broke while a COMMIT was on its way or awaiting its answer: the
    /// transaction may or may not have been committed.
    #[error("database connection lost during COMMIT: {0}")]
    CommitOutcomeUnknown(#[source] sqlx::Error),
    /// A constraint of the schema refused the write (e.g. a visitor id missing from `users`
    /// in the legacy "with users" variant).
    #[error("refused by the database: {0}")]
    Constraint(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL names no supported backend.
    #[error("unsupported database URL scheme in {0:?}: use sqlite:, mysql:, mariadb: or postgres:")]
    UnsupportedUrl(String),
    /// The SQLite file is served by another process (SQLite is single-node).
    #[error("{0}")]
    InUse(String),
    /// A value read from the database does not fit the domain (e.g. a negative id).
    #[error("unexpected value in column {column}: {value}")]
    Corrupt { column: &'static str, value: String },
}

impl StoreError {
    /// Classifies the error of a COMMIT: a lost connection there leaves the outcome unknown.
    pub(crate) fn at_commit(e: sqlx::Error) -> Self {
        match StoreError::from(e) {
            StoreError::Unavailable(e) => StoreError::CommitOutcomeUnknown(e),
            other => other,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(ref db) => match db.kind() {
                ErrorKind::ForeignKeyViolation
                | ErrorKind::UniqueViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation => StoreError::Constraint(db.message().to_owned()),
                _ if is_connection_loss(db.as_ref()) => StoreError::Unavailable(e),
                _ => StoreError::Database(e),
            },
            other => StoreError::Database(other),
        }
    }
}

/// Server-side errors that mean "the connection is gone", not "the statement was wrong".
fn is_connection_loss(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // 2006 server gone away, 2013 lost connection, 1053 shutdown in progress,
        // 1927 connection killed (MariaDB).
        return matches!(mysql.number(), 2006 | 2013 | 1053 | 1927);
    }
    // PostgreSQL: class 08 (connection exception) and 57P01..57P03 (admin shutdown, crash
    // shutdown, cannot connect now).
    let code = db.code().unwrap_or_default();
    matches!(code.as_ref(), "57P01" | "57P02" | "57P03") || code.starts_with("08")
}

/// Result of the storage layer.
pub type StoreResult<T> = Result<T, StoreError>;

/// Where and how to connect.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db`, `mysql://user:pass@host/db` (also `mariadb://`) or
    /// `postgres://user@host/db`. The file or database is created when missing.
    #[serde(serialize_with = "crate::config::serialize_url")]
    pub url: crate::config::Secret,
    /// Pool size.
    pub max_connections: u32,
    /// How long a call waits for a connection before it fails with UNAVAILABLE.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: crate::config::Secret::new("sqlite://socketgram.db"),
            max_connections: 16,
            acquire_timeout_ms: 5_000,
        }
    }
}

impl DatabaseConfig {
    /// How long a write whose commit failed may wait for the database to answer again and
    /// say whether it was stored: two connection waits.
    pub(crate) fn resolve_for(&self) -> Duration {
        self.acquire_timeout() * 2
    }

    pub(crate) fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// The pool's size and connection wait.
    pub(crate) fn pool_options<DB: sqlx::Database>(&self) -> sqlx::pool::PoolOptions<DB> {
        sqlx::pool::PoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout())
    }
}

/// Opens a pool on `options`; where the server answers that the database does not exist
/// (`missing`), runs `create` and opens the pool again.
pub(crate) async fn connect_creating<DB, F>(
    pool: sqlx::pool::PoolOptions<DB>,
    options: <DB::Connection as sqlx::Connection>::Options,
    missing: fn(&dyn sqlx::error::DatabaseError) -> bool,
    create: impl FnOnce() -> F,
) -> StoreResult<sqlx::Pool<DB>>
where
    DB: sqlx::Database,
    F: Future<Output = StoreResult<()>>,
{
    match pool.clone().connect_with(options.clone()).await {
        Err(sqlx::Error::Database(e)) if missing(e.as_ref()) => {
            create().await?;
            Ok(pool.connect_with(options).await?)
        }
        other => Ok(other?),
    }
}

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
    Postgres,
}

impl Backend {
    /// The backend a URL names, by scheme.
    pub fn from_url(url: &str) -> StoreResult<Self> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "mysql" | "mariadb" => Ok(Backend::MySql),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(StoreError::UnsupportedUrl(redact_url(url))),
        }
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Opens the pool for the configured database (creating the SQLite file or the server-side
/// database when missing). Does not migrate: call [`Store::migrate`].
pub async fn connect(config: &DatabaseConfig) -> StoreResult<Arc<dyn Store>> {
    let url = config.url.expose();
    Ok(match Backend::from_url(url)? {
        Backend::Sqlite => Arc::new(SqliteStore::connect(config).await?),
        Backend::MySql => Arc::new(MySqlStore::connect(config).await?),
        Backend::Postgres => Arc::new(PostgresStore::connect(config).await?),
    })
}

pub use sqlite::SingleNode;

/// Claims the database for this process's core when it is single-node (a SQLite file):
/// `Ok(None)` for the others, which any number of cores share. Hold the claim while the
/// core runs.
pub fn claim_single_node(config: &DatabaseConfig) -> StoreResult<Option<SingleNode>> {
    let url = config.url.expose();
    match Backend::from_url(url)? {
        Backend::Sqlite => sqlite::claim_single_node(url),
        Backend::MySql | Backend::Postgres => Ok(None),
    }
}

/// The largest page a caller asks for. A store read returns up to one row more: callers read
/// one past their page to tell whether more follow.
pub const MAX_PAGE: u32 = 500;

/// The core's persistent state. Every method is one transaction or one read; none leaves a
/// partial write behind when it fails.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// Creates the schema in an empty database, or adopts an existing legacy one by adding
    /// Socketgram's tables, columns and indexes. Never drops or renames anything.
    async fn migrate(&self) -> StoreResult<()>;

    /// Stores a batch of messages in one transaction, serialised with every other writer of
    /// the database so that ids commit in increasing order. A message whose client message id
    /// is already stored in its conversation (earlier, or earlier in the batch) is not stored
    /// again: its first copy is returned with `duplicate` set. Each message also creates its
    /// conversation when needed. Returns one outcome per input, in input order, and the
    /// greatest message id committed before the batch.
    async fn commit_batch(&self, batch: &[NewMessage]) -> StoreResult<Committed>;

    /// [`Store::commit_batch`]'s outcomes alone.
    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        Ok(self.commit_batch(batch).await?.appended)
    }

    /// Messages of `scope` with an id greater than `after`, ascending, at most `limit`
    /// (capped at [`MAX_PAGE`] + 1).
    async fn messages_after(
        &self,
        scope: Scope,
        after: MessageId,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// Messages of one conversation with an id smaller than `before` (all when `None`),
    /// newest first, at most `limit`.
    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// The greatest message id stored, 0 when there is none.
    async fn last_message_id(&self) -> StoreResult<MessageId>;

    /// Takes and releases the writers' lock: once it returns, every write that held it before
    /// (e.g. a transaction whose client lost its connection during COMMIT) has ended, committed
    /// or rolled back, so what is read next is final.
    async fn await_writers(&self) -> StoreResult<()>;

    /// Creates the conversation when it does not exist. Returns whether it was created.
    async fn open_conversation(&self, conversation: ConversationId) -> StoreResult<bool>;

    /// One conversation, `None` when it does not exist.
    async fn conversation(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Option<ConversationSummary>>;

    /// Conversations by last message id descending, only those whose last message id is
    /// smaller than `before_last` when given, at most `limit`, of those `filter` keeps.
    /// Conversations without messages come last.
    async fn conversations(
        &self,
        before_last: Option<MessageId>,
        limit: u32,
        filter: &ConversationFilter,
    ) -> StoreResult<Vec<ConversationSummary>>;

    /// Sets a conversation's status (and a snooze's end). Returns false when the conversation
    /// does not exist. The writer reopens a resolved or snoozed conversation by itself when a
    /// visitor's message is stored.
    async fn set_status(&self, conversation: ConversationId, status: Status) -> StoreResult<bool>;

    /// Ends the snooze that runs until `until_ms`: the conversation is open again, unless
    /// its status changed since (then nothing happens). Whether it ended it.
    async fn end_snooze(&self, conversation: ConversationId, until_ms: i64) -> StoreResult<bool>;

    /// The conversations that a visitor's message would reopen (resolved or snoozed, a
    /// snooze with its end even when that has passed).
    async fn reopenable(&self) -> StoreResult<Vec<(ConversationId, Status)>>;

    /// Moves a reader's mark to `up_to` unless it is already further. Returns false when the
    /// conversation does not exist.
    async fn mark_read(
        &self,
        conversation: ConversationId,
        reader: Reader,
        up_to: MessageId,
    ) -> StoreResult<bool>;

    /// Every admin of `adm_account` but the legacy placeholder row `'0'`, by login.
    async fn admins(&self) -> StoreResult<Vec<Admin>>;

    /// Adds a row to `adm_account` (as the PHP admin's `createadmin` page does). Returns false,
    /// changing nothing, when the login exists.
    async fn add_admin(&self, admin: &Admin) -> StoreResult<bool>;

    /// Removes an admin's row, and their password with it. Returns false when there is none;
    /// `Constraint` when messages reference it (`messages.aid`: the replies keep the admin's
    /// name).
    async fn remove_admin(&self, admin_id: &str) -> StoreResult<bool>;

    /// Sets (or replaces) an admin's password hash (a PHC string, see `passwords`), stamped
    /// with the database's clock. The caller checks that the admin exists.
    async fn put_admin_password(&self, admin_id: &str, hash: &str) -> StoreResult<()>;

    /// An admin's password hash, if one was set.
    async fn admin_password(&self, admin_id: &str) -> StoreResult<Option<String>>;

    /// The logins of the admins who have a password, sorted.
    async fn admins_with_password(&self) -> StoreResult<Vec<String>>;

    /// Records a new session, first forgetting the admin's sessions that expired before
    /// `session.created_at_ms`.
    async fn create_admin_session(&self, session: &AdminSession) -> StoreResult<()>;

    /// The session of this id, expired or not.
    async fn admin_session(&self, id: &str) -> StoreResult<Option<AdminSession>>;

    /// Ends one session; whether it existed.
    async fn end_admin_session(&self, id: &str) -> StoreResult<bool>;

    /// Ends every session of an admin (sign out everywhere); how many there were.
    async fn end_admin_sessions(&self, admin_id: &str) -> StoreResult<u64>;

    /// The link of one chat.
    async fn telegram_link(&self, chat_id: i64) -> StoreResult<Option<TelegramLink>>;

    /// Links a chat to a conversation in menu mode, active, removing any other link of the
    /// chat or of the conversation (one chat per visitor, one visitor per chat).
    async fn link_telegram(
        &self,
        chat_id: i64,
        conversation: ConversationId,
    ) -> StoreResult<TelegramLink>;

    /// Changes a link's mode and/or active flag; `None` when the chat is not linked.
    async fn set_telegram_state(
        &self,
        chat_id: i64,
        mode: Option<TelegramMode>,
        active: Option<bool>,
    ) -> StoreResult<Option<TelegramLink>>;

    /// Every link, or those of one conversation, by chat id.
    async fn telegram_links(
        &self,
        conversation: Option<ConversationId>,
    ) -> StoreResult<Vec<TelegramLink>>;

    /// Puts every link in menu mode.
    async fn reset_telegram_modes(&self) -> StoreResult<()>;

    /// Keeps a Telegram link token (`sg_telegram_link_tokens`) by `id`, the digest of its
    /// secret, for `conversation`, until the database's now + `ttl`; first deletes every
    /// token that has expired. Returns when it expires (milliseconds since 1970, by the
    /// database's clock).
    async fn create_link_token(
        &self,
        id: &str,
        conversation: ConversationId,
        ttl: Duration,
    ) -> StoreResult<i64>;

    /// Takes the link token `id`: deletes it when it is there and has not expired by the
    /// database's clock, and returns its conversation. `None` when it is unknown, taken
    /// already or expired. One statement decides, so of concurrent takers of one token
    /// exactly one gets it.
    async fn take_link_token(&self, id: &str) -> StoreResult<Option<ConversationId>>;

    /// A consumer's delivery cursor (`sg_delivery_cursors`), created at `start` when the
    /// consumer has none yet. Returns the stored value.
    async fn delivery_cursor(&self, consumer: &str, start: MessageId) -> StoreResult<MessageId>;

    /// Moves a consumer's cursor to `to` unless it is already further (creating it when
    /// missing). Returns the cursor as stored afterwards.
    async fn advance_delivery_cursor(
        &self,
        consumer: &str,
        to: MessageId,
    ) -> StoreResult<MessageId>;

    /// Acquires or renews the lease `name` for `holder` (`sg_leases`): granted when it is
    /// free, expired or `holder`'s already, and then it runs until the database's now + `ttl`.
    /// Expiry is compared with the database's clock in the deciding statement itself, so
    /// replicas with skewed clocks agree, and of concurrent acquirers exactly one is granted.
    /// Returns the lease as read right after (the holder, the time it still runs).
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<Lease>;

    /// Frees the lease `name` when `holder` holds it (or held it last and nobody took it
    /// since). Returns whether it did.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool>;

    /// The canned replies whose shortcut starts with `prefix` (all when empty), sorted by
    /// shortcut.
    async fn canned_replies(&self, prefix: &str) -> StoreResult<Vec<CannedReply>>;

    /// How many canned replies there are, and whether `shortcut` is one of them (without
    /// reading their texts).
    async fn canned_reply_count(&self, shortcut: &str) -> StoreResult<(u64, bool)>;

    /// Creates the canned reply `shortcut` or replaces its text and author; stamped with the
    /// database's clock. Returns it as stored.
    async fn put_canned_reply(
        &self,
        shortcut: &str,
        text: &str,
        updated_by: &str,
    ) -> StoreResult<CannedReply>;

    /// Deletes the canned reply `shortcut`; whether there was one.
    async fn delete_canned_reply(&self, shortcut: &str) -> StoreResult<bool>;

    /// Adds a private note to a conversation, stamped with the database's clock. `key` is
    /// unique per note (the store reads the note back by it).
    async fn add_note(
        &self,
        conversation: ConversationId,
        admin_id: &str,
        text: &str,
        key: &str,
    ) -> StoreResult<Note>;

    /// A conversation's notes, oldest first.
    async fn notes(&self, conversation: ConversationId) -> StoreResult<Vec<Note>>;

    /// How many open or pending conversations each admin who has any holds.
    async fn open_assigned_counts(&self) -> StoreResult<HashMap<String, u64>>;

    /// Gives a conversation to `assignee` (`None`: to nobody). With `only_if_unassigned` (a
    /// take) only when it belongs to nobody; the one who has it otherwise.
    async fn assign(
        &self,
        conversation: ConversationId,
        assignee: Option<&str>,
        only_if_unassigned: bool,
    ) -> StoreResult<Assigned>;

    /// What is known of a conversation's visitor besides messages, if anything (it may be
    /// stored before the conversation is).
    async fn visitor_context(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Option<VisitorContext>>;

    /// Stores the parts of a visitor's context that are given (a part left out keeps what is
    /// stored), stamped with the database's clock; returns the context as stored.
    async fn put_visitor_context(
        &self,
        conversation: ConversationId,
        verified: Option<&Vouched>,
        page: Option<&Page>,
    ) -> StoreResult<VisitorContext>;

    /// Erases a conversation for good, in one transaction under the write lock: its messages
    /// (and their `sg_message_meta`), files' rows, notes, Telegram link, link tokens and staff
    /// topics, visitor context and `sg_conversations` row; then
    /// records the erasure (`sg_erasures`: who, when, how much). Returns the record.
    async fn erase_conversation(
        &self,
        conversation: ConversationId,
        erased_by: &str,
    ) -> StoreResult<Erasure>;

    /// Records an uploaded file (waiting for a message: `message_id` is ignored), under its
    /// storage key; returns it with its id.
    async fn add_attachment(&self, attachment: &Attachment) -> StoreResult<Attachment>;

    /// The message a client message id was stored under in a conversation, if any.
    async fn client_message(
        &self,
        conversation: ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<MessageId>>;

    /// A file by id, attached or waiting.
    async fn attachment(&self, id: AttachmentId) -> StoreResult<Option<Attachment>>;

    /// Every file of a conversation, attached or waiting (an erasure deletes their bytes).
    async fn conversation_attachments(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Vec<Attachment>>;

    /// How many files of a conversation wait for a message.
    async fn unattached_count(&self, conversation: ConversationId) -> StoreResult<u64>;

    /// Files no message took that were uploaded before `before_ms`.
    async fn unattached(&self, before_ms: i64) -> StoreResult<Vec<Attachment>>;

    /// Deletes the rows of these files, of those still waiting for a message (one attached
    /// meanwhile stays); returns the ids deleted.
    async fn delete_unattached(&self, ids: &[AttachmentId]) -> StoreResult<Vec<AttachmentId>>;

    /// Every storage key a row names (files' and thumbnails'): what the file storage keeps.
    async fn attachment_keys(&self) -> StoreResult<std::collections::HashSet<String>>;

    /// Says which admin a Telegram user of the staff group is (moving the user or the admin
    /// from an older pairing), or (`None`) that the admin has no Telegram user.
    async fn link_admin_telegram(
        &self,
        admin_id: &str,
        telegram_user: Option<i64>,
    ) -> StoreResult<()>;

    /// The admin a Telegram user is, if paired.
    async fn telegram_staff(&self, telegram_user: i64) -> StoreResult<Option<String>>;

    /// Every admin's Telegram user, by login.
    async fn admin_telegram_users(&self) -> StoreResult<HashMap<String, i64>>;

    /// The forum topic of a conversation in a staff chat.
    async fn staff_topic(
        &self,
        chat_id: i64,
        conversation: ConversationId,
    ) -> StoreResult<Option<i64>>;

    /// The conversation of a forum topic in a staff chat.
    async fn staff_topic_conversation(
        &self,
        chat_id: i64,
        thread_id: i64,
    ) -> StoreResult<Option<ConversationId>>;

    /// Keeps a conversation's topic in a staff chat, replacing an older one of the
    /// conversation (a deleted topic made anew) or of the thread.
    async fn put_staff_topic(
        &self,
        chat_id: i64,
        conversation: ConversationId,
        thread_id: i64,
    ) -> StoreResult<()>;

    /// The erasures recorded for a conversation, oldest first.
    async fn erasures(&self, conversation: ConversationId) -> StoreResult<Vec<Erasure>>;

    /// Whether messages of this visitor can be stored: on a legacy MySQL schema whose
    /// `messages.cid` references `users.id` ("with users" variant), whether that row exists;
    /// on every other schema any id in range (Socketgram's own schema keeps no foreign key
    /// from messages to visitors).
    async fn visitor_exists(&self, _conversation: ConversationId) -> StoreResult<bool> {
        Ok(true)
    }

    /// `users.password` of a visitor (a hash, or the password itself, by configuration);
    /// `None` when there is no such user.
    async fn user_password(&self, user_id: u64) -> StoreResult<Option<String>>;

    /// The pool's connections now (for the metrics, sampled at each scrape).
    fn pool_stats(&self) -> PoolStats;

    /// Closes the pool, waiting for connections in use to come back.
    async fn close(&self);
}

/// A connection pool's state at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, in use or idle.
    pub size: u32,
    /// Connections open and waiting to be used.
    pub idle: usize,
}

/// Converts an unsigned domain id to the signed integer the drivers bind.
pub(crate) fn to_db_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Converts a signed integer read from the database to a domain id.
pub(crate) fn from_db_id(column: &'static str, value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        column,
        value: value.to_string(),
    })
}

/// Caps a requested page size: [`MAX_PAGE`] and the one row read ahead.
pub(crate) fn page(limit: u32) -> u32 {
    limit.clamp(1, MAX_PAGE + 1)
}
