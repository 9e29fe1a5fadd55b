//! A writer's transaction: opened together with the statements that must run first in it
//! (the write lock, the read of the newest id) as one query, one round trip, while every
//! other writer waits for it.
//!
//! Why not sqlx's `Transaction`: its `begin_with` runs one statement and discards the rows,
//! and when a statement after the `BEGIN` fails (a lock wait timeout, a lost lock row) it
//! returns the connection to the pool inside a transaction that sqlx does not know of. Here a
//! transaction that was not committed or rolled back closes its connection instead, so the
//! database rolls it back and the pool never hands out a connection inside one.

use std::ops::{Deref, DerefMut};

use sqlx::{Executor, Pool, pool::PoolConnection};

use super::{Dialect, StoreError, StoreResult};

/// An open writer's transaction on a pooled connection; dereferences to the connection.
pub(crate) struct WriteTx<DB: Dialect> {
    conn: PoolConnection<DB>,
    /// Until COMMIT or ROLLBACK answered: the connection may be inside the transaction.
    open: bool,
}

impl<DB> WriteTx<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Opens a writer's transaction ([`Dialect::BEGIN_WRITE`], then the write lock where it is
    /// a statement, [`Dialect::LOCK_WRITERS`]) followed by `first` (no statement when empty),
    /// all as one query: once it returns, this writer alone writes until the transaction ends.
    /// The rows of every statement, in order (the lock's among them).
    pub(crate) async fn begin(pool: &Pool<DB>, first: &str) -> StoreResult<(Self, Vec<DB::Row>)> {
        let mut tx = Self {
            conn: pool.acquire().await?,
            open: true,
        };
        let sql = [Some(DB::BEGIN_WRITE), DB::LOCK_WRITERS, Some(first)]
            .into_iter()
            .flatten()
            .filter(|statement| !statement.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx.conn)
            .await?;
        Ok((tx, rows))
    }

    /// Commits. A lost connection here leaves the outcome unknown
    /// ([`StoreError::CommitOutcomeUnknown`]).
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        sqlx::raw_sql("COMMIT")
            .execute(&mut *self.conn)
            .await
            .map_err(StoreError::at_commit)?;
        self.open = false;
        Ok(())
    }

    /// Rolls back, leaving the connection for the pool.
    pub(crate) async fn rollback(mut self) -> StoreResult<()> {
        sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await?;
        self.open = false;
        Ok(())
    }
}

impl<DB: Dialect> Deref for WriteTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Dialect> DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Dialect> Drop for WriteTx<DB> {
    fn drop(&mut self) {
        if self.open {
            // Closed, the database rolls the transaction back and frees the lock.
            self.conn.close_on_drop();
        }
    }
}
