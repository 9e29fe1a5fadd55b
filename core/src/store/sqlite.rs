//! The SQLite backend: the embedded default. One file, WAL journal; writers serialise on
//! `BEGIN IMMEDIATE`, so ids commit in order without a lock table.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{
    Row, Sqlite,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use super::{
    Backend, DatabaseConfig, Store, StoreResult, duplicates_within, finish_batch, finish_chunk,
    from_db_id, insert_messages, page, statement_pieces, text, to_db_id,
};
use crate::domain::{
    Admin, Appended, ConversationId, ConversationSummary, Direction, MessageId, NewMessage, Origin,
    Reader, Scope, StoredMessage, TelegramLink, TelegramMode,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Columns of a message as [`message_from_row`] reads them, `m` = messages, `meta` =
/// sg_message_meta.
macro_rules! message_columns {
    () => {
        "m.id, m.cid, m.direction, m.aid, m.message, m.date, meta.origin"
    };
}

/// Store on a SQLite file.
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the file the URL names.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(config.url.expose())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(config.acquire_timeout());
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout())
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    async fn message_by_client_id(
        conn: &mut sqlx::SqliteConnection,
        conversation: ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM sg_message_meta meta JOIN messages m ON m.id = meta.message_id",
            " WHERE meta.cid = ? AND meta.client_msg_id = ?"
        ))
        .bind(to_db_id(conversation))
        .bind(client_msg_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }
}

fn message_from_row(row: &SqliteRow) -> StoreResult<StoredMessage> {
    let direction = Direction::from_code(row.try_get("direction")?);
    Ok(StoredMessage {
        id: from_db_id("messages.id", row.try_get("id")?)?,
        conversation_id: from_db_id("messages.cid", row.try_get("cid")?)?,
        direction,
        origin: Origin::from_code(row.try_get("origin")?, direction),
        admin_id: row.try_get("aid")?,
        text: text::from_column(row.try_get::<Option<&str>, _>("message")?),
        local_date: row.try_get("date")?,
    })
}

fn summary_from_row(row: &SqliteRow) -> StoreResult<ConversationSummary> {
    let last_message = match row.try_get::<Option<i64>, _>("id")? {
        Some(_) => Some(message_from_row(row)?),
        None => None,
    };
    Ok(ConversationSummary {
        conversation_id: from_db_id("sg_conversations.cid", row.try_get("conversation")?)?,
        last_message,
        unread_by_support: row
            .try_get::<i64, _>("unread_support")?
            .try_into()
            .unwrap_or(u32::MAX),
        unread_by_visitor: row
            .try_get::<i64, _>("unread_visitor")?
            .try_into()
            .unwrap_or(u32::MAX),
    })
}

fn link_from_row(row: &SqliteRow) -> StoreResult<TelegramLink> {
    Ok(TelegramLink {
        chat_id: row.try_get("chat_id")?,
        conversation_id: from_db_id("telegram.cid", row.try_get("cid")?)?,
        mode: TelegramMode::from_code(row.try_get("status")?),
        active: row.try_get::<i64, _>("active")? != 0,
    })
}

/// A conversation with its last message (joined as `m`/`meta`) and unread counts.
macro_rules! summary_select {
    () => {
        concat!(
            "SELECT c.cid AS conversation, ",
            message_columns!(),
            ", (SELECT COUNT(*) FROM messages u WHERE u.cid = c.cid AND u.direction = 1",
            " AND u.id > c.support_read_id) AS unread_support",
            ", (SELECT COUNT(*) FROM messages u WHERE u.cid = c.cid AND u.direction = 2",
            " AND u.id > c.visitor_read_id) AS unread_visitor",
            " FROM sg_conversations c",
            " LEFT JOIN messages m ON m.id = c.last_message_id",
            " LEFT JOIN sg_message_meta meta ON meta.message_id = m.id"
        )
    };
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        let repeats = duplicates_within(batch);
        // IMMEDIATE takes the write lock up front: ids are allocated and committed in order.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut out: Vec<Option<Appended>> = vec![None; batch.len()];
        let mut fresh = Vec::with_capacity(batch.len());
        for (i, (new, repeat)) in batch.iter().zip(&repeats).enumerate() {
            if repeat.is_some() {
                continue;
            }
            if let Some(key) = new.client_msg_id.as_deref()
                && let Some(message) =
                    Self::message_by_client_id(&mut tx, new.conversation_id, key).await?
            {
                out[i] = Some(Appended {
                    message,
                    duplicate: true,
                });
                continue;
            }
            fresh.push(i);
        }
        // Few statements per batch, not three per message: each statement is a round trip
        // to the connection's worker thread.
        for chunk in statement_pieces(&fresh) {
            let done = insert_messages::<Sqlite>(&mut tx, batch, chunk, None).await?;
            // One statement under the write lock with AUTOINCREMENT: the rows got consecutive
            // ids ending at the last one.
            let last = done.last_insert_rowid();
            let first = last - chunk.len() as i64 + 1;
            let ids: Vec<i64> = (first..=last).collect();
            finish_chunk::<Sqlite>(
                &mut tx,
                batch,
                chunk,
                &ids,
                &mut out,
                " ON CONFLICT (cid) DO UPDATE SET \
                 last_message_id = MAX(last_message_id, excluded.last_message_id)",
            )
            .await?;
        }
        tx.commit().await.map_err(super::StoreError::at_commit)?;
        Ok(finish_batch(out, repeats))
    }

    async fn messages_after(
        &self,
        scope: Scope,
        after: MessageId,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let rows = match scope {
            Scope::Conversation(conversation) => {
                sqlx::query(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages m LEFT JOIN sg_message_meta meta ON meta.message_id = m.id",
                    " WHERE m.cid = ? AND m.id > ? ORDER BY m.id LIMIT ?"
                ))
                .bind(to_db_id(conversation))
                .bind(to_db_id(after))
                .bind(page(limit))
                .fetch_all(&self.pool)
                .await?
            }
            Scope::All => {
                sqlx::query(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages m LEFT JOIN sg_message_meta meta ON meta.message_id = m.id",
                    " WHERE m.id > ? ORDER BY m.id LIMIT ?"
                ))
                .bind(to_db_id(after))
                .bind(page(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(message_from_row).collect()
    }

    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m LEFT JOIN sg_message_meta meta ON meta.message_id = m.id",
            " WHERE m.cid = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?"
        ))
        .bind(to_db_id(conversation))
        .bind(before.map_or(i64::MAX, to_db_id))
        .bind(page(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    async fn last_message_id(&self) -> StoreResult<MessageId> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM messages")
            .fetch_one(&self.pool)
            .await?;
        from_db_id("messages.id", id.unwrap_or(0))
    }

    async fn open_conversation(&self, conversation: ConversationId) -> StoreResult<bool> {
        let done = sqlx::query("INSERT OR IGNORE INTO sg_conversations (cid) VALUES (?)")
            .bind(to_db_id(conversation))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn conversation(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Option<ConversationSummary>> {
        let row = sqlx::query(concat!(summary_select!(), " WHERE c.cid = ?"))
            .bind(to_db_id(conversation))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(summary_from_row).transpose()
    }

    async fn conversations(
        &self,
        before_last: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>> {
        let rows = sqlx::query(concat!(
            summary_select!(),
            " WHERE c.last_message_id < ? ORDER BY c.last_message_id DESC, c.cid DESC LIMIT ?"
        ))
        .bind(before_last.map_or(i64::MAX, to_db_id))
        .bind(page(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn mark_read(
        &self,
        conversation: ConversationId,
        reader: Reader,
        up_to: MessageId,
    ) -> StoreResult<bool> {
        let sql = match reader {
            Reader::Support => {
                "UPDATE sg_conversations SET support_read_id = MAX(support_read_id, ?) \
                 WHERE cid = ?"
            }
            Reader::Visitor => {
                "UPDATE sg_conversations SET visitor_read_id = MAX(visitor_read_id, ?) \
                 WHERE cid = ?"
            }
        };
        let done = sqlx::query(sql)
            .bind(to_db_id(up_to))
            .bind(to_db_id(conversation))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn admins(&self) -> StoreResult<Vec<Admin>> {
        let rows =
            sqlx::query("SELECT aid, name, lid FROM adm_account WHERE aid <> '0' ORDER BY aid")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(Admin {
                    admin_id: row.try_get("aid")?,
                    name: row.try_get("name")?,
                    rights: row.try_get::<i64, _>("lid")?.try_into().unwrap_or(0),
                })
            })
            .collect()
    }

    async fn await_writers(&self) -> StoreResult<()> {
        super::await_writers(&self.pool, "BEGIN IMMEDIATE", None).await
    }

    async fn add_admin(&self, admin: &Admin) -> StoreResult<bool> {
        super::add_admin(&self.pool, admin, "INSERT", "ON CONFLICT (aid) DO NOTHING").await
    }

    async fn remove_admin(&self, admin_id: &str) -> StoreResult<bool> {
        super::remove_admin(&self.pool, admin_id).await
    }

    async fn telegram_link(&self, chat_id: i64) -> StoreResult<Option<TelegramLink>> {
        let row = sqlx::query(
            "SELECT chat_id, cid, status, active FROM telegram \
             WHERE chat_id = ? AND cid IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    async fn link_telegram(
        &self,
        chat_id: i64,
        conversation: ConversationId,
    ) -> StoreResult<TelegramLink> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM telegram WHERE chat_id = ? OR cid = ?")
            .bind(chat_id)
            .bind(to_db_id(conversation))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO telegram (cid, chat_id, status, active) VALUES (?, ?, 0, 1)")
            .bind(to_db_id(conversation))
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(TelegramLink {
            chat_id,
            conversation_id: conversation,
            mode: TelegramMode::Menu,
            active: true,
        })
    }

    async fn set_telegram_state(
        &self,
        chat_id: i64,
        mode: Option<TelegramMode>,
        active: Option<bool>,
    ) -> StoreResult<Option<TelegramLink>> {
        sqlx::query(
            "UPDATE telegram SET status = COALESCE(?, status), active = COALESCE(?, active) \
             WHERE chat_id = ?",
        )
        .bind(mode.map(TelegramMode::code))
        .bind(active.map(i32::from))
        .bind(chat_id)
        .execute(&self.pool)
        .await?;
        self.telegram_link(chat_id).await
    }

    async fn telegram_links(
        &self,
        conversation: Option<ConversationId>,
    ) -> StoreResult<Vec<TelegramLink>> {
        let rows = match conversation {
            Some(conversation) => {
                sqlx::query(
                    "SELECT chat_id, cid, status, active FROM telegram WHERE cid = ? \
                     ORDER BY chat_id",
                )
                .bind(to_db_id(conversation))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT chat_id, cid, status, active FROM telegram \
                     WHERE cid IS NOT NULL ORDER BY chat_id",
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(link_from_row).collect()
    }

    async fn reset_telegram_modes(&self) -> StoreResult<()> {
        sqlx::query("UPDATE telegram SET status = 0")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delivery_cursor(&self, consumer: &str, start: MessageId) -> StoreResult<MessageId> {
        sqlx::query(
            "INSERT INTO sg_delivery_cursors (consumer, message_id) VALUES (?, ?) \
             ON CONFLICT (consumer) DO NOTHING",
        )
        .bind(consumer)
        .bind(to_db_id(start))
        .execute(&self.pool)
        .await?;
        let id: i64 =
            sqlx::query_scalar("SELECT message_id FROM sg_delivery_cursors WHERE consumer = ?")
                .bind(consumer)
                .fetch_one(&self.pool)
                .await?;
        from_db_id("sg_delivery_cursors.message_id", id)
    }

    async fn advance_delivery_cursor(
        &self,
        consumer: &str,
        to: MessageId,
    ) -> StoreResult<MessageId> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sg_delivery_cursors (consumer, message_id) VALUES (?, ?) \
             ON CONFLICT (consumer) DO UPDATE SET \
             message_id = MAX(message_id, excluded.message_id) RETURNING message_id",
        )
        .bind(consumer)
        .bind(to_db_id(to))
        .fetch_one(&self.pool)
        .await?;
        from_db_id("sg_delivery_cursors.message_id", id)
    }

    async fn user_password(&self, user_id: u64) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT password FROM users WHERE id = ?")
                .bind(to_db_id(user_id))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
