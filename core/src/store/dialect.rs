//! The seam between the one SQL implementation of [`super::Store`] ([`super::SqlStore`]) and
//! the backends: only what really differs between SQLite, MySQL/MariaDB and PostgreSQL.
//! Placeholders are not part of it: every query is built with `sqlx::QueryBuilder`, which
//! writes `?` or `$n` for the backend.

use std::future::Future;

use sqlx::{Decode, IntoArguments, Pool, Type, migrate::Migrate, migrate::Migrator};

use super::{
    Backend, StoreResult,
    batch::{Chunk, KeyStored},
};
use crate::domain::ConversationId;

/// The row lock every writer takes first where the database has no lock of its own for it,
/// held to the end of its transaction.
pub const WRITE_LOCK: &str = "SELECT id FROM sg_write_lock WHERE id = 1 FOR UPDATE";

/// What one backend's SQL says differently. Implemented by the sqlx database types; the
/// defaults are standard SQL with writers serialised on `sg_write_lock` (`WRITE_LOCK`).
pub trait Dialect:
    sqlx::Database<Arguments: IntoArguments<Self>, Connection: Migrate, QueryResult: RowsAffected>
{
    /// Which backend this is.
    const BACKEND: Backend;

    /// The backend's migrations.
    const MIGRATOR: &'static Migrator;

    /// The statement that opens a writer's transaction.
    const BEGIN_WRITE: &'static str = "BEGIN";

    /// The statement a writer runs first in its transaction, holding a lock to the end of it,
    /// where [`Self::BEGIN_WRITE`] alone does not serialise writers.
    const LOCK_WRITERS: Option<&'static str> = Some(WRITE_LOCK);

    /// What ends a writer's read of rows that the writer before it may just have committed,
    /// where the transaction's snapshot would not show them.
    const LOCKING_READ: &'static str = "";

    /// The function that gives the greater of two values.
    const GREATEST: &'static str = "GREATEST";

    /// Whether an `INSERT` can return what it stored (`RETURNING`).
    const RETURNING: bool = true;

    /// An expression for the database's current time in whole milliseconds since 1970, as a
    /// 64-bit integer. Leases expire by it: every core replica then reads one clock, however
    /// far the replicas' own clocks disagree.
    const NOW_MS: &'static str;

    /// The integer type of this backend's columns that are not `BIGINT` (`i64` where there
    /// is none), read as `i64` too by the rows' integer type.
    type OtherInt: for<'r> Decode<'r, Self>
        + Type<Self>
        + TryInto<i64, Error: std::error::Error + Send + Sync + 'static>;

    /// The type of `sg_message_meta.client_msg_id` (`String`, or bytes where the column is
    /// binary), read as a `String`.
    type KeyColumn: for<'r> Decode<'r, Self>
        + Type<Self>
        + TryInto<String, Error: std::error::Error + Send + Sync + 'static>;

    /// What the store learns of the database's schema once and keeps.
    type Schema: Default + Send + Sync + 'static;

    /// The head of an `INSERT` that skips a row whose `key` exists, and what follows its
    /// `VALUES`.
    fn insert_or_skip(key: &str) -> (&'static str, String) {
        ("INSERT", format!(" ON CONFLICT ({key}) DO NOTHING"))
    }

    /// What follows the `VALUES` of an `INSERT` to update the existing row where a row's
    /// `key` exists; the assignments follow it, comma-separated. In them, `table.column` is
    /// the existing row's value and [`Self::inserted`] the new row's. On MySQL they run left
    /// to right, each seeing the ones before: an assignment reads only columns that none
    /// before it sets.
    fn on_conflict_update(key: &str) -> String {
        format!(" ON CONFLICT ({key}) DO UPDATE SET ")
    }

    /// The value the `INSERT` proposed for `column`, in an [`Self::on_conflict_update`]
    /// assignment.
    fn inserted(column: &str) -> String {
        format!("excluded.{column}")
    }

    /// What follows the `VALUES` of an `INSERT INTO table` so that, where a row's `key`
    /// exists, its `column` is raised to the new value when that is greater.
    fn raise_on_conflict(table: &str, key: &str, column: &str) -> String {
        format!(
            "{}{column} = {greatest}({table}.{column}, {new})",
            Self::on_conflict_update(key),
            greatest = Self::GREATEST,
            new = Self::inserted(column),
        )
    }

    /// What follows the `VALUES` of an `INSERT` so that, where a row's `key` exists, its
    /// `columns` take the new values.
    fn replace_on_conflict(key: &str, columns: &[&str]) -> String {
        let set: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} = {}", Self::inserted(c)))
            .collect();
        format!("{}{}", Self::on_conflict_update(key), set.join(", "))
    }

    /// `column` as an `ORDER BY` term that sorts byte by byte, as SQLite's BINARY collation
    /// does, whatever the column's collation.
    fn byte_order(column: &str) -> String;

    /// Stores a chunk of a batch inside a writer's transaction: its rows of `messages` and
    /// `sg_message_meta`, and each of its conversations' last message id
    /// (`sg_conversations`). The new rows' ids in chunk order (ascending), or [`KeyStored`]
    /// when a client message id of it is stored already (the transaction must then be
    /// rolled back). The backend inserts the messages its way (`sql::insert_messages`, or
    /// under ids it draws first) and the rest with `sql::insert_meta_and_latest`.
    fn store_chunk<'c>(
        conn: &'c mut Self::Connection,
        schema: &'c Self::Schema,
        chunk: Chunk<'c>,
    ) -> impl Future<Output = StoreResult<Result<Vec<i64>, KeyStored>>> + Send + 'c;

    /// [`super::Store::visitor_exists`]: any visitor, unless the schema says otherwise.
    fn visitor_exists<'a>(
        pool: &'a Pool<Self>,
        schema: &'a Self::Schema,
        conversation: ConversationId,
    ) -> impl Future<Output = StoreResult<bool>> + Send + 'a {
        let _ = (pool, schema, conversation);
        std::future::ready(Ok(true))
    }
}

/// How many rows a statement changed, whatever the backend (sqlx has no trait for it).
pub trait RowsAffected {
    /// The count.
    fn rows(&self) -> u64;
}

macro_rules! rows_affected {
    ($($result:ty),*) => {
        $(impl RowsAffected for $result {
            fn rows(&self) -> u64 {
                self.rows_affected()
            }
        })*
    };
}

rows_affected!(
    sqlx::sqlite::SqliteQueryResult,
    sqlx::mysql::MySqlQueryResult,
    sqlx::postgres::PgQueryResult
);
