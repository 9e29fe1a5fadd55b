//! The rows the queries of [`super::sql`] read, one `FromRow` type per shape, and their
//! conversion to the domain. Every integer column is read through [`Int`]: the backends hold
//! ids and codes in integers of different widths and signedness.

use chrono::NaiveDateTime;
use sqlx::{ColumnIndex, Decode, FromRow, Row, Type, ValueRef as _, error::BoxDynError};

use super::{Dialect, StoreError, StoreResult, from_db_id, text};
use crate::domain::{
    Admin, Attachment, CannedReply, ConversationSummary, Direction, Erasure, Lease, Note, Origin,
    Status, StoredMessage, TelegramLink, TelegramMode, Thumbnail, VisitorContext, part_from_json,
};

/// An integer column read as `i64`, whatever integer type the backend gives it: `BIGINT`, or
/// the dialect's [`Dialect::OtherInt`] (PostgreSQL's `INTEGER`, MySQL's legacy `INT UNSIGNED`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Int(pub(crate) i64);

impl<DB: Dialect> Type<DB> for Int
where
    i64: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <i64 as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <i64 as Type<DB>>::compatible(ty) || <DB::OtherInt as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Dialect> Decode<'r, DB> for Int
where
    i64: Decode<'r, DB> + Type<DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
        if <i64 as Type<DB>>::compatible(&value.type_info()) {
            return Ok(Int(<i64 as Decode<DB>>::decode(value)?));
        }
        Ok(Int(<DB::OtherInt as Decode<DB>>::decode(value)?.try_into()?))
    }
}

/// A client message id column, read as a `String` whatever the backend keeps it as
/// ([`Dialect::KeyColumn`]: MySQL's `VARBINARY`, so that keys compare byte for byte).
#[derive(Clone, Debug)]
pub(crate) struct Key(pub(crate) String);

impl<DB: Dialect> Type<DB> for Key {
    fn type_info() -> DB::TypeInfo {
        <DB::KeyColumn as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <DB::KeyColumn as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Dialect> Decode<'r, DB> for Key {
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Key(
            <DB::KeyColumn as Decode<DB>>::decode(value)?.try_into()?
        ))
    }
}

/// A message as `sql::MESSAGE_COLUMNS` selects it.
#[derive(FromRow)]
pub(crate) struct MessageRow {
    id: Int,
    cid: Int,
    direction: Int,
    aid: String,
    message: Option<String>,
    date: NaiveDateTime,
    origin: Option<Int>,
    /// `sg_message_meta.files`: how many files it has (NULL for a legacy row: none).
    files: Option<Int>,
    client_msg_id: Option<Key>,
}

impl MessageRow {
    /// Whether the message has files to read from `sg_attachments`.
    pub(crate) fn has_files(&self) -> bool {
        self.files.is_some_and(|n| n.0 > 0)
    }

    /// `messages.id` as read.
    pub(crate) fn id(&self) -> i64 {
        self.id.0
    }
}

impl TryFrom<MessageRow> for StoredMessage {
    type Error = StoreError;

    fn try_from(row: MessageRow) -> StoreResult<Self> {
        let direction = Direction::from_code(row.direction.0);
        Ok(StoredMessage {
            id: from_db_id("messages.id", row.id.0)?,
            conversation_id: from_db_id("messages.cid", row.cid.0)?,
            direction,
            origin: Origin::from_code(row.origin.map(|code| code.0), direction),
            admin_id: row.aid,
            text: text::from_column(row.message.as_deref()),
            local_date: row.date,
            attachments: Vec::new(),
            client_msg_id: row.client_msg_id.map(|k| k.0),
        })
    }
}

/// The last message of a conversation, absent when its `LEFT JOIN` found none (`id` NULL).
pub(crate) struct LastMessage(Option<MessageRow>);

impl<'r, R: Row> FromRow<'r, R> for LastMessage
where
    &'r str: ColumnIndex<R>,
    Option<Int>: Decode<'r, R::Database> + Type<R::Database>,
    MessageRow: FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let id: Option<Int> = row.try_get("id")?;
        id.map(|_| MessageRow::from_row(row))
            .transpose()
            .map(LastMessage)
    }
}

/// A conversation as `sql::SUMMARY_SELECT` selects it.
#[derive(FromRow)]
pub(crate) struct SummaryRow {
    conversation: Int,
    #[sqlx(flatten)]
    last: LastMessage,
    unread_support: Int,
    unread_visitor: Int,
    support_read_id: Int,
    visitor_read_id: Int,
    assignee: Option<String>,
    status: Int,
    snoozed_until_ms: Option<Int>,
    telegram_links: Int,
    #[sqlx(flatten)]
    context: ContextColumns,
}

impl SummaryRow {
    /// Whether its last message has files to read from `sg_attachments`.
    pub(crate) fn last_has_files(&self) -> bool {
        self.last.0.as_ref().is_some_and(MessageRow::has_files)
    }
}

impl TryFrom<SummaryRow> for ConversationSummary {
    type Error = StoreError;

    fn try_from(row: SummaryRow) -> StoreResult<Self> {
        Ok(ConversationSummary {
            conversation_id: from_db_id("sg_conversations.cid", row.conversation.0)?,
            last_message: row.last.0.map(StoredMessage::try_from).transpose()?,
            unread_by_support: row.unread_support.0.try_into().unwrap_or(u32::MAX),
            unread_by_visitor: row.unread_visitor.0.try_into().unwrap_or(u32::MAX),
            support_read_id: from_db_id("sg_conversations.support_read_id", row.support_read_id.0)?,
            visitor_read_id: from_db_id("sg_conversations.visitor_read_id", row.visitor_read_id.0)?,
            assignee: row.assignee.filter(|a| !a.is_empty()),
            status: Status::from_row(
                row.status.0,
                row.snoozed_until_ms.map(|t| t.0),
                chrono::Utc::now().timestamp_millis(),
            ),
            context: row.context.read()?,
            telegram_linked: row.telegram_links.0 > 0,
        })
    }
}

/// A row of `sg_visitor_context` (`context_*`, NULL when the visitor has none).
#[derive(FromRow)]
pub(crate) struct ContextColumns {
    context_verified: Option<String>,
    context_page: Option<String>,
    context_updated_at_ms: Option<Int>,
}

impl ContextColumns {
    pub(crate) fn read(self) -> StoreResult<Option<VisitorContext>> {
        let Some(updated) = self.context_updated_at_ms else {
            return Ok(None);
        };
        Ok(Some(VisitorContext {
            verified: from_json("sg_visitor_context.verified", self.context_verified)?,
            page: from_json("sg_visitor_context.page", self.context_page)?,
            updated_at_ms: updated.0,
        }))
    }
}

fn from_json<T: serde::de::DeserializeOwned>(
    column: &'static str,
    value: Option<String>,
) -> StoreResult<Option<T>> {
    value
        .map(|json| {
            part_from_json(&json).map_err(|e| StoreError::Corrupt {
                column,
                value: format!("{e}: {json}"),
            })
        })
        .transpose()
}

/// A row of `telegram`.
#[derive(FromRow)]
pub(crate) struct LinkRow {
    chat_id: Int,
    cid: Int,
    status: Int,
    active: Int,
}

impl TryFrom<LinkRow> for TelegramLink {
    type Error = StoreError;

    fn try_from(row: LinkRow) -> StoreResult<Self> {
        Ok(TelegramLink {
            chat_id: row.chat_id.0,
            conversation_id: from_db_id("telegram.cid", row.cid.0)?,
            mode: TelegramMode::from_code(row.status.0),
            active: row.active.0 != 0,
        })
    }
}

/// A row of `sg_leases` with the database's time it was read at (`now_ms`).
#[derive(FromRow)]
pub(crate) struct LeaseRow {
    holder: String,
    expires_at_ms: Int,
    now_ms: Int,
}

impl LeaseRow {
    /// The lease as `asker` sees it; `renewed` is whether its statement took or extended it.
    /// An expired row is a free lease, whoever it names.
    pub(crate) fn lease(row: Option<Self>, name: &str, asker: &str, renewed: bool) -> Lease {
        let held = row.filter(|r| r.expires_at_ms.0 > r.now_ms.0);
        let remaining = held.as_ref().map_or(0, |r| r.expires_at_ms.0 - r.now_ms.0);
        Lease {
            name: name.to_owned(),
            granted: renewed && held.as_ref().is_some_and(|r| r.holder == asker),
            expires_at_ms: held.as_ref().map(|r| r.expires_at_ms.0),
            holder: held.map(|r| r.holder),
            remaining: std::time::Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
        }
    }
}

/// A row of `sg_canned_replies`.
#[derive(FromRow)]
pub(crate) struct CannedReplyRow {
    shortcut: String,
    text: String,
    updated_by: String,
    updated_at_ms: Int,
}

impl From<CannedReplyRow> for CannedReply {
    fn from(row: CannedReplyRow) -> Self {
        CannedReply {
            shortcut: row.shortcut,
            text: row.text,
            updated_by: row.updated_by,
            updated_at_ms: row.updated_at_ms.0,
        }
    }
}

/// A row of `sg_notes`.
#[derive(FromRow)]
pub(crate) struct NoteRow {
    id: Int,
    cid: Int,
    aid: String,
    text: String,
    created_at_ms: Int,
}

impl TryFrom<NoteRow> for Note {
    type Error = StoreError;

    fn try_from(row: NoteRow) -> StoreResult<Self> {
        Ok(Note {
            id: from_db_id("sg_notes.id", row.id.0)?,
            conversation_id: from_db_id("sg_notes.cid", row.cid.0)?,
            admin_id: row.aid,
            text: row.text,
            created_at_ms: row.created_at_ms.0,
        })
    }
}

/// A row of `sg_attachments` (`sql::ATTACHMENTS`).
#[derive(FromRow)]
pub(crate) struct AttachmentRow {
    id: Int,
    cid: Int,
    message_id: Option<Int>,
    name: String,
    content_type: String,
    size: Int,
    sha256: String,
    width: Int,
    height: Int,
    storage_key: String,
    thumbnail_key: Option<String>,
    thumbnail_type: Option<String>,
    thumbnail_size: Option<Int>,
    uploaded_by: String,
    created_at_ms: Int,
}

impl TryFrom<AttachmentRow> for Attachment {
    type Error = StoreError;

    fn try_from(row: AttachmentRow) -> StoreResult<Self> {
        let pixels = |column, n: Int| {
            u32::try_from(n.0).map_err(|_| StoreError::Corrupt {
                column,
                value: n.0.to_string(),
            })
        };
        Ok(Attachment {
            id: from_db_id("sg_attachments.id", row.id.0)?,
            conversation_id: from_db_id("sg_attachments.cid", row.cid.0)?,
            message_id: row
                .message_id
                .map(|id| from_db_id("sg_attachments.message_id", id.0))
                .transpose()?,
            name: row.name,
            content_type: row.content_type,
            size: from_db_id("sg_attachments.size", row.size.0)?,
            sha256: row.sha256,
            width: pixels("sg_attachments.width", row.width)?,
            height: pixels("sg_attachments.height", row.height)?,
            key: row.storage_key,
            thumbnail: match (row.thumbnail_key, row.thumbnail_type, row.thumbnail_size) {
                (Some(key), Some(content_type), Some(size)) => Some(Thumbnail {
                    key,
                    content_type,
                    size: from_db_id("sg_attachments.thumbnail_size", size.0)?,
                }),
                _ => None,
            },
            uploaded_by: row.uploaded_by,
            created_at_ms: row.created_at_ms.0,
        })
    }
}

/// A row of `sg_erasures`.
#[derive(FromRow)]
pub(crate) struct ErasureRow {
    cid: Int,
    erased_by: String,
    erased_at_ms: Int,
    messages: Int,
    notes: Int,
}

impl TryFrom<ErasureRow> for Erasure {
    type Error = StoreError;

    fn try_from(row: ErasureRow) -> StoreResult<Self> {
        Ok(Erasure {
            conversation_id: from_db_id("sg_erasures.cid", row.cid.0)?,
            erased_by: row.erased_by,
            erased_at_ms: row.erased_at_ms.0,
            messages: from_db_id("sg_erasures.messages", row.messages.0)?,
            notes: from_db_id("sg_erasures.notes", row.notes.0)?,
        })
    }
}

/// A row of `adm_account`.
#[derive(FromRow)]
pub(crate) struct AdminRow {
    aid: String,
    name: String,
    lid: Int,
}

impl From<AdminRow> for Admin {
    fn from(row: AdminRow) -> Self {
        Admin {
            admin_id: row.aid,
            name: row.name,
            rights: row.lid.0.try_into().unwrap_or(0),
        }
    }
}
