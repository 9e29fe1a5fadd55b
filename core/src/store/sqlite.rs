//! The SQLite backend: the embedded default. One file, WAL journal; writers serialise on
//! `BEGIN IMMEDIATE`, so ids commit in order without a lock table.

use std::{fs::File, path::PathBuf, str::FromStr, time::Duration};

use tokio_util::task::AbortOnDropHandle;

use sqlx::{
    Sqlite, SqliteConnection,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

use super::{
    Backend, DatabaseConfig, Dialect, SqlStore, StoreError, StoreResult,
    batch::{Chunk, KeyStored},
    sql::{insert_messages, insert_meta_and_latest},
};

impl SqlStore<Sqlite> {
    /// Opens (creating when missing) the file the URL names.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(config.url.expose())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(config.acquire_timeout())
            // Checkpoints run beside the writer (`checkpoints`), not inside the commit that
            // happens to fill the WAL past 1,000 pages: that commit, and every message queued
            // behind it, used to wait milliseconds for it (the slowest 1 % of deliveries).
            .pragma("wal_autocheckpoint", "0");
        let pool = config.pool_options().connect_with(options).await?;
        let checkpoints = tokio::spawn(checkpoints(pool.clone()));
        Ok(Self::with_schema(
            pool,
            SqliteSchema {
                _checkpoints: Some(AbortOnDropHandle::new(checkpoints)),
            },
        ))
    }
}

/// What a SQLite store keeps beside its pool: the task that checkpoints its WAL, for as long
/// as the store lives.
#[derive(Default)]
pub struct SqliteSchema {
    _checkpoints: Option<AbortOnDropHandle<()>>,
}

/// How often the WAL is copied back into the database file. Often, so each copy is small: at
/// 1,000 msg/s a checkpoint a second took ~23 ms of a core and its fsync, and the messages
/// stored meanwhile were the slowest 1 % (p99 3.8-4.3 ms; every 100 ms: 2.3-3.4 ms, same
/// throughput).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies the WAL back into the database file every [`CHECKPOINT_EVERY`], on a connection of
/// its own. PASSIVE: it never waits for (nor blocks) the writer or readers; what a reader
/// still needs stays in the WAL for the next round.
async fn checkpoints(pool: sqlx::SqlitePool) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the WAL grows until one succeeds");
        }
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
    type KeyColumn = String;
    type Schema = SqliteSchema;

    fn byte_order(column: &str) -> String {
        column.to_owned()
    }

    async fn store_chunk(
        conn: &mut SqliteConnection,
        _schema: &SqliteSchema,
        chunk: Chunk<'_>,
    ) -> StoreResult<Result<Vec<i64>, KeyStored>> {
        let done = insert_messages::<Sqlite>(conn, chunk).await?;
        // One statement under the write lock with AUTOINCREMENT: the rows got consecutive ids
        // ending at the last one.
        let last = done.last_insert_rowid();
        let first = last - chunk.len() as i64 + 1;
        insert_meta_and_latest::<Sqlite>(conn, chunk, (first..=last).collect()).await
    }
}
