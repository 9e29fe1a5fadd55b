//! The PostgreSQL backend. The legacy schema in PostgreSQL terms (BIGINT ids, `TIMESTAMP(0)`
//! dates); writers serialise on a row lock of `sg_write_lock`, so ids commit in increasing
//! order across core replicas. READ COMMITTED: each statement after the lock sees what the
//! previous writer committed.

use std::str::FromStr;

use sqlx::{
    Connection, PgConnection, Postgres, QueryBuilder, error::DatabaseError, migrate::Migrator,
    postgres::PgConnectOptions,
};

use super::{
    Backend, DatabaseConfig, Dialect, SqlStore, StoreResult,
    batch::{Chunk, KeyStored},
    connect_creating,
    sql::{MESSAGE_COLUMNS, insert_meta_and_latest, push_message},
};

/// SQLSTATE of "database does not exist".
const INVALID_CATALOG_NAME: &str = "3D000";
/// SQLSTATE of "database already exists".
const DUPLICATE_DATABASE: &str = "42P04";
/// SQLSTATE of a unique violation: two `CREATE DATABASE` of one name racing in the catalog.
const UNIQUE_VIOLATION: &str = "23505";

/// The database to connect to in order to create the configured one.
const MAINTENANCE_DATABASE: &str = "postgres";

impl SqlStore<Postgres> {
    /// Opens a pool on the database the URL names, creating the database when it does not
    /// exist.
    pub async fn connect(config: &DatabaseConfig) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(config.url.expose())?;
        let pool = super::nodelay::on_connect(config.pool_options(), options.get_port());
        let create = options.clone();
        let missing = |e: &dyn DatabaseError| e.code().as_deref() == Some(INVALID_CATALOG_NAME);
        let pool = connect_creating(pool, options, missing, || create_database(&create)).await?;
        Ok(Self::new(pool))
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

impl Dialect for Postgres {
    const BACKEND: Backend = Backend::Postgres;
    const MIGRATOR: &'static Migrator = &sqlx::migrate!("migrations/postgres");
    // statement_timestamp(), not now(): now() is the transaction's start.
    const NOW_MS: &'static str = "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)";
    // The writer's statements are the same few every time, run under the write lock: a
    // generic plan spares planning them per execution, which the default mode (custom plans
    // while they look cheaper) did not; measured, it took the p50 at 1,000 msg/s from 1.9 to
    // 1.1 ms (BENCHMARKS.md). For the writer's transaction only; PostgreSQL 12 or later.
    const BEGIN_WRITE: &'static str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

    /// `INTEGER` codes.
    type OtherInt = i32;
    type KeyColumn = String;
    type Schema = ();

    fn byte_order(column: &str) -> String {
        format!(r#"{column} COLLATE "C""#)
    }

    async fn store_chunk(
        conn: &mut PgConnection,
        _schema: &(),
        chunk: Chunk<'_>,
    ) -> StoreResult<Result<Vec<i64>, KeyStored>> {
        // Ids drawn under the write lock, ascending, then given to the rows in batch order: no
        // reliance on the order of RETURNING rows.
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('messages', 'id')) \
             FROM generate_series(1, $1)",
        )
        .bind(chunk.len() as i64)
        .fetch_all(&mut *conn)
        .await?;
        ids.sort_unstable();
        let mut insert =
            QueryBuilder::<Postgres>::new(format!("INSERT INTO messages (id, {MESSAGE_COLUMNS}) "));
        insert.push_values(chunk.rows.iter().zip(&ids), |mut row, (&i, &id)| {
            row.push_bind(id);
            push_message(&mut row, &chunk.batch[i]);
        });
        insert.build().execute(&mut *conn).await?;
        insert_meta_and_latest::<Postgres>(conn, chunk, ids).await
    }
}
