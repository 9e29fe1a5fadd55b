//! The SQLite backend: the embedded default. One file, WAL journal; writers serialise on
//! `BEGIN IMMEDIATE`, so ids commit in order without a lock table.

use std::{fs::File, path::PathBuf, str::FromStr};

use sqlx::{
    Sqlite, SqliteConnection,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

use super::{
    Backend, DatabaseConfig, Dialect, SqlStore, StoreError, StoreResult, batch::Chunk,
    sql::insert_messages,
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

/// One core's hold on a SQLite file (an exclusive lock on `<file>-socketgram.lock` beside
/// it), released when dropped or when the process ends, however it ends. SQLite is
/// single-node: a second core on the file would store messages whose news never reaches the
/// first one's subscribers.
pub struct SingleNode {
    _lock: File,
}

/// Claims the SQLite file `url` names for this process's core; `Ok(None)` for an in-memory
/// database. Another process holding it is an error that says so.
pub fn claim_single_node(url: &str) -> StoreResult<Option<SingleNode>> {
    let options = SqliteConnectOptions::from_str(url)?;
    let file = options.get_filename();
    if file.as_os_str().is_empty() || file.as_os_str() == ":memory:" {
        return Ok(None);
    }
    let mut name = file.as_os_str().to_owned();
    name.push("-socketgram.lock");
    let path = PathBuf::from(name);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::InUse(format!("cannot open {}: {e}", path.display())))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(SingleNode { _lock: lock })),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(format!(
            "{} is already served by another socketgram process; SQLite is single-node: run \
             one core per file (for several cores, use MySQL/MariaDB or PostgreSQL)",
            file.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::InUse(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

impl Dialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    const MIGRATOR: &'static Migrator = &sqlx::migrate!("migrations/sqlite");
    // IMMEDIATE takes the write lock up front: ids are allocated and committed in order.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_WRITERS: Option<&'static str> = None;
    const GREATEST: &'static str = "MAX";
    // julianday() is a double: well under a millisecond of error today. 'now' stays the same
    // for the whole statement.
    const NOW_MS: &'static str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

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
