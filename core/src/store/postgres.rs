//! The PostgreSQL backend. The legacy schema in PostgreSQL terms (BIGINT ids, `TIMESTAMP(0)`
//! dates); writers serialise on a row lock of `sg_write_lock`, so ids commit in increasing
//! order across core replicas.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{
    Connection, Postgres, Row,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
};

use super::{
    Backend, DatabaseConfig, Store, StoreResult, duplicates_within, finish_batch, finish_chunk,
    from_db_id, insert_messages, page, statement_pieces, text, to_db_id,
};
use crate::domain::{
    Admin, Appended, ConversationId, ConversationSummary, Direction, MessageId, NewMessage, Origin,
    Reader, Scope, StoredMessage, TelegramLink, TelegramMode,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// SQLSTATE of "database does not exist".
const INVALID_CATALOG_NAME: &str = "3D000";
/// SQLSTATE of "database already exists".
const DUPLICATE_DATABASE: &str = "42P04";
/// SQLSTATE of a unique violation: two `CREATE DATABASE` of one name racing in the catalog.
const UNIQUE_VIOLATION: &str = "23505";

/// The database to connect to in order to create the configured one.
const MAINTENANCE_DATABASE: &str = "postgres";

/// Columns of a message as [`message_from_row`] reads them, `m` = messages, `meta` =
/// sg_message_meta.
macro_rules! message_columns {
    () => {
        "m.id, m.cid, m.direction, m.aid, m.message, m.date, meta.origin"
    };
}

/// Store on a PostgreSQL database.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Opens a pool on the database the URL names, creating the database when it does not
    /// exist.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(config.url.expose())?;
        let pool_options = super::nodelay::on_connect(
            PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.acquire_timeout()),
            options.get_port(),
        );
        let pool = match pool_options.clone().connect_with(options.clone()).await {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(INVALID_CATALOG_NAME) => {
                create_database(&options).await?;
                pool_options.connect_with(options).await?
            }
            other => other?,
        };
        Ok(Self { pool })
    }

    async fn message_by_client_id(
        conn: &mut PgConnection,
        conversation: ConversationId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM sg_message_meta meta JOIN messages m ON m.id = meta.message_id",
            " WHERE meta.cid = $1 AND meta.client_msg_id = $2"
        ))
        .bind(to_db_id(conversation))
        .bind(client_msg_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    /// Takes the row lock every writer takes first, for the rest of the transaction.
    async fn lock_writers(conn: &mut PgConnection) -> StoreResult<()> {
        sqlx::query(super::WRITE_LOCK)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Creates the database `options` names, from the server's maintenance database.
async fn create_database(options: &PgConnectOptions) -> StoreResult<()> {
    let Some(name) = options.get_database() else {
        return Ok(());
    };
    let mut conn =
        PgConnection::connect_with(&options.clone().database(MAINTENANCE_DATABASE)).await?;
    // The name comes from the operator's configuration; quoted as an identifier.
    let sql = format!(r#"CREATE DATABASE "{}""#, name.replace('"', r#""""#));
    match sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
    {
        // Another replica created it first.
        Err(sqlx::Error::Database(e))
            if matches!(
                e.code().as_deref(),
                Some(DUPLICATE_DATABASE | UNIQUE_VIOLATION)
            ) => {}
        other => {
            other?;
        }
    }
    conn.close().await?;
    Ok(())
}

fn message_from_row(row: &PgRow) -> StoreResult<StoredMessage> {
    let direction = Direction::from_code(row.try_get::<i32, _>("direction")?.into());
    Ok(StoredMessage {
        id: from_db_id("messages.id", row.try_get("id")?)?,
        conversation_id: from_db_id("messages.cid", row.try_get("cid")?)?,
        direction,
        origin: Origin::from_code(
            row.try_get::<Option<i32>, _>("origin")?.map(i64::from),
            direction,
        ),
        admin_id: row.try_get("aid")?,
        text: text::from_column(row.try_get::<Option<&str>, _>("message")?),
        local_date: row.try_get("date")?,
    })
}

fn summary_from_row(row: &PgRow) -> StoreResult<ConversationSummary> {
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

fn link_from_row(row: &PgRow) -> StoreResult<TelegramLink> {
    Ok(TelegramLink {
        chat_id: row.try_get("chat_id")?,
        conversation_id: from_db_id("telegram.cid", row.try_get("cid")?)?,
        mode: TelegramMode::from_code(row.try_get::<i32, _>("status")?.into()),
        active: row.try_get::<i32, _>("active")? != 0,
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
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        let repeats = duplicates_within(batch);
        let mut tx = self.pool.begin().await?;
        // First of all: writers of every replica queue here, so ids are drawn from the sequence
        // and committed in the same order. READ COMMITTED: each statement after the lock sees
        // what the previous writer committed.
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
            // Ids drawn under the write lock, ascending, then given to the rows in batch
            // order: no reliance on the order of RETURNING rows.
            let mut ids: Vec<i64> = sqlx::query_scalar(
                "SELECT nextval(pg_get_serial_sequence('messages', 'id')) \
                 FROM generate_series(1, $1)",
            )
            .bind(chunk.len() as i64)
            .fetch_all(&mut *tx)
            .await?;
            ids.sort_unstable();
            insert_messages::<Postgres>(&mut tx, batch, chunk, Some(&ids)).await?;
            finish_chunk::<Postgres>(
                &mut tx,
                batch,
                chunk,
                &ids,
                &mut out,
                " ON CONFLICT (cid) DO UPDATE SET last_message_id = \
                 GREATEST(sg_conversations.last_message_id, excluded.last_message_id)",
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
                    " WHERE m.cid = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
                ))
                .bind(to_db_id(conversation))
                .bind(to_db_id(after))
                .bind(i64::from(page(limit)))
                .fetch_all(&self.pool)
                .await?
            }
            Scope::All => {
                sqlx::query(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages m LEFT JOIN sg_message_meta meta ON meta.message_id = m.id",
                    " WHERE m.id > $1 ORDER BY m.id LIMIT $2"
                ))
                .bind(to_db_id(after))
                .bind(i64::from(page(limit)))
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
            " WHERE m.cid = $1 AND m.id < $2 ORDER BY m.id DESC LIMIT $3"
        ))
        .bind(to_db_id(conversation))
        .bind(before.map_or(i64::MAX, to_db_id))
        .bind(i64::from(page(limit)))
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
        let done = sqlx::query(
            "INSERT INTO sg_conversations (cid) VALUES ($1) ON CONFLICT (cid) DO NOTHING",
        )
        .bind(to_db_id(conversation))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn conversation(
        &self,
        conversation: ConversationId,
    ) -> StoreResult<Option<ConversationSummary>> {
        let row = sqlx::query(concat!(summary_select!(), " WHERE c.cid = $1"))
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
            " WHERE c.last_message_id < $1 ORDER BY c.last_message_id DESC, c.cid DESC LIMIT $2"
        ))
        .bind(before_last.map_or(i64::MAX, to_db_id))
        .bind(i64::from(page(limit)))
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
                "UPDATE sg_conversations SET support_read_id = GREATEST(support_read_id, $1) \
                 WHERE cid = $2"
            }
            Reader::Visitor => {
                "UPDATE sg_conversations SET visitor_read_id = GREATEST(visitor_read_id, $1) \
                 WHERE cid = $2"
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
        // Byte order, as SQLite's BINARY collation sorts, whatever the database's locale.
        let rows = sqlx::query(
            r#"SELECT aid, name, lid FROM adm_account WHERE aid <> '0' ORDER BY aid COLLATE "C""#,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Admin {
                    admin_id: row.try_get("aid")?,
                    name: row.try_get("name")?,
                    rights: row.try_get("lid")?,
                })
            })
            .collect()
    }

    async fn await_writers(&self) -> StoreResult<()> {
        super::await_writers(&self.pool, "BEGIN", Some(super::WRITE_LOCK)).await
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
             WHERE chat_id = $1 AND cid IS NOT NULL ORDER BY id DESC LIMIT 1",
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
        sqlx::query("DELETE FROM telegram WHERE chat_id = $1 OR cid = $2")
            .bind(chat_id)
            .bind(to_db_id(conversation))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO telegram (cid, chat_id, status, active) VALUES ($1, $2, 0, 1)")
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
            "UPDATE telegram SET status = COALESCE($1, status), active = COALESCE($2, active) \
             WHERE chat_id = $3",
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
                    "SELECT chat_id, cid, status, active FROM telegram WHERE cid = $1 \
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
            "INSERT INTO sg_delivery_cursors (consumer, message_id) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO NOTHING",
        )
        .bind(consumer)
        .bind(to_db_id(start))
        .execute(&self.pool)
        .await?;
        let id: i64 =
            sqlx::query_scalar("SELECT message_id FROM sg_delivery_cursors WHERE consumer = $1")
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
            "INSERT INTO sg_delivery_cursors (consumer, message_id) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET \
             message_id = GREATEST(sg_delivery_cursors.message_id, EXCLUDED.message_id) \
             RETURNING message_id",
        )
        .bind(consumer)
        .bind(to_db_id(to))
        .fetch_one(&self.pool)
        .await?;
        from_db_id("sg_delivery_cursors.message_id", id)
    }

    async fn user_password(&self, user_id: u64) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT password FROM users WHERE id = $1")
                .bind(to_db_id(user_id))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
