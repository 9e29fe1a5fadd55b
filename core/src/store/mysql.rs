//! The MySQL/MariaDB backend: the legacy database the PHP admin shares (LEGACY.md §5, §6).
//!
//! The migrations create the legacy schema when the database is empty and otherwise adopt the
//! existing one (either variant) by adding to it. Writers serialise on a row lock of
//! `sg_write_lock`, so ids commit in increasing order across core replicas. `messages.date` is
//! a naive `DATETIME`: it is written and read back as the wall-clock value it is, never shifted.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{
    Connection, MySql, Row, ValueRef as _,
    mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow},
};

use super::{
    Backend, DatabaseConfig, Store, StoreError, StoreResult, duplicates_within, finish_batch,
    finish_chunk, from_db_id, insert_messages, page, redact_url, statement_pieces, text, to_db_id,
};
use crate::domain::{
    Admin, Appended, ConversationId, ConversationSummary, Direction, MessageId, NewMessage, Origin,
    Reader, Scope, StoredMessage, TelegramLink, TelegramMode,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");

/// MySQL's "unknown database" error number.
const ER_BAD_DB_ERROR: u16 = 1049;

/// Columns of a message as [`message_from_row`] reads them, `m` = messages, `meta` =
/// sg_message_meta.
macro_rules! message_columns {
    () => {
        "m.id, m.cid, m.direction, m.aid, m.message, m.date, meta.origin"
    };
}

/// Store on a MySQL or MariaDB database.
pub struct MySqlStore {
    pool: MySqlPool,
    /// Whether the adopted schema has the legacy foreign key `messages.cid -> users.id`
    /// (read once: migrations never add or drop it).
    cid_references_users: tokio::sync::OnceCell<bool>,
}

impl MySqlStore {
    /// Opens a pool on the database the URL names (`mysql://` or `mariadb://`), creating the
    /// database (utf8mb4) when it does not exist.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let url = config.url.expose();
        let url = match url.strip_prefix("mariadb:") {
            Some(rest) => format!("mysql:{rest}"),
            None => url.to_owned(),
        };
        // DATETIME is naive on the wire, so no session time zone shifts it; +00:00 also keeps
        // NOW() and any TIMESTAMP a replica might meet identical on every replica.
        let options = MySqlConnectOptions::from_str(&url)?.timezone(Some("+00:00".to_owned()));
        let pool_options = super::nodelay::on_connect(
            MySqlPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.acquire_timeout()),
            options.get_port(),
        );
        let pool = match pool_options.clone().connect_with(options.clone()).await {
            Err(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|e| e.number() == ER_BAD_DB_ERROR) =>
            {
                let name = options.get_database().unwrap_or_default().to_owned();
                create_database(&url, &name).await?;
                pool_options.connect_with(options).await?
            }
            other => other?,
        };
        Ok(Self {
            pool,
            cid_references_users: tokio::sync::OnceCell::new(),
        })
    }

    async fn message_by_client_id(
        conn: &mut MySqlConnection,
        conversation: ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        // A locking read sees the latest committed rows whatever the transaction's snapshot.
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM sg_message_meta meta JOIN messages m ON m.id = meta.message_id",
            " WHERE meta.cid = ? AND meta.client_msg_id = ? FOR UPDATE"
        ))
        .bind(to_db_id(conversation))
        .bind(client_msg_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn stored_cursor(&self, consumer: &str) -> StoreResult<MessageId> {
        let id: i64 =
            sqlx::query_scalar("SELECT message_id FROM sg_delivery_cursors WHERE consumer = ?")
                .bind(consumer.as_bytes())
                .fetch_one(&self.pool)
                .await?;
        from_db_id("sg_delivery_cursors.message_id", id)
    }

    /// Takes the row lock every writer takes first, for the rest of the transaction.
    async fn lock_writers(conn: &mut MySqlConnection) -> StoreResult<()> {
        sqlx::query(super::WRITE_LOCK)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Creates the database the URL names, connecting to its server without a database.
async fn create_database(url: &str, name: &str) -> StoreResult<()> {
    let mut server =
        url::Url::parse(url).map_err(|_| StoreError::UnsupportedUrl(redact_url(url)))?;
    server.set_path("");
    let mut conn = MySqlConnection::connect(server.as_str()).await?;
    // The name comes from the operator's configuration; quoted as an identifier.
    let sql = format!(
        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4",
        name.replace('`', "``")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Reads an id column whatever integer type it has: the legacy `INT UNSIGNED` (messages.id
/// and .cid, users.id, telegram.cid in the "with users" variant), the legacy signed `INT`
/// (telegram.cid otherwise) or the signed `BIGINT` of Socketgram's tables. sqlx decodes an
/// unsigned column only into an unsigned type, and a signed one only into a signed type.
fn id_from_row(row: &MySqlRow, index: &str, column: &'static str) -> StoreResult<Option<u64>> {
    let value = row.try_get_raw(index)?;
    if value.is_null() {
        Ok(None)
    } else if <u64 as sqlx::Type<MySql>>::compatible(&value.type_info()) {
        Ok(Some(row.try_get::<u64, _>(index)?))
    } else {
        from_db_id(column, row.try_get::<i64, _>(index)?).map(Some)
    }
}

/// [`id_from_row`] of a column that is never NULL.
fn required_id(row: &MySqlRow, index: &str, column: &'static str) -> StoreResult<u64> {
    id_from_row(row, index, column)?.ok_or(StoreError::Corrupt {
        column,
        value: "NULL".to_owned(),
    })
}

fn message_from_row(row: &MySqlRow) -> StoreResult<StoredMessage> {
    let direction = Direction::from_code(row.try_get("direction")?);
    Ok(StoredMessage {
        id: required_id(row, "id", "messages.id")?,
        conversation_id: required_id(row, "cid", "messages.cid")?,
        direction,
        origin: Origin::from_code(row.try_get("origin")?, direction),
        admin_id: row.try_get("aid")?,
        text: text::from_column(row.try_get::<Option<&str>, _>("message")?),
        local_date: row.try_get("date")?,
    })
}

fn summary_from_row(row: &MySqlRow) -> StoreResult<ConversationSummary> {
    let last_message = match id_from_row(row, "id", "messages.id")? {
        Some(_) => Some(message_from_row(row)?),
        None => None,
    };
    Ok(ConversationSummary {
        conversation_id: required_id(row, "conversation", "sg_conversations.cid")?,
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

fn link_from_row(row: &MySqlRow) -> StoreResult<TelegramLink> {
    Ok(TelegramLink {
        chat_id: row.try_get("chat_id")?,
        conversation_id: required_id(row, "cid", "telegram.cid")?,
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
impl Store for MySqlStore {
    fn backend(&self) -> Backend {
        Backend::MySql
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        let repeats = duplicates_within(batch);
        let mut tx = self.pool.begin().await?;
        // First of all: writers of every replica queue here, so ids commit in order.
        Self::lock_writers(&mut tx).await?;
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
        // A few statements per batch, not three per message: each is a round trip inside
        // the transaction that holds the write lock.
        for chunk in statement_pieces(&fresh) {
            let first = insert_messages::<MySql>(&mut tx, batch, chunk, None)
                .await?
                .last_insert_id();
            // LAST_INSERT_ID() is the first row's id. Under the write lock nobody else
            // inserts, and InnoDB numbers a statement's rows in order, so the chunk's ids are
            // the smallest ids from there on — read back rather than assuming them
            // consecutive (auto_increment_increment, lock mode 2).
            let ids: Vec<i64> =
                sqlx::query("SELECT id FROM messages WHERE id >= ? ORDER BY id LIMIT ?")
                    .bind(to_db_id(first))
                    .bind(chunk.len() as i64)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|row| {
                        id_from_row(row, "id", "messages.id")?.map(to_db_id).ok_or(
                            StoreError::Corrupt {
                                column: "messages.id",
                                value: "NULL".into(),
                            },
                        )
                    })
                    .collect::<StoreResult<_>>()?;
            if ids.len() != chunk.len() {
                return Err(StoreError::Corrupt {
                    column: "messages.id",
                    value: format!("{} ids read back for {} rows", ids.len(), chunk.len()),
                });
            }
            // VALUES(): MariaDB has no row alias; MySQL 8 still accepts it (deprecated).
            finish_chunk::<MySql>(
                &mut tx,
                batch,
                chunk,
                &ids,
                &mut out,
                " ON DUPLICATE KEY UPDATE \
                 last_message_id = GREATEST(last_message_id, VALUES(last_message_id))",
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::at_commit)?;
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
        let row = sqlx::query("SELECT MAX(id) AS id FROM messages")
            .fetch_one(&self.pool)
            .await?;
        Ok(id_from_row(&row, "id", "messages.id")?.unwrap_or(0))
    }

    async fn open_conversation(&self, conversation: ConversationId) -> StoreResult<bool> {
        let done = sqlx::query("INSERT IGNORE INTO sg_conversations (cid) VALUES (?)")
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
        // sqlx sets CLIENT_FOUND_ROWS: a matched row counts even when the mark did not move.
        let sql = match reader {
            Reader::Support => {
                "UPDATE sg_conversations SET support_read_id = GREATEST(support_read_id, ?) \
                 WHERE cid = ?"
            }
            Reader::Visitor => {
                "UPDATE sg_conversations SET visitor_read_id = GREATEST(visitor_read_id, ?) \
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
        // Byte order, as SQLite's BINARY collation sorts, not the column's _ci collation.
        let rows = sqlx::query(
            "SELECT aid, name, lid FROM adm_account WHERE aid <> '0' ORDER BY CAST(aid AS BINARY)",
        )
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
        super::await_writers(&self.pool, "BEGIN", Some(super::WRITE_LOCK)).await
    }

    async fn add_admin(&self, admin: &Admin) -> StoreResult<bool> {
        super::add_admin(&self.pool, admin, "INSERT IGNORE", "").await
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
        let mut tx = self.pool.begin().await?;
        // Serialised like every write: two logins of one chat cannot both insert a link.
        Self::lock_writers(&mut tx).await?;
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
        sqlx::query("INSERT IGNORE INTO sg_delivery_cursors (consumer, message_id) VALUES (?, ?)")
            .bind(consumer.as_bytes())
            .bind(to_db_id(start))
            .execute(&self.pool)
            .await?;
        self.stored_cursor(consumer).await
    }

    async fn advance_delivery_cursor(
        &self,
        consumer: &str,
        to: MessageId,
    ) -> StoreResult<MessageId> {
        sqlx::query(
            "INSERT INTO sg_delivery_cursors (consumer, message_id) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE message_id = GREATEST(message_id, VALUES(message_id))",
        )
        .bind(consumer.as_bytes())
        .bind(to_db_id(to))
        .execute(&self.pool)
        .await?;
        self.stored_cursor(consumer).await
    }

    async fn visitor_exists(&self, conversation: ConversationId) -> StoreResult<bool> {
        let needs_user = self
            .cid_references_users
            .get_or_try_init(|| async {
                let references: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages' \
                     AND COLUMN_NAME = 'cid' AND REFERENCED_TABLE_NAME = 'users'",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok::<_, StoreError>(references > 0)
            })
            .await?;
        if !*needs_user {
            return Ok(true);
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = ?")
            .bind(to_db_id(conversation))
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn user_password(&self, user_id: u64) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT password FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
