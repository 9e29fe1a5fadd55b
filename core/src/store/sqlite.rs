//! The SQLite backend: the embedded default. One file, WAL journal; writers serialise on
//! `BEGIN IMMEDIATE`, so ids commit in order without a lock table.

use std::str::FromStr;

use sqlx::{
    Sqlite, SqliteConnection,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

use super::{
    Backend, DatabaseConfig, Dialect, SqlStore, StoreResult, batch::Chunk, sql::insert_messages,
};

impl SqlStore<Sqlite> {
    /// Opens (creating when missing) the file the URL names.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(config.url.expose())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(config.acquire_timeout());
        let pool = config.pool_options().connect_with(options).await?;
        Ok(Self::new(pool))
    }
}

impl Dialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    const MIGRATOR: &'static Migrator = &sqlx::migrate!("migrations/sqlite");
    // IMMEDIATE takes the write lock up front: ids are allocated and committed in order.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_WRITERS: Option<&'static str> = None;
    const GREATEST: &'static str = "MAX";

    type OtherInt = i64;
    type Schema = ();

    fn byte_order(column: &str) -> String {
        column.to_owned()
    }

    async fn insert_chunk(conn: &mut SqliteConnection, chunk: Chunk<'_>) -> StoreResult<Vec<i64>> {
        let done = insert_messages::<Sqlite>(conn, chunk, None).await?;
        // One statement under the write lock with AUTOINCREMENT: the rows got consecutive ids
        // ending at the last one.
        let last = done.last_insert_rowid();
        let first = last - chunk.len() as i64 + 1;
        Ok((first..=last).collect())
    }
}
