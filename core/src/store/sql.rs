//! The one implementation of [`Store`]: every query, written once for all backends and
//! generic over the sqlx database. What a backend says differently comes from its
//! [`Dialect`]; rows are read into the types of [`super::rows`].

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use chrono::NaiveDateTime;
use sqlx::{
    ColumnIndex, Decode, Encode, Executor, Pool, QueryBuilder, Row as _, Type,
    query_builder::Separated,
};

use super::batch::{
    Chunk, KeyStored, duplicates_within, finish_batch, latest_per_conversation, statement_pieces,
    stored,
};
use super::dialect::RowsAffected as _;
use super::rows::{
    AdminRow, AttachmentRow, CannedReplyRow, ContextColumns, ErasureRow, Int, LeaseRow, LinkRow,
    MessageRow, NoteRow, SummaryRow,
};
use super::write_tx::WriteTx;
use super::{Backend, Dialect, Store, StoreError, StoreResult, from_db_id, page, text, to_db_id};
use crate::domain::{
    Admin, AdminSession, Appended, Assigned, AssigneeFilter, Attachment, AttachmentId, CannedReply,
    Committed, ConversationFilter, ConversationId, ConversationSummary, Direction, Erasure, Lease,
    MessageId, NewMessage, Note, Page, Reader, Scope, Status, StatusKind, StoredMessage,
    TelegramLink, TelegramMode, VisitorContext, Vouched, part_json,
};

/// Columns of a message as [`MessageRow`] reads them, `m` = messages, `meta` =
/// sg_message_meta.
macro_rules! message_columns {
    () => {
        "m.id, m.cid, m.direction, m.aid, m.message, m.date, meta.origin, meta.files, \
         meta.client_msg_id"
    };
}

/// Messages with their origin, to be followed by a condition.
const MESSAGES_WHERE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m LEFT JOIN sg_message_meta meta ON meta.message_id = m.id WHERE "
);

/// A visitor's context as [`ContextColumns`] reads it, `vc` = sg_visitor_context.
macro_rules! context_columns {
    () => {
        "vc.verified AS context_verified, vc.page AS context_page, \
         vc.updated_at_ms AS context_updated_at_ms"
    };
}

/// A conversation with its last message (joined as `m`/`meta`) and unread counts, as
/// [`SummaryRow`] reads it, to be followed by a condition.
const SUMMARY_WHERE: &str = concat!(
    "SELECT c.cid AS conversation, ",
    message_columns!(),
    ", (SELECT COUNT(*) FROM messages u WHERE u.cid = c.cid AND u.direction = 1",
    " AND u.id > c.support_read_id) AS unread_support",
    ", (SELECT COUNT(*) FROM messages u WHERE u.cid = c.cid AND u.direction = 2",
    " AND u.id > c.visitor_read_id) AS unread_visitor",
    ", c.support_read_id, c.visitor_read_id, c.assignee, c.status, c.snoozed_until_ms",
    ", (SELECT COUNT(*) FROM telegram t WHERE t.cid = c.cid) AS telegram_links, ",
    context_columns!(),
    " FROM sg_conversations c",
    " LEFT JOIN messages m ON m.id = c.last_message_id",
    " LEFT JOIN sg_message_meta meta ON meta.message_id = m.id",
    " LEFT JOIN sg_visitor_context vc ON vc.cid = c.cid WHERE "
);

/// Files as [`AttachmentRow`] reads them, to be followed by a condition.
const ATTACHMENTS_WHERE: &str = "SELECT id, cid, message_id, name, content_type, size, sha256, \
     width, height, storage_key, thumbnail_key, thumbnail_type, thumbnail_size, uploaded_by, \
     created_at_ms FROM sg_attachments WHERE ";

/// Canned replies as [`CannedReplyRow`] reads them, to be followed by a condition.
const CANNED_REPLIES: &str =
    "SELECT shortcut, text, updated_by, updated_at_ms FROM sg_canned_replies";

/// Notes as [`NoteRow`] reads them, to be followed by a condition.
const NOTES: &str = "SELECT id, cid, aid, text, created_at_ms FROM sg_notes";

/// Links of `telegram` as [`LinkRow`] reads them, to be followed by a condition.
const LINKS_WHERE: &str = "SELECT chat_id, cid, status, active FROM telegram WHERE ";

/// Store on a database of any backend.
pub struct SqlStore<DB: Dialect> {
    pool: Pool<DB>,
    schema: DB::Schema,
}

impl<DB: Dialect> SqlStore<DB> {
    /// The store on an open pool.
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        Self::with_schema(pool, DB::Schema::default())
    }

    /// The store on an open pool, with what its backend keeps beside it.
    pub(crate) fn with_schema(pool: Pool<DB>, schema: DB::Schema) -> Self {
        Self { pool, schema }
    }

    /// Messages of rows read, with their files.
    async fn read_messages(&self, rows: Vec<MessageRow>) -> StoreResult<Vec<StoredMessage>>
    where
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'r> &'r str: ColumnIndex<DB::Row>,
        i64: for<'q> Encode<'q, DB> + for<'q> Decode<'q, DB> + Type<DB>,
        String: for<'q> Decode<'q, DB> + Type<DB>,
        Option<String>: for<'q> Decode<'q, DB>,
    {
        let with_files: Vec<bool> = rows.iter().map(MessageRow::has_files).collect();
        let mut messages = messages(rows)?;
        let needing = messages
            .iter_mut()
            .zip(with_files)
            .filter_map(|(m, files)| files.then_some(m))
            .collect();
        self.fill_files(needing).await?;
        Ok(messages)
    }

    /// Conversations of rows read, their last messages with their files.
    async fn read_summaries(&self, rows: Vec<SummaryRow>) -> StoreResult<Vec<ConversationSummary>>
    where
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'r> &'r str: ColumnIndex<DB::Row>,
        i64: for<'q> Encode<'q, DB> + for<'q> Decode<'q, DB> + Type<DB>,
        String: for<'q> Decode<'q, DB> + Type<DB>,
        Option<String>: for<'q> Decode<'q, DB>,
    {
        let with_files: Vec<bool> = rows.iter().map(SummaryRow::last_has_files).collect();
        let mut summaries = rows
            .into_iter()
            .map(ConversationSummary::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        let needing = summaries
            .iter_mut()
            .zip(with_files)
            .filter_map(|(c, files)| files.then_some(c.last_message.as_mut()).flatten())
            .collect();
        self.fill_files(needing).await?;
        Ok(summaries)
    }

    /// Reads the files of messages that have some (`sg_message_meta.files`), and takes their
    /// lines off the text (see [`text::with_files`]).
    async fn fill_files(&self, messages: Vec<&mut StoredMessage>) -> StoreResult<()>
    where
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'r> &'r str: ColumnIndex<DB::Row>,
        i64: for<'q> Encode<'q, DB> + for<'q> Decode<'q, DB> + Type<DB>,
        String: for<'q> Decode<'q, DB> + Type<DB>,
        Option<String>: for<'q> Decode<'q, DB>,
    {
        if messages.is_empty() {
            return Ok(());
        }
        let mut query = QueryBuilder::<DB>::new(ATTACHMENTS_WHERE);
        query.push("message_id IN (");
        let mut ids = query.separated(", ");
        for m in &messages {
            ids.push_bind(to_db_id(m.id));
        }
        query.push(") ORDER BY message_id, position");
        let rows: Vec<AttachmentRow> = query.build_query_as().fetch_all(&self.pool).await?;
        let mut files: HashMap<MessageId, Vec<Attachment>> = HashMap::new();
        for row in rows {
            let file = Attachment::try_from(row)?;
            files
                .entry(file.message_id.unwrap_or_default())
                .or_default()
                .push(file);
        }
        for m in messages {
            if let Some(files) = files.remove(&m.id) {
                m.text = text::without_files(std::mem::take(&mut m.text), &files);
                m.attachments = files;
            }
        }
        Ok(())
    }

    /// Files read by a condition the caller pushed after [`ATTACHMENTS_WHERE`].
    async fn attachments_where(&self, mut query: QueryBuilder<DB>) -> StoreResult<Vec<Attachment>>
    where
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'r> &'r str: ColumnIndex<DB::Row>,
        i64: for<'q> Decode<'q, DB> + Type<DB>,
        String: for<'q> Decode<'q, DB> + Type<DB>,
        Option<String>: for<'q> Decode<'q, DB>,
    {
        let rows: Vec<AttachmentRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(Attachment::try_from).collect()
    }

    /// Writes a consumer's delivery cursor: creates it at `to` when missing, and when
    /// `advance`, moves an existing one to `to` if that is further. Returns the cursor as
    /// stored afterwards.
    async fn write_cursor(
        &self,
        consumer: &str,
        to: MessageId,
        advance: bool,
    ) -> StoreResult<MessageId>
    where
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        i64: for<'q> Encode<'q, DB> + for<'q> Decode<'q, DB> + Type<DB>,
        String: for<'q> Encode<'q, DB> + Type<DB>,
    {
        let (insert, on_conflict) = if advance {
            let raise = DB::raise_on_conflict("sg_delivery_cursors", "consumer", "message_id");
            ("INSERT", raise)
        } else {
            DB::insert_or_skip("consumer")
        };
        let mut write = QueryBuilder::<DB>::new(insert);
        write.push(" INTO sg_delivery_cursors (consumer, message_id) VALUES (");
        write
            .separated(", ")
            .push_bind(consumer.to_owned())
            .push_bind(to_db_id(to));
        write.push(")").push(on_conflict);
        let id: Int = if advance && DB::RETURNING {
            write.push(" RETURNING message_id");
            write.build_query_scalar().fetch_one(&self.pool).await?
        } else {
            write.build().execute(&self.pool).await?;
            let mut read = QueryBuilder::<DB>::new(
                "SELECT message_id FROM sg_delivery_cursors WHERE consumer = ",
            );
            read.push_bind(consumer.to_owned());
            read.build_query_scalar().fetch_one(&self.pool).await?
        };
        from_db_id("sg_delivery_cursors.message_id", id.0)
    }
}

/// Opens a writer's transaction (see [`WriteTx::begin`]) and reads the greatest stored id
/// under its lock, in the same query: the batch's predecessor.
async fn begin_batch<DB>(pool: &Pool<DB>) -> StoreResult<(WriteTx<DB>, u64)>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    i64: for<'q> Decode<'q, DB> + Type<DB>,
{
    // Not MAX(id): MySQL gives an aggregate of its unsigned ids as DECIMAL. The second column
    // tells its row from the lock's.
    let newest = format!(
        "SELECT id, 1 FROM messages ORDER BY id DESC LIMIT 1{}",
        DB::LOCKING_READ
    );
    let (tx, rows) = WriteTx::begin(pool, &newest).await?;
    let newest = match rows.iter().find(|row| row.len() == 2) {
        Some(row) => from_db_id("messages.id", row.try_get::<Int, _>(0)?.0)?,
        None => 0,
    };
    Ok((tx, newest))
}

/// The columns of `messages` a new message fills, in the order [`push_message`] binds them.
pub(crate) const MESSAGE_COLUMNS: &str =
    "cid, aid, direction, date, message, check_msg, check_msg_admin";

/// Binds the [`MESSAGE_COLUMNS`] of `new` (HTML-escaped text, the legacy `direction` and
/// `check_msg*` columns).
pub(crate) fn push_message<DB>(row: &mut Separated<'_, DB, &'static str>, new: &NewMessage)
where
    DB: Dialect,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    i32: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    NaiveDateTime: for<'t> Encode<'t, DB> + Type<DB>,
{
    let to_support = new.origin.direction() == Direction::ToSupport;
    row.push_bind(to_db_id(new.conversation_id))
        .push_bind(new.admin_id.clone())
        .push_bind(new.origin.direction().code())
        .push_bind(new.local_date)
        .push_bind(text::to_column(&text::with_files(
            &new.text,
            &new.attachments,
        )))
        .push_bind(i32::from(to_support))
        .push_bind(i32::from(!to_support));
}

/// Inserts a chunk of a batch into `messages` in one statement, numbered by the table.
pub(crate) async fn insert_messages<DB>(
    conn: &mut DB::Connection,
    chunk: Chunk<'_>,
) -> StoreResult<DB::QueryResult>
where
    DB: Dialect,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    i32: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    NaiveDateTime: for<'t> Encode<'t, DB> + Type<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut insert = QueryBuilder::<DB>::new(format!("INSERT INTO messages ({MESSAGE_COLUMNS}) "));
    insert.push_values(chunk.rows, |mut row, &i| {
        push_message(&mut row, &chunk.batch[i])
    });
    Ok(insert.build().execute(&mut *conn).await?)
}

/// The rest of [`Dialect::store_chunk`] once the chunk's messages are in under `ids`, for a
/// backend that writes it statement by statement: their `sg_message_meta` rows, then each
/// conversation's last message id.
pub(crate) async fn insert_meta_and_latest<DB>(
    conn: &mut DB::Connection,
    chunk: Chunk<'_>,
    ids: Vec<i64>,
) -> StoreResult<Result<Vec<i64>, KeyStored>>
where
    DB: Dialect,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    i32: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut meta = QueryBuilder::<DB>::new(
        "INSERT INTO sg_message_meta (message_id, cid, origin, client_msg_id, files) ",
    );
    meta.push_values(chunk.rows.iter().zip(&ids), |mut row, (&i, &id)| {
        let new = &chunk.batch[i];
        row.push_bind(id)
            .push_bind(to_db_id(new.conversation_id))
            .push_bind(new.origin.code())
            .push_bind(new.client_msg_id.clone())
            .push_bind(new.attachments.len() as i32);
    });
    match meta.build().execute(&mut *conn).await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(Err(KeyStored)),
        done => done?,
    };
    for (&i, &id) in chunk.rows.iter().zip(&ids) {
        attach_files::<DB>(conn, &chunk.batch[i], id).await?;
    }
    let latest = latest_per_conversation(chunk, &ids);
    let on_conflict = conversations_upsert::<DB>();
    for part in statement_pieces(&latest) {
        let mut upsert = QueryBuilder::<DB>::new(
            "INSERT INTO sg_conversations (cid, last_message_id, last_visitor_message_id) ",
        );
        upsert.push_values(part, |mut row, latest| {
            row.push_bind(to_db_id(latest.conversation))
                .push_bind(latest.message)
                .push_bind(latest.visitor_message);
        });
        upsert.push(&on_conflict);
        upsert.build().execute(&mut *conn).await?;
    }
    Ok(Ok(ids))
}

/// Gives a new message its files: uploads of its conversation that no message took yet
/// (the core checked them before queueing the message; one taken meanwhile by another
/// message, on another replica, stays with that one).
async fn attach_files<DB>(
    conn: &mut DB::Connection,
    new: &NewMessage,
    message_id: i64,
) -> StoreResult<()>
where
    DB: Dialect,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    i32: for<'t> Encode<'t, DB> + Type<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    for (position, file) in new.attachments.iter().enumerate() {
        let mut attach = QueryBuilder::<DB>::new("UPDATE sg_attachments SET message_id = ");
        attach
            .push_bind(message_id)
            .push(", position = ")
            .push_bind(position as i32)
            .push(" WHERE id = ")
            .push_bind(to_db_id(file.id))
            .push(" AND cid = ")
            .push_bind(to_db_id(new.conversation_id))
            .push(" AND message_id IS NULL");
        attach.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// What follows the `VALUES` of the writer's upsert of `sg_conversations`: the last message
/// ids only move forward, and a visitor's message reopens a resolved or snoozed conversation
/// in the same statement (no read of the status under the write lock).
fn conversations_upsert<DB: Dialect>() -> String {
    let greatest = DB::GREATEST;
    let visitor_wrote = format!("{} > 0", DB::inserted("last_visitor_message_id"));
    format!(
        "{head}last_message_id = {greatest}(sg_conversations.last_message_id, {last}), \
         last_visitor_message_id = {greatest}(sg_conversations.last_visitor_message_id, {visitor}), \
         snoozed_until_ms = CASE WHEN {visitor_wrote} THEN NULL \
         ELSE sg_conversations.snoozed_until_ms END, \
         status = CASE WHEN {visitor_wrote} AND sg_conversations.status IN ({resolved}, {snoozed}) \
         THEN {open} ELSE sg_conversations.status END",
        head = DB::on_conflict_update("cid"),
        last = DB::inserted("last_message_id"),
        visitor = DB::inserted("last_visitor_message_id"),
        resolved = StatusKind::Resolved.code(),
        snoozed = StatusKind::Snoozed.code(),
        open = StatusKind::Open.code(),
    )
}

/// Ends a query with one page of its rows whose `id` is smaller than `before` (all when
/// `None`), in `order`.
fn page_before<DB>(
    query: &mut QueryBuilder<DB>,
    id: &str,
    before: Option<MessageId>,
    order: &str,
    limit: u32,
) where
    DB: Dialect,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    query
        .push(format_args!("{id} < "))
        .push_bind(before.map_or(i64::MAX, to_db_id))
        .push(format_args!(" ORDER BY {order} LIMIT "))
        .push_bind(i64::from(page(limit)));
}

/// Continues a listing's condition with "found by `text`, and": by visitor id (when it is
/// one), by what the host site vouched for, or by a message's text; a substring,
/// case-insensitively (LIKE with its wildcards escaped, on lowered text: ASCII letters only on
/// SQLite, whose LOWER is).
/// Messages are scanned, not indexed: fine for a team's search box, not for analytics.
fn push_text_filter<DB>(query: &mut QueryBuilder<DB>, text: &str)
where
    DB: Dialect,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let escaped: String = text
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '!' => vec!['!', c],
            c => vec![c],
        })
        .collect();
    let pattern = format!("%{escaped}%");
    query.push("(");
    if let Ok(cid) = text.parse::<u64>() {
        query.push("c.cid = ").push_bind(to_db_id(cid)).push(" OR ");
    }
    query
        .push("LOWER(vc.verified) LIKE ")
        .push_bind(pattern.clone())
        .push(" ESCAPE '!' OR c.cid IN (SELECT s.cid FROM messages s WHERE LOWER(s.message) LIKE ")
        .push_bind(pattern)
        .push(" ESCAPE '!')) AND ");
}

/// Continues a listing's condition with "one of these statuses, and" (a snooze that ran out
/// counts as open, as [`Status::from_row`] reads it).
fn push_status_filter<DB>(query: &mut QueryBuilder<DB>, statuses: &[StatusKind])
where
    DB: Dialect,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let now = chrono::Utc::now().timestamp_millis();
    let snoozed = StatusKind::Snoozed.code();
    query.push("(");
    for (i, kind) in statuses.iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        match kind {
            StatusKind::Open => {
                query
                    .push(format_args!(
                        "(c.status NOT IN ({pending}, {resolved}, {snoozed}) OR \
                         (c.status = {snoozed} AND (c.snoozed_until_ms IS NULL \
                         OR c.snoozed_until_ms <= ",
                        pending = StatusKind::Pending.code(),
                        resolved = StatusKind::Resolved.code(),
                    ))
                    .push_bind(now)
                    .push(")))");
            }
            StatusKind::Pending | StatusKind::Resolved => {
                query.push(format_args!("c.status = {}", kind.code()));
            }
            StatusKind::Snoozed => {
                query
                    .push(format_args!(
                        "(c.status = {snoozed} AND c.snoozed_until_ms > "
                    ))
                    .push_bind(now)
                    .push(")");
            }
        }
    }
    query.push(") AND ");
}

/// The conversations of `batch` in which one of its client message ids (but its repeats') is
/// stored already, read for the whole batch in a few statements under the write lock: almost
/// every send carries one (the edges make one up), and the exact lookup, a round trip per
/// message, is then only made where it can find something. (Conversations, not the keys
/// themselves: MySQL's legacy-side column is binary, which would not decode as text.)
async fn conversations_with_stored_keys<DB>(
    tx: &mut WriteTx<DB>,
    batch: &[NewMessage],
    repeats: &[Option<usize>],
) -> StoreResult<std::collections::HashSet<ConversationId>>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    i64: for<'q> Encode<'q, DB> + for<'q> Decode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let keyed: Vec<usize> = (0..batch.len())
        .filter(|&i| repeats[i].is_none() && batch[i].client_msg_id.is_some())
        .collect();
    let mut found = std::collections::HashSet::new();
    for piece in statement_pieces(&keyed) {
        let mut query = QueryBuilder::<DB>::new(
            "SELECT meta.cid FROM sg_message_meta meta WHERE (meta.cid, meta.client_msg_id) IN ",
        );
        query.push_tuples(piece, |mut row, &i| {
            row.push_bind(to_db_id(batch[i].conversation_id))
                .push_bind(batch[i].client_msg_id.clone().unwrap_or_default());
        });
        query.push(DB::LOCKING_READ);
        let cids: Vec<Int> = query.build_query_scalar().fetch_all(&mut **tx).await?;
        for cid in cids {
            found.insert(from_db_id("sg_message_meta.cid", cid.0)?);
        }
    }
    Ok(found)
}

/// The messages of rows read.
fn messages(rows: Vec<MessageRow>) -> StoreResult<Vec<StoredMessage>> {
    rows.into_iter().map(StoredMessage::try_from).collect()
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    i64: for<'q> Encode<'q, DB> + for<'q> Decode<'q, DB> + Type<DB>,
    i32: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i32>: for<'q> Encode<'q, DB>,
    Option<i64>: for<'q> Encode<'q, DB>,
    String: for<'q> Encode<'q, DB> + for<'q> Decode<'q, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB>,
    NaiveDateTime: for<'q> Decode<'q, DB> + Type<DB>,
{
    fn backend(&self) -> Backend {
        DB::BACKEND
    }

    #[tracing::instrument(skip_all, name = "store.migrate")]
    async fn migrate(&self) -> StoreResult<()> {
        DB::MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "store.append", fields(batch = batch.len()))]
    async fn commit_batch(&self, batch: &[NewMessage]) -> StoreResult<Committed> {
        let repeats = duplicates_within(batch);
        // Almost every send carries a client message id (the edges make one up) and almost
        // none repeats a stored one: a batch is stored without looking its keys up first, and
        // the unique index on (cid, client_msg_id) catches a repeat. Then the transaction is
        // rolled back and the batch stored again, looking up first. That saves a round trip
        // under the write lock for every batch but the rare one that holds a retry.
        let mut look_up_first = false;
        'attempt: loop {
            // First of all: writers of every replica queue here, so ids are allocated and
            // committed in the same order.
            // Under the lock, every writer before this one has committed: the greatest id now is
            // the batch's predecessor (what a replica checks it has seen before taking the batch).
            let (mut tx, newest) = begin_batch(&self.pool).await?;
            let mut out: Vec<Option<Appended>> = vec![None; batch.len()];
            let mut files_of_repeat = std::collections::HashSet::new();
            let mut fresh = Vec::with_capacity(batch.len());
            let known = if look_up_first {
                conversations_with_stored_keys(&mut tx, batch, &repeats).await?
            } else {
                std::collections::HashSet::new()
            };
            for (i, (new, repeat)) in batch.iter().zip(&repeats).enumerate() {
                if repeat.is_some() {
                    continue;
                }
                let key = new.client_msg_id.as_deref();
                if let Some(key) = key.filter(|_| known.contains(&new.conversation_id)) {
                    let mut query = QueryBuilder::<DB>::new(concat!(
                        "SELECT ",
                        message_columns!(),
                        " FROM sg_message_meta meta JOIN messages m ON m.id = meta.message_id",
                        " WHERE meta.cid = "
                    ));
                    query
                        .push_bind(to_db_id(new.conversation_id))
                        .push(" AND meta.client_msg_id = ")
                        .push_bind(key.to_owned())
                        .push(DB::LOCKING_READ);
                    let found: Option<MessageRow> =
                        query.build_query_as().fetch_optional(&mut *tx).await?;
                    if let Some(row) = found {
                        if row.has_files() {
                            files_of_repeat.insert(from_db_id("messages.id", row.id())?);
                        }
                        out[i] = Some(Appended {
                            message: row.try_into()?,
                            duplicate: true,
                        });
                        continue;
                    }
                }
                fresh.push(i);
            }
            let prev = if fresh.is_empty() { 0 } else { newest };
            // A statement or a few per chunk, not three per message: each is a round trip
            // inside the transaction that holds the write lock.
            for rows in statement_pieces(&fresh) {
                let chunk = Chunk { batch, rows };
                let ids = match DB::store_chunk(&mut tx, &self.schema, chunk).await? {
                    Ok(ids) => ids,
                    Err(KeyStored) if !look_up_first => {
                        tx.rollback().await?;
                        look_up_first = true;
                        continue 'attempt;
                    }
                    Err(KeyStored) => {
                        return Err(StoreError::Constraint(
                            "a client message id looked up as new is stored already".into(),
                        ));
                    }
                };
                for (&i, &id) in rows.iter().zip(&ids) {
                    out[i] = Some(stored(&batch[i], id)?);
                }
            }
            tx.commit().await?;
            let mut appended = finish_batch(out, repeats);
            // A repeat of a stored message with files answers with them, as the first did.
            let repeats_with_files = appended
                .iter_mut()
                .filter(|a| a.duplicate && files_of_repeat.contains(&a.message.id))
                .map(|a| &mut a.message)
                .collect();
            self.fill_files(repeats_with_files).await?;
            return Ok(Committed { prev, appended });
        }
    }

    #[tracing::instrument(skip_all, name = "store.messages_after")]
    async fn messages_after(
        &self,
        scope: Scope,
        after: MessageId,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let mut query = QueryBuilder::<DB>::new(MESSAGES_WHERE);
        if let Scope::Conversation(conversation) = scope {
            query
                .push("m.cid = ")
                .push_bind(to_db_id(conversation))
                .push(" AND ");
        }
        query
            .push("m.id > ")
            .push_bind(to_db_id(after))
            .push(" ORDER BY m.id LIMIT ")
            .push_bind(i64::from(page(limit)));
        self.read_messages(query.build_query_as().fetch_all(&self.pool).await?)
            .await
    }

    #[tracing::instrument(skip_all, name = "store.history", fields(conversation = conversation))]
    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let mut query = QueryBuilder::<DB>::new(MESSAGES_WHERE);
        query.push("m.cid = ").push_bind(to_db_id(conversation));
        page_before(query.push(" AND "), "m.id", before, "m.id DESC", limit);
        self.read_messages(query.build_query_as().fetch_all(&self.pool).await?)
            .await
    }

    #[tracing::instrument(skip_all, name = "store.last_message_id")]
    async fn last_message_id(&self) -> StoreResult<MessageId> {
        let id: Option<Int> = sqlx::query_scalar("SELECT MAX(id) AS id FROM messages")
            .fetch_one(&self.pool)
            .await?;
        from_db_id("messages.id", id.map_or(0, |id| id.0))
    }

    #[tracing::instrument(skip_all, name = "store.await_writers")]
    async fn await_writers(&self) -> StoreResult<()> {
        WriteTx::begin(&self.pool, "").await?.0.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "store.open_conversation", fields(conversation = conversation))]
    async fn open_conversation(&self, conversation: ConversationId) -> StoreResult<bool> {
        let (insert, on_conflict) = DB::insert_or_skip("cid");
        let mut query = QueryBuilder::<DB>::new(insert);
        query
            .push(" INTO sg_conversations (cid) VALUES (")
            .push_bind(to_db_id(conversation))
            .push(")")
            .push(on_conflict);
        let done = query.build().execute(&self.pool).await?;
        Ok(done.rows() > 0)
    }

    #[tracing::instrument(skip_all, name = "store.conversation", fields(conversation = conversation))]
    async fn conversation(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Option<ConversationSummary>> {
        let mut query = QueryBuilder::<DB>::new(SUMMARY_WHERE);
        query.push("c.cid = ").push_bind(to_db_id(conversation));
        let row: Option<SummaryRow> = query.build_query_as().fetch_optional(&self.pool).await?;
        Ok(self.read_summaries(row.into_iter().collect()).await?.pop())
    }

    #[tracing::instrument(skip_all, name = "store.conversations")]
    async fn conversations(
        &self,
        before_last: Option<MessageId>,
        limit: u32,
        filter: &ConversationFilter,
    ) -> StoreResult<Vec<ConversationSummary>> {
        let mut query = QueryBuilder::<DB>::new(SUMMARY_WHERE);
        match &filter.assignee {
            AssigneeFilter::Any => {}
            AssigneeFilter::Nobody => {
                query.push("c.assignee IS NULL AND ");
            }
            AssigneeFilter::Admin(admin) => {
                query
                    .push("c.assignee = ")
                    .push_bind(admin.clone())
                    .push(" AND ");
            }
        }
        if !filter.statuses.is_empty() {
            push_status_filter(&mut query, &filter.statuses);
        }
        if let Some(text) = filter
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            push_text_filter(&mut query, text);
        }
        let order = "c.last_message_id DESC, c.cid DESC";
        page_before(&mut query, "c.last_message_id", before_last, order, limit);
        let rows: Vec<SummaryRow> = query.build_query_as().fetch_all(&self.pool).await?;
        self.read_summaries(rows).await
    }

    #[tracing::instrument(skip_all, name = "store.set_status", fields(conversation = conversation))]
    async fn set_status(&self, conversation: ConversationId, status: Status) -> StoreResult<bool> {
        let mut query = QueryBuilder::<DB>::new("UPDATE sg_conversations SET status = ");
        query.push_bind(status.code()).push(", snoozed_until_ms = ");
        match status {
            Status::Snoozed { until_ms } => query.push_bind(until_ms),
            _ => query.push("NULL"),
        };
        query
            .push(" WHERE cid = ")
            .push_bind(to_db_id(conversation));
        // A matched row counts even when nothing changed (MySQL: CLIENT_FOUND_ROWS).
        Ok(query.build().execute(&self.pool).await?.rows() > 0)
    }

    #[tracing::instrument(skip_all, name = "store.end_snooze", fields(conversation = conversation))]
    async fn end_snooze(&self, conversation: ConversationId, until_ms: i64) -> StoreResult<bool> {
        let mut query = QueryBuilder::<DB>::new("UPDATE sg_conversations SET status = ");
        query
            .push_bind(StatusKind::Open.code())
            .push(", snoozed_until_ms = NULL WHERE cid = ")
            .push_bind(to_db_id(conversation))
            .push(" AND status = ")
            .push_bind(StatusKind::Snoozed.code())
            .push(" AND snoozed_until_ms = ")
            .push_bind(until_ms);
        Ok(query.build().execute(&self.pool).await?.rows() > 0)
    }

    #[tracing::instrument(skip_all, name = "store.reopenable")]
    async fn reopenable(&self) -> StoreResult<Vec<(ConversationId, Status)>> {
        let mut query =
            QueryBuilder::<DB>::new("SELECT cid, status, snoozed_until_ms FROM sg_conversations");
        query
            .push(" WHERE status IN (")
            .push_bind(StatusKind::Resolved.code())
            .push(", ")
            .push_bind(StatusKind::Snoozed.code())
            .push(")");
        let rows: Vec<(Int, Int, Option<Int>)> =
            query.build_query_as().fetch_all(&self.pool).await?;
        let mut found = Vec::with_capacity(rows.len());
        for (cid, code, until) in rows {
            let conversation = from_db_id("sg_conversations.cid", cid.0)?;
            // A snooze that ran out while no core ran is still to be ended: keep its time.
            let status = match (code.0, until) {
                (3, Some(until)) => Status::Snoozed { until_ms: until.0 },
                (code, until) => Status::from_row(code, until.map(|t| t.0), i64::MIN),
            };
            found.push((conversation, status));
        }
        Ok(found)
    }

    #[tracing::instrument(skip_all, name = "store.mark_read", fields(conversation = conversation))]
    async fn mark_read(
        &self,
        conversation: ConversationId,
        reader: Reader,
        up_to: MessageId,
    ) -> StoreResult<bool> {
        let column = match reader {
            Reader::Support => "support_read_id",
            Reader::Visitor => "visitor_read_id",
        };
        let mut query = QueryBuilder::<DB>::new(format!(
            "UPDATE sg_conversations SET {column} = {}({column}, ",
            DB::GREATEST
        ));
        query
            .push_bind(to_db_id(up_to))
            .push(") WHERE cid = ")
            .push_bind(to_db_id(conversation));
        // A matched row counts even when the mark did not move (MySQL: sqlx sets
        // CLIENT_FOUND_ROWS).
        let done = query.build().execute(&self.pool).await?;
        Ok(done.rows() > 0)
    }

    #[tracing::instrument(skip_all, name = "store.admins")]
    async fn admins(&self) -> StoreResult<Vec<Admin>> {
        let sql = format!(
            "SELECT aid, name, lid FROM adm_account WHERE aid <> '0' ORDER BY {}",
            DB::byte_order("aid")
        );
        let rows: Vec<AdminRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Admin::from).collect())
    }

    #[tracing::instrument(skip_all, name = "store.add_admin")]
    async fn add_admin(&self, admin: &Admin) -> StoreResult<bool> {
        let (insert, on_conflict) = DB::insert_or_skip("aid");
        let mut query = QueryBuilder::<DB>::new(insert);
        query.push(" INTO adm_account (aid, name, lid) VALUES (");
        query
            .separated(", ")
            .push_bind(admin.admin_id.clone())
            .push_bind(admin.name.clone())
            .push_bind(admin.rights);
        query.push(")").push(on_conflict);
        let done = query.build().execute(&self.pool).await?;
        Ok(done.rows() > 0)
    }

    #[tracing::instrument(skip_all, name = "store.remove_admin")]
    async fn remove_admin(&self, admin_id: &str) -> StoreResult<bool> {
        // The placeholder row '0' is never removed.
        let mut query = QueryBuilder::<DB>::new("DELETE FROM adm_account WHERE aid = ");
        query.push_bind(admin_id.to_owned()).push(" AND aid <> '0'");
        let done = query.build().execute(&self.pool).await?;
        if done.rows() == 0 {
            return Ok(false);
        }
        // After the admin's row: an admin who cannot be removed keeps their password.
        for table in [
            "sg_admin_passwords",
            "sg_admin_sessions",
            "sg_admin_telegram",
        ] {
            let mut forget = QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE aid = "));
            forget.push_bind(admin_id.to_owned());
            forget.build().execute(&self.pool).await?;
        }
        Ok(true)
    }

    #[tracing::instrument(skip_all, name = "store.put_admin_password")]
    async fn put_admin_password(&self, admin_id: &str, hash: &str) -> StoreResult<()> {
        let mut put = QueryBuilder::<DB>::new(
            "INSERT INTO sg_admin_passwords (aid, hash, updated_at_ms) VALUES (",
        );
        put.push_bind(admin_id.to_owned())
            .push(", ")
            .push_bind(hash.to_owned())
            .push(format_args!(", {})", DB::NOW_MS))
            .push(DB::replace_on_conflict("aid", &["hash", "updated_at_ms"]));
        put.build().execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "store.admin_password")]
    async fn admin_password(&self, admin_id: &str) -> StoreResult<Option<String>> {
        let mut query = QueryBuilder::<DB>::new("SELECT hash FROM sg_admin_passwords WHERE aid = ");
        query.push_bind(admin_id.to_owned());
        Ok(query
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await?)
    }

    #[tracing::instrument(skip_all, name = "store.admins_with_password")]
    async fn admins_with_password(&self) -> StoreResult<Vec<String>> {
        let mut query = QueryBuilder::<DB>::new(format!(
            "SELECT aid FROM sg_admin_passwords ORDER BY {}",
            DB::byte_order("aid")
        ));
        Ok(query.build_query_scalar().fetch_all(&self.pool).await?)
    }

    #[tracing::instrument(skip_all, name = "store.create_admin_session")]
    async fn create_admin_session(&self, session: &AdminSession) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let mut forget = QueryBuilder::<DB>::new("DELETE FROM sg_admin_sessions WHERE aid = ");
        forget
            .push_bind(session.admin_id.clone())
            .push(" AND expires_at_ms < ")
            .push_bind(session.created_at_ms);
        forget.build().execute(&mut *tx).await?;
        let mut put = QueryBuilder::<DB>::new(
            "INSERT INTO sg_admin_sessions (id, aid, created_at_ms, expires_at_ms) VALUES (",
        );
        put.push_bind(session.id.clone())
            .push(", ")
            .push_bind(session.admin_id.clone())
            .push(", ")
            .push_bind(session.created_at_ms)
            .push(", ")
            .push_bind(session.expires_at_ms)
            .push(")");
        put.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "store.admin_session")]
    async fn admin_session(&self, id: &str) -> StoreResult<Option<AdminSession>> {
        let mut query = QueryBuilder::<DB>::new(
            "SELECT id, aid, created_at_ms, expires_at_ms FROM sg_admin_sessions WHERE id = ",
        );
        query.push_bind(id.to_owned());
        let row: Option<(String, String, Int, Int)> =
            query.build_query_as().fetch_optional(&self.pool).await?;
        Ok(row.map(|(id, admin_id, created, expires)| AdminSession {
            id,
            admin_id,
            created_at_ms: created.0,
            expires_at_ms: expires.0,
        }))
    }

    #[tracing::instrument(skip_all, name = "store.end_admin_session")]
    async fn end_admin_session(&self, id: &str) -> StoreResult<bool> {
        let mut end = QueryBuilder::<DB>::new("DELETE FROM sg_admin_sessions WHERE id = ");
        end.push_bind(id.to_owned());
        Ok(end.build().execute(&self.pool).await?.rows() > 0)
    }

    #[tracing::instrument(skip_all, name = "store.end_admin_sessions")]
    async fn end_admin_sessions(&self, admin_id: &str) -> StoreResult<u64> {
        let mut end = QueryBuilder::<DB>::new("DELETE FROM sg_admin_sessions WHERE aid = ");
        end.push_bind(admin_id.to_owned());
        Ok(end.build().execute(&self.pool).await?.rows())
    }

    #[tracing::instrument(skip_all, name = "store.telegram_link", fields(chat_id = chat_id))]
    async fn telegram_link(&self, chat_id: i64) -> StoreResult<Option<TelegramLink>> {
        let mut query = QueryBuilder::<DB>::new(LINKS_WHERE);
        query
            .push("chat_id = ")
            .push_bind(chat_id)
            .push(" AND cid IS NOT NULL ORDER BY id DESC LIMIT 1");
        let row: Option<LinkRow> = query.build_query_as().fetch_optional(&self.pool).await?;
        row.map(TelegramLink::try_from).transpose()
    }

    #[tracing::instrument(skip_all, name = "store.link_telegram", fields(conversation = conversation, chat_id = chat_id))]
    async fn link_telegram(
        &self,
        chat_id: i64,
        conversation: ConversationId,
    ) -> StoreResult<TelegramLink> {
        // Serialised like every write: two logins of one chat cannot both insert a link.
        let (mut tx, _) = WriteTx::begin(&self.pool, "").await?;
        let mut delete = QueryBuilder::<DB>::new("DELETE FROM telegram WHERE chat_id = ");
        delete
            .push_bind(chat_id)
            .push(" OR cid = ")
            .push_bind(to_db_id(conversation));
        delete.build().execute(&mut *tx).await?;
        let mut insert =
            QueryBuilder::<DB>::new("INSERT INTO telegram (cid, chat_id, status, active) VALUES (");
        insert
            .push_bind(to_db_id(conversation))
            .push(", ")
            .push_bind(chat_id)
            .push(", 0, 1)");
        insert.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(TelegramLink {
            chat_id,
            conversation_id: conversation,
            mode: TelegramMode::Menu,
            active: true,
        })
    }

    #[tracing::instrument(skip_all, name = "store.set_telegram_state", fields(chat_id = chat_id))]
    async fn set_telegram_state(
        &self,
        chat_id: i64,
        mode: Option<TelegramMode>,
        active: Option<bool>,
    ) -> StoreResult<Option<TelegramLink>> {
        let mut query = QueryBuilder::<DB>::new("UPDATE telegram SET status = COALESCE(");
        query
            .push_bind(mode.map(TelegramMode::code))
            .push(", status), active = COALESCE(")
            .push_bind(active.map(i32::from))
            .push(", active) WHERE chat_id = ")
            .push_bind(chat_id);
        query.build().execute(&self.pool).await?;
        self.telegram_link(chat_id).await
    }

    #[tracing::instrument(skip_all, name = "store.telegram_links")]
    async fn telegram_links(
        &self,
        conversation: Option<ConversationId>,
    ) -> StoreResult<Vec<TelegramLink>> {
        let mut query = QueryBuilder::<DB>::new(LINKS_WHERE);
        match conversation {
            Some(conversation) => query.push("cid = ").push_bind(to_db_id(conversation)),
            None => query.push("cid IS NOT NULL"),
        };
        query.push(" ORDER BY chat_id");
        let rows: Vec<LinkRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(TelegramLink::try_from).collect()
    }

    #[tracing::instrument(skip_all, name = "store.reset_telegram_modes")]
    async fn reset_telegram_modes(&self) -> StoreResult<()> {
        sqlx::query("UPDATE telegram SET status = 0")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "store.create_link_token", fields(conversation = conversation))]
    async fn create_link_token(
        &self,
        id: &str,
        conversation: ConversationId,
        ttl: Duration,
    ) -> StoreResult<i64> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        // The database's clock, read once: the sweep and the expiry agree with the redeem's
        // condition whichever core replica makes or redeems the token. No transaction around
        // the statements (as for leases): on MySQL the sweep's gap locks would make concurrent
        // creates deadlock on their inserts, and nothing needs the two to be one.
        let mut clock = QueryBuilder::<DB>::new(format!("SELECT {} AS now_ms", DB::NOW_MS));
        let now: Int = clock.build_query_scalar().fetch_one(&self.pool).await?;
        let expires_at_ms = now.0.saturating_add(ttl_ms);
        let mut sweep =
            QueryBuilder::<DB>::new("DELETE FROM sg_telegram_link_tokens WHERE expires_at_ms <= ");
        sweep.push_bind(now.0);
        sweep.build().execute(&self.pool).await?;
        let mut put = QueryBuilder::<DB>::new(
            "INSERT INTO sg_telegram_link_tokens (id, cid, expires_at_ms) ",
        );
        put.push_values([()], |mut row, ()| {
            row.push_bind(id.to_owned())
                .push_bind(to_db_id(conversation))
                .push_bind(expires_at_ms);
        });
        put.build().execute(&self.pool).await?;
        Ok(expires_at_ms)
    }

    #[tracing::instrument(skip_all, name = "store.take_link_token")]
    async fn take_link_token(&self, id: &str) -> StoreResult<Option<ConversationId>> {
        // An id's conversation never changes (the id is the digest of a fresh random secret,
        // stored once), so it may be read before the statement that decides.
        let mut read =
            QueryBuilder::<DB>::new("SELECT cid FROM sg_telegram_link_tokens WHERE id = ");
        read.push_bind(id.to_owned());
        let cid: Option<Int> = read.build_query_scalar().fetch_optional(&self.pool).await?;
        let Some(cid) = cid else {
            return Ok(None);
        };
        // The one statement that decides: it deletes the row only while the token lasts. Of
        // concurrent takers one deletes it; the others wait for its row lock (MySQL,
        // PostgreSQL) or for the one writer (SQLite), then find nothing to delete.
        let mut take = QueryBuilder::<DB>::new("DELETE FROM sg_telegram_link_tokens WHERE id = ");
        take.push_bind(id.to_owned())
            .push(format_args!(" AND expires_at_ms > {}", DB::NOW_MS));
        if take.build().execute(&self.pool).await?.rows() != 1 {
            return Ok(None);
        }
        Ok(Some(from_db_id("sg_telegram_link_tokens.cid", cid.0)?))
    }

    #[tracing::instrument(skip_all, name = "store.delivery_cursor")]
    async fn delivery_cursor(&self, consumer: &str, start: MessageId) -> StoreResult<MessageId> {
        self.write_cursor(consumer, start, false).await
    }

    #[tracing::instrument(skip_all, name = "store.advance_delivery_cursor")]
    async fn advance_delivery_cursor(
        &self,
        consumer: &str,
        to: MessageId,
    ) -> StoreResult<MessageId> {
        self.write_cursor(consumer, to, true).await
    }

    #[tracing::instrument(skip_all, name = "store.acquire_lease", fields(name = name, holder = holder))]
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<Lease> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let now = DB::NOW_MS;
        // One UPDATE decides a renewal or a takeover: it locks the row and evaluates the
        // condition on the latest committed version (PostgreSQL re-checks it after waiting
        // for a concurrent writer, InnoDB reads the latest version, SQLite has one writer), so
        // of concurrent acquirers one matches and the others then see a lease that runs.
        // No transaction around the three statements: MySQL's gap locks would deadlock
        // concurrent first acquirers, and each statement alone is atomic.
        let mut renew = QueryBuilder::<DB>::new("UPDATE sg_leases SET holder = ");
        renew
            .push_bind(holder.to_owned())
            .push(format_args!(", expires_at_ms = {now} + "))
            .push_bind(ttl_ms)
            .push(" WHERE name = ")
            .push_bind(name.to_owned())
            .push(" AND (holder = ")
            .push_bind(holder.to_owned())
            .push(format_args!(" OR expires_at_ms <= {now})"));
        // MySQL counts matched rows here (sqlx asks for CLIENT_FOUND_ROWS), so a renewal
        // within the same millisecond counts too.
        let mut renewed = renew.build().execute(&self.pool).await?.rows() == 1;
        if !renewed {
            // No row (first use, or released): the first insert wins, the others are skipped.
            let (insert, on_conflict) = DB::insert_or_skip("name");
            let mut create = QueryBuilder::<DB>::new(insert);
            create
                .push(" INTO sg_leases (name, holder, expires_at_ms) VALUES (")
                .push_bind(name.to_owned())
                .push(", ")
                .push_bind(holder.to_owned())
                .push(format_args!(", {now} + "))
                .push_bind(ttl_ms)
                .push(")")
                .push(on_conflict);
            renewed = create.build().execute(&self.pool).await?.rows() == 1;
        }
        let mut read = QueryBuilder::<DB>::new(format!(
            "SELECT holder, expires_at_ms, {now} AS now_ms FROM sg_leases WHERE name = "
        ));
        read.push_bind(name.to_owned());
        let row: Option<LeaseRow> = read.build_query_as().fetch_optional(&self.pool).await?;
        Ok(LeaseRow::lease(row, name, holder, renewed))
    }

    #[tracing::instrument(skip_all, name = "store.release_lease", fields(name = name, holder = holder))]
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let mut release = QueryBuilder::<DB>::new("DELETE FROM sg_leases WHERE name = ");
        release
            .push_bind(name.to_owned())
            .push(" AND holder = ")
            .push_bind(holder.to_owned());
        Ok(release.build().execute(&self.pool).await?.rows() == 1)
    }

    #[tracing::instrument(skip_all, name = "store.canned_replies")]
    async fn canned_replies(&self, prefix: &str) -> StoreResult<Vec<CannedReply>> {
        // A team has a bounded few (the core limits them): read all, in byte order whatever
        // the column's collation, and keep those with the prefix here rather than trust a
        // collation's idea of a range or LIKE's wildcards ('_' is one).
        let rows: Vec<CannedReplyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{CANNED_REPLIES} ORDER BY {}",
            DB::byte_order("shortcut")
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(CannedReply::from)
            .filter(|r| r.shortcut.starts_with(prefix))
            .collect())
    }

    #[tracing::instrument(skip_all, name = "store.canned_reply_count")]
    async fn canned_reply_count(&self, shortcut: &str) -> StoreResult<(u64, bool)> {
        let mut count = QueryBuilder::<DB>::new("SELECT COUNT(*), COUNT(CASE WHEN shortcut = ");
        count
            .push_bind(shortcut.to_owned())
            .push(" THEN 1 END) FROM sg_canned_replies");
        let (all, this): (Int, Int) = count.build_query_as().fetch_one(&self.pool).await?;
        Ok((from_db_id("COUNT(*)", all.0)?, this.0 > 0))
    }

    #[tracing::instrument(skip_all, name = "store.put_canned_reply", fields(shortcut = shortcut))]
    async fn put_canned_reply(
        &self,
        shortcut: &str,
        text: &str,
        updated_by: &str,
    ) -> StoreResult<CannedReply> {
        let mut put = QueryBuilder::<DB>::new(
            "INSERT INTO sg_canned_replies (shortcut, text, updated_by, updated_at_ms) VALUES (",
        );
        put.push_bind(shortcut.to_owned())
            .push(", ")
            .push_bind(text.to_owned())
            .push(", ")
            .push_bind(updated_by.to_owned())
            .push(format_args!(", {})", DB::NOW_MS))
            .push(DB::replace_on_conflict(
                "shortcut",
                &["text", "updated_by", "updated_at_ms"],
            ));
        put.build().execute(&self.pool).await?;
        let mut read = QueryBuilder::<DB>::new(format!("{CANNED_REPLIES} WHERE shortcut = "));
        read.push_bind(shortcut.to_owned());
        let row: CannedReplyRow = read.build_query_as().fetch_one(&self.pool).await?;
        Ok(row.into())
    }

    #[tracing::instrument(skip_all, name = "store.delete_canned_reply", fields(shortcut = shortcut))]
    async fn delete_canned_reply(&self, shortcut: &str) -> StoreResult<bool> {
        let mut delete = QueryBuilder::<DB>::new("DELETE FROM sg_canned_replies WHERE shortcut = ");
        delete.push_bind(shortcut.to_owned());
        Ok(delete.build().execute(&self.pool).await?.rows() == 1)
    }

    #[tracing::instrument(skip_all, name = "store.add_note", fields(conversation = conversation))]
    async fn add_note(
        &self,
        conversation: ConversationId,
        admin_id: &str,
        text: &str,
        key: &str,
    ) -> StoreResult<Note> {
        let mut add = QueryBuilder::<DB>::new(
            "INSERT INTO sg_notes (cid, aid, text, created_at_ms, note_key) VALUES (",
        );
        add.push_bind(to_db_id(conversation))
            .push(", ")
            .push_bind(admin_id.to_owned())
            .push(", ")
            .push_bind(text.to_owned())
            .push(format_args!(", {}, ", DB::NOW_MS))
            .push_bind(key.to_owned())
            .push(")");
        add.build().execute(&self.pool).await?;
        // Read back by its key: the backends tell a new row's id each its own way.
        let mut read = QueryBuilder::<DB>::new(format!("{NOTES} WHERE note_key = "));
        read.push_bind(key.to_owned());
        let row: NoteRow = read.build_query_as().fetch_one(&self.pool).await?;
        row.try_into()
    }

    #[tracing::instrument(skip_all, name = "store.notes", fields(conversation = conversation))]
    async fn notes(&self, conversation: ConversationId) -> StoreResult<Vec<Note>> {
        let mut query = QueryBuilder::<DB>::new(format!("{NOTES} WHERE cid = "));
        query.push_bind(to_db_id(conversation)).push(" ORDER BY id");
        let rows: Vec<NoteRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(Note::try_from).collect()
    }

    #[tracing::instrument(skip_all, name = "store.assign", fields(conversation = conversation))]
    async fn assign(
        &self,
        conversation: ConversationId,
        assignee: Option<&str>,
        only_if_unassigned: bool,
    ) -> StoreResult<Assigned> {
        // Twice at most: a take that finds it freed between its update and its read tries again.
        for _ in 0..2 {
            let mut update = QueryBuilder::<DB>::new("UPDATE sg_conversations SET assignee = ");
            update
                .push_bind(assignee.map(str::to_owned))
                .push(" WHERE cid = ")
                .push_bind(to_db_id(conversation));
            if only_if_unassigned {
                update.push(" AND assignee IS NULL");
            }
            // MySQL counts matched rows (CLIENT_FOUND_ROWS): the same assignee again counts.
            if update.build().execute(&self.pool).await?.rows() == 1 {
                return Ok(Assigned::Done);
            }
            match self.conversation(conversation).await? {
                None => return Ok(Assigned::Unknown),
                Some(ConversationSummary {
                    assignee: Some(holder),
                    ..
                }) => return Ok(Assigned::Taken(holder)),
                Some(_) => {}
            }
        }
        Err(StoreError::Constraint(
            "the conversation's assignee changed during the take; try again".into(),
        ))
    }

    #[tracing::instrument(skip_all, name = "store.open_assigned_counts")]
    async fn open_assigned_counts(&self) -> StoreResult<HashMap<String, u64>> {
        let mut query = QueryBuilder::<DB>::new(
            "SELECT assignee, COUNT(*) FROM sg_conversations WHERE assignee IS NOT NULL AND status IN (",
        );
        query
            .push_bind(StatusKind::Open.code())
            .push(", ")
            .push_bind(StatusKind::Pending.code())
            .push(") GROUP BY assignee");
        let rows: Vec<(String, Int)> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(admin, n)| Ok((admin, from_db_id("COUNT(*)", n.0)?)))
            .collect()
    }

    #[tracing::instrument(skip_all, name = "store.erase_conversation", fields(conversation = conversation))]
    async fn erase_conversation(
        &self,
        conversation: ConversationId,
        erased_by: &str,
    ) -> StoreResult<Erasure> {
        // Under the write lock: no batch of the writer interleaves with the deletes.
        let (mut tx, _) = WriteTx::begin(&self.pool, "").await?;
        let cid = to_db_id(conversation);
        let mut deleted = [0u64; 2];
        for (table, count) in [
            ("sg_message_meta", None),
            ("sg_attachments", None),
            ("messages", Some(0)),
            ("sg_notes", Some(1)),
            ("telegram", None),
            ("sg_telegram_link_tokens", None),
            ("sg_staff_topics", None),
            ("sg_visitor_context", None),
            ("sg_conversations", None),
        ] {
            let mut delete = QueryBuilder::<DB>::new(format!("DELETE FROM {table} WHERE cid = "));
            delete.push_bind(cid);
            let rows = delete.build().execute(&mut *tx).await?.rows();
            if let Some(i) = count {
                deleted[i] = rows;
            }
        }
        let mut record = QueryBuilder::<DB>::new(
            "INSERT INTO sg_erasures (cid, erased_by, erased_at_ms, messages, notes) VALUES (",
        );
        record
            .push_bind(cid)
            .push(", ")
            .push_bind(erased_by.to_owned())
            .push(format_args!(", {}, ", DB::NOW_MS))
            .push_bind(to_db_id(deleted[0]))
            .push(", ")
            .push_bind(to_db_id(deleted[1]))
            .push(")");
        record.build().execute(&mut *tx).await?;
        tx.commit().await?;
        self.erasures(conversation)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt {
                column: "sg_erasures",
                value: "the erasure just recorded is not there".into(),
            })
    }

    #[tracing::instrument(skip_all, name = "store.visitor_context", fields(conversation = conversation))]
    async fn visitor_context(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Option<VisitorContext>> {
        let mut query = QueryBuilder::<DB>::new(concat!(
            "SELECT ",
            context_columns!(),
            " FROM sg_visitor_context vc WHERE vc.cid = "
        ));
        query.push_bind(to_db_id(conversation));
        let row: Option<ContextColumns> = query.build_query_as().fetch_optional(&self.pool).await?;
        Ok(row.map(ContextColumns::read).transpose()?.flatten())
    }

    #[tracing::instrument(skip_all, name = "store.put_visitor_context", fields(conversation = conversation))]
    async fn put_visitor_context(
        &self,
        conversation: ConversationId,
        verified: Option<&Vouched>,
        page: Option<&Page>,
    ) -> StoreResult<VisitorContext> {
        let mut put = QueryBuilder::<DB>::new(
            "INSERT INTO sg_visitor_context (cid, verified, page, updated_at_ms) VALUES (",
        );
        put.push_bind(to_db_id(conversation))
            .push(", ")
            .push_bind(verified.map(part_json))
            .push(", ")
            .push_bind(page.map(part_json))
            .push(format_args!(", {})", DB::NOW_MS))
            .push(DB::on_conflict_update("cid"));
        // A part left out keeps what is stored.
        for column in ["verified", "page"] {
            put.push(format_args!(
                "{column} = COALESCE({}, sg_visitor_context.{column}), ",
                DB::inserted(column)
            ));
        }
        put.push(format_args!(
            "updated_at_ms = {}",
            DB::inserted("updated_at_ms")
        ));
        put.build().execute(&self.pool).await?;
        self.visitor_context(conversation)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                column: "sg_visitor_context",
                value: "the context just stored is not there".into(),
            })
    }

    #[tracing::instrument(skip_all, name = "store.add_attachment", fields(conversation = attachment.conversation_id))]
    async fn add_attachment(&self, attachment: &Attachment) -> StoreResult<Attachment> {
        let mut add = QueryBuilder::<DB>::new(
            "INSERT INTO sg_attachments (cid, name, content_type, size, sha256, width, height, \
             storage_key, thumbnail_key, thumbnail_type, thumbnail_size, uploaded_by, \
             created_at_ms) ",
        );
        let thumbnail = attachment.thumbnail.as_ref();
        add.push_values([attachment], |mut row, a| {
            row.push_bind(to_db_id(a.conversation_id))
                .push_bind(a.name.clone())
                .push_bind(a.content_type.clone())
                .push_bind(to_db_id(a.size))
                .push_bind(a.sha256.clone())
                .push_bind(i64::from(a.width))
                .push_bind(i64::from(a.height))
                .push_bind(a.key.clone())
                .push_bind(thumbnail.map(|t| t.key.clone()))
                .push_bind(thumbnail.map(|t| t.content_type.clone()))
                .push_bind(thumbnail.map(|t| to_db_id(t.size)))
                .push_bind(a.uploaded_by.clone())
                .push_bind(a.created_at_ms);
        });
        add.build().execute(&self.pool).await?;
        // Read back by its key: the backends tell a new row's id each its own way.
        let mut read = QueryBuilder::<DB>::new(ATTACHMENTS_WHERE);
        read.push("storage_key = ")
            .push_bind(attachment.key.clone());
        self.attachments_where(read)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt {
                column: "sg_attachments",
                value: "the file just recorded is not there".into(),
            })
    }

    #[tracing::instrument(skip_all, name = "store.client_message", fields(conversation = conversation))]
    async fn client_message(
        &self,
        conversation: ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<MessageId>> {
        let mut query =
            QueryBuilder::<DB>::new("SELECT message_id FROM sg_message_meta WHERE cid = ");
        query
            .push_bind(to_db_id(conversation))
            .push(" AND client_msg_id = ")
            .push_bind(client_msg_id.to_owned());
        let id: Option<Int> = query
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await?;
        id.map(|id| from_db_id("sg_message_meta.message_id", id.0))
            .transpose()
    }

    #[tracing::instrument(skip_all, name = "store.attachment", fields(id = id))]
    async fn attachment(&self, id: AttachmentId) -> StoreResult<Option<Attachment>> {
        let mut query = QueryBuilder::<DB>::new(ATTACHMENTS_WHERE);
        query.push("id = ").push_bind(to_db_id(id));
        Ok(self.attachments_where(query).await?.pop())
    }

    #[tracing::instrument(skip_all, name = "store.conversation_attachments", fields(conversation = conversation))]
    async fn conversation_attachments(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Vec<Attachment>> {
        let mut query = QueryBuilder::<DB>::new(ATTACHMENTS_WHERE);
        query
            .push("cid = ")
            .push_bind(to_db_id(conversation))
            .push(" ORDER BY id");
        self.attachments_where(query).await
    }

    #[tracing::instrument(skip_all, name = "store.unattached_count", fields(conversation = conversation))]
    async fn unattached_count(&self, conversation: ConversationId) -> StoreResult<u64> {
        let mut query = QueryBuilder::<DB>::new(
            "SELECT COUNT(*) FROM sg_attachments WHERE message_id IS NULL AND cid = ",
        );
        query.push_bind(to_db_id(conversation));
        let n: Int = query.build_query_scalar().fetch_one(&self.pool).await?;
        from_db_id("COUNT(*)", n.0)
    }

    #[tracing::instrument(skip_all, name = "store.unattached")]
    async fn unattached(&self, before_ms: i64) -> StoreResult<Vec<Attachment>> {
        let mut query = QueryBuilder::<DB>::new(ATTACHMENTS_WHERE);
        query
            .push("message_id IS NULL AND created_at_ms < ")
            .push_bind(before_ms)
            .push(" ORDER BY id LIMIT 1000");
        self.attachments_where(query).await
    }

    #[tracing::instrument(skip_all, name = "store.delete_unattached", fields(files = ids.len()))]
    async fn delete_unattached(&self, ids: &[AttachmentId]) -> StoreResult<Vec<AttachmentId>> {
        let mut deleted = Vec::with_capacity(ids.len());
        // One by one: each delete says whether the row was still waiting, so a file attached
        // meanwhile keeps its bytes.
        for &id in ids {
            let mut delete = QueryBuilder::<DB>::new(
                "DELETE FROM sg_attachments WHERE message_id IS NULL AND id = ",
            );
            delete.push_bind(to_db_id(id));
            if delete.build().execute(&self.pool).await?.rows() > 0 {
                deleted.push(id);
            }
        }
        Ok(deleted)
    }

    #[tracing::instrument(skip_all, name = "store.attachment_keys")]
    async fn attachment_keys(&self) -> StoreResult<std::collections::HashSet<String>> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT storage_key, thumbnail_key FROM sg_attachments")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .flat_map(|(key, thumbnail)| std::iter::once(key).chain(thumbnail))
            .collect())
    }

    #[tracing::instrument(skip_all, name = "store.link_admin_telegram")]
    async fn link_admin_telegram(
        &self,
        admin_id: &str,
        telegram_user: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let mut forget = QueryBuilder::<DB>::new("DELETE FROM sg_admin_telegram WHERE aid = ");
        forget.push_bind(admin_id.to_owned());
        if let Some(user) = telegram_user {
            forget.push(" OR telegram_user_id = ").push_bind(user);
        }
        forget.build().execute(&mut *tx).await?;
        if let Some(user) = telegram_user {
            let mut put = QueryBuilder::<DB>::new(
                "INSERT INTO sg_admin_telegram (aid, telegram_user_id) VALUES (",
            );
            put.push_bind(admin_id.to_owned())
                .push(", ")
                .push_bind(user)
                .push(")");
            put.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "store.telegram_staff")]
    async fn telegram_staff(&self, telegram_user: i64) -> StoreResult<Option<String>> {
        let mut query =
            QueryBuilder::<DB>::new("SELECT aid FROM sg_admin_telegram WHERE telegram_user_id = ");
        query.push_bind(telegram_user);
        Ok(query
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await?)
    }

    #[tracing::instrument(skip_all, name = "store.admin_telegram_users")]
    async fn admin_telegram_users(&self) -> StoreResult<HashMap<String, i64>> {
        let rows: Vec<(String, Int)> =
            sqlx::query_as("SELECT aid, telegram_user_id FROM sg_admin_telegram")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(aid, user)| (aid, user.0)).collect())
    }

    #[tracing::instrument(skip_all, name = "store.staff_topic", fields(conversation = conversation))]
    async fn staff_topic(
        &self,
        chat_id: i64,
        conversation: ConversationId,
    ) -> StoreResult<Option<i64>> {
        let mut query =
            QueryBuilder::<DB>::new("SELECT thread_id FROM sg_staff_topics WHERE chat_id = ");
        query
            .push_bind(chat_id)
            .push(" AND cid = ")
            .push_bind(to_db_id(conversation));
        let thread: Option<Int> = query
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await?;
        Ok(thread.map(|t| t.0))
    }

    #[tracing::instrument(skip_all, name = "store.staff_topic_conversation")]
    async fn staff_topic_conversation(
        &self,
        chat_id: i64,
        thread_id: i64,
    ) -> StoreResult<Option<ConversationId>> {
        let mut query = QueryBuilder::<DB>::new("SELECT cid FROM sg_staff_topics WHERE chat_id = ");
        query
            .push_bind(chat_id)
            .push(" AND thread_id = ")
            .push_bind(thread_id);
        let cid: Option<Int> = query
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await?;
        cid.map(|c| from_db_id("sg_staff_topics.cid", c.0))
            .transpose()
    }

    #[tracing::instrument(skip_all, name = "store.put_staff_topic", fields(conversation = conversation))]
    async fn put_staff_topic(
        &self,
        chat_id: i64,
        conversation: ConversationId,
        thread_id: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let mut forget = QueryBuilder::<DB>::new("DELETE FROM sg_staff_topics WHERE chat_id = ");
        forget
            .push_bind(chat_id)
            .push(" AND (cid = ")
            .push_bind(to_db_id(conversation))
            .push(" OR thread_id = ")
            .push_bind(thread_id)
            .push(")");
        forget.build().execute(&mut *tx).await?;
        let mut put =
            QueryBuilder::<DB>::new("INSERT INTO sg_staff_topics (chat_id, cid, thread_id) ");
        put.push_values([()], |mut row, ()| {
            row.push_bind(chat_id)
                .push_bind(to_db_id(conversation))
                .push_bind(thread_id);
        });
        put.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, name = "store.erasures", fields(conversation = conversation))]
    async fn erasures(&self, conversation: ConversationId) -> StoreResult<Vec<Erasure>> {
        let mut query = QueryBuilder::<DB>::new(
            "SELECT cid, erased_by, erased_at_ms, messages, notes FROM sg_erasures WHERE cid = ",
        );
        query.push_bind(to_db_id(conversation)).push(" ORDER BY id");
        let rows: Vec<ErasureRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(Erasure::try_from).collect()
    }

    #[tracing::instrument(skip_all, name = "store.visitor_exists", fields(conversation = conversation))]
    async fn visitor_exists(&self, conversation: ConversationId) -> StoreResult<bool> {
        DB::visitor_exists(&self.pool, &self.schema, conversation).await
    }

    #[tracing::instrument(skip_all, name = "store.user_password")]
    async fn user_password(&self, user_id: u64) -> StoreResult<Option<String>> {
        let mut query = QueryBuilder::<DB>::new("SELECT password FROM users WHERE id = ");
        query.push_bind(to_db_id(user_id));
        Ok(query
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await?)
    }

    fn pool_stats(&self) -> super::PoolStats {
        super::PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle(),
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
