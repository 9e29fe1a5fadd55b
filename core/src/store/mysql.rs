//! The MySQL/MariaDB backend: the legacy database the PHP admin shares (LEGACY.md §5, §6).
//!
//! The migrations create the legacy schema when the database is empty and otherwise adopt the
//! existing one (either variant) by adding to it. Writers serialise on a row lock of
//! `sg_write_lock`, so ids commit in increasing order across core replicas. `messages.date` is
//! a naive `DATETIME`: it is written and read back as the wall-clock value it is, never shifted.

use std::str::FromStr;

use sqlx::{
    Connection, MySql, MySqlConnection, MySqlPool,
    error::DatabaseError,
    migrate::Migrator,
    mysql::{MySqlConnectOptions, MySqlDatabaseError},
};

use super::{
    Backend, DatabaseConfig, Dialect, SqlStore, StoreError, StoreResult,
    batch::{Chunk, KeyStored},
    connect_creating, redact_url,
    rows::Int,
    sql::{insert_messages, insert_meta_and_latest},
    to_db_id,
};
use crate::domain::ConversationId;

/// MySQL's "unknown database" error number.
const ER_BAD_DB_ERROR: u16 = 1049;

impl SqlStore<MySql> {
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
        let pool = super::nodelay::on_connect(config.pool_options(), options.get_port());
        let name = options.get_database().unwrap_or_default().to_owned();
        let pool = connect_creating(pool, options, unknown_database, || {
            create_database(&url, &name)
        })
        .await?;
        Ok(Self::new(pool))
    }
}

/// Whether the server refused the connection for want of its database.
fn unknown_database(e: &dyn DatabaseError) -> bool {
    e.try_downcast_ref::<MySqlDatabaseError>()
        .is_some_and(|e| e.number() == ER_BAD_DB_ERROR)
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

/// What a MySQL store learns once of the schema it adopted.
#[derive(Default)]
pub struct LegacySchema {
    /// Whether the schema has the legacy foreign key `messages.cid -> users.id` ("with users"
    /// variant). Read once: migrations never add or drop it.
    cid_references_users: tokio::sync::OnceCell<bool>,
    /// Whether the rows of one multi-row `INSERT` always get consecutive ids: with
    /// `auto_increment_increment = 1` and InnoDB's auto-increment lock mode 0 or 1 (MariaDB's
    /// default), even while others insert. Then a chunk's ids follow from the first, with no
    /// read-back. Read once: both are server settings.
    consecutive_ids: tokio::sync::OnceCell<bool>,
}

impl Dialect for MySql {
    const BACKEND: Backend = Backend::MySql;
    const MIGRATOR: &'static Migrator = &sqlx::migrate!("migrations/mysql");
    // A locking read sees the latest committed rows whatever the transaction's snapshot.
    const LOCKING_READ: &'static str = " FOR UPDATE";
    const RETURNING: bool = false;
    // NOW(3) is fixed for the statement; sqlx sets the session time zone to +00:00, so
    // UNIX_TIMESTAMP reads it back without a daylight saving fold.
    const NOW_MS: &'static str = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";

    /// The legacy `INT UNSIGNED` ids (messages.id and .cid, users.id, telegram.cid in the "with
    /// users" variant); sqlx decodes an unsigned column only into an unsigned type.
    type OtherInt = u64;
    type KeyColumn = Vec<u8>;
    type Schema = LegacySchema;

    fn insert_or_skip(_key: &str) -> (&'static str, String) {
        ("INSERT IGNORE", String::new())
    }

    fn on_conflict_update(_key: &str) -> String {
        " ON DUPLICATE KEY UPDATE ".to_owned()
    }

    fn inserted(column: &str) -> String {
        // VALUES(): MariaDB has no row alias; MySQL 8 still accepts it (deprecated).
        format!("VALUES({column})")
    }

    fn byte_order(column: &str) -> String {
        // Not the column's _ci collation.
        format!("CAST({column} AS BINARY)")
    }

    async fn store_chunk(
        conn: &mut MySqlConnection,
        schema: &LegacySchema,
        chunk: Chunk<'_>,
    ) -> StoreResult<Result<Vec<i64>, KeyStored>> {
        let ids = insert_chunk(conn, schema, chunk).await?;
        insert_meta_and_latest::<MySql>(conn, chunk, ids).await
    }

    async fn visitor_exists(
        pool: &MySqlPool,
        schema: &LegacySchema,
        conversation: ConversationId,
    ) -> StoreResult<bool> {
        let needs_user = schema
            .cid_references_users
            .get_or_try_init(|| async {
                let references: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages' \
                     AND COLUMN_NAME = 'cid' AND REFERENCED_TABLE_NAME = 'users'",
                )
                .fetch_one(pool)
                .await?;
                Ok::<_, StoreError>(references > 0)
            })
            .await?;
        if !*needs_user {
            return Ok(true);
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = ?")
            .bind(to_db_id(conversation))
            .fetch_optional(pool)
            .await?;
        Ok(found.is_some())
    }
}

/// Inserts a chunk into `messages`, numbered by AUTO_INCREMENT, and returns its ids in chunk
/// order.
async fn insert_chunk(
    conn: &mut MySqlConnection,
    schema: &LegacySchema,
    chunk: Chunk<'_>,
) -> StoreResult<Vec<i64>> {
    let consecutive = *schema
        .consecutive_ids
        .get_or_try_init(|| async {
            let (increment, lock_mode): (i64, i64) = sqlx::query_as(
                "SELECT CAST(@@auto_increment_increment AS SIGNED), \
                 CAST(@@innodb_autoinc_lock_mode AS SIGNED)",
            )
            .fetch_one(&mut *conn)
            .await?;
            Ok::<_, StoreError>(increment == 1 && lock_mode < 2)
        })
        .await?;
    // LAST_INSERT_ID() is the first row's id.
    let first = insert_messages::<MySql>(conn, chunk)
        .await?
        .last_insert_id();
    let first = to_db_id(first);
    if consecutive {
        return Ok((first..first + chunk.len() as i64).collect());
    }
    // Otherwise: under the write lock nobody else of ours inserts, and InnoDB numbers a
    // statement's rows in order, so the chunk's ids are the smallest ids from there on
    // (whatever the increment, and in lock mode 2 around legacy writers).
    let ids: Vec<Int> =
        sqlx::query_scalar("SELECT id FROM messages WHERE id >= ? ORDER BY id LIMIT ?")
            .bind(first)
            .bind(chunk.len() as i64)
            .fetch_all(&mut *conn)
            .await?;
    if ids.len() != chunk.len() {
        return Err(StoreError::Corrupt {
            column: "messages.id",
            value: format!("{} ids read back for {} rows", ids.len(), chunk.len()),
        });
    }
    Ok(ids.into_iter().map(|id| id.0).collect())
}
