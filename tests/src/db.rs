//! Real databases for tests: a temporary SQLite file, or a uniquely named database on the
//! MariaDB / PostgreSQL server named by `SOCKETGRAM_TEST_MYSQL_URL` /
//! `SOCKETGRAM_TEST_POSTGRES_URL` (defaults: the local servers), dropped afterwards.

use std::sync::atomic::{AtomicU32, Ordering};

use socketgram_core::{
    config::Secret,
    store::{Backend, DatabaseConfig},
};
use sqlx::Connection;

/// The server URLs used when the environment names none.
const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database that exists for one test.
pub struct TestDb {
    pub backend: Backend,
    /// URL of this test's own database.
    pub url: String,
    /// For MySQL/PostgreSQL: the server URL and the database name to drop.
    server: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// The server URL for a backend, from the environment or the local default.
    pub fn server_url(backend: Backend) -> Option<String> {
        match backend {
            Backend::Sqlite => None,
            Backend::MySql => Some(
                std::env::var("SOCKETGRAM_TEST_MYSQL_URL")
                    .unwrap_or_else(|_| DEFAULT_MYSQL_URL.into()),
            ),
            Backend::Postgres => Some(
                std::env::var("SOCKETGRAM_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into()),
            ),
        }
    }

    /// Creates a fresh, empty database; `None` (after printing why) when the server is not
    /// reachable outside CI. Under CI an unreachable server panics.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        let unique = format!(
            "sg_t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("chat.db").display());
                Some(TestDb {
                    backend,
                    url,
                    server: None,
                    _dir: Some(dir),
                })
            }
            Backend::MySql | Backend::Postgres => {
                let server = Self::server_url(backend).expect("server backend");
                if let Err(e) =
                    admin_exec(backend, &server, &format!("CREATE DATABASE {unique}")).await
                {
                    crate::service_missing(&format!("{backend:?} at {server}"), &e.to_string());
                    return None;
                }
                let url = with_database(&server, &unique);
                Some(TestDb {
                    backend,
                    url,
                    server: Some((server, unique)),
                    _dir: None,
                })
            }
        }
    }

    /// A configuration pointing the core at this database.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: Secret::new(self.url.clone()),
            max_connections: 8,
            acquire_timeout_ms: 2_000,
        }
    }

    /// Runs one statement on this database outside the core (as the PHP admin would).
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        Ok(match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::query(sql).execute(&mut c).await?.rows_affected()
            }
            Backend::MySql => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await?;
                sqlx::query(sql).execute(&mut c).await?.rows_affected()
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::query(sql).execute(&mut c).await?.rows_affected()
            }
        })
    }

    /// Reads one text column of one row (e.g. the raw `messages.message` of an id), as the
    /// PHP admin would see it.
    pub async fn fetch_text(&self, sql: &str) -> Result<Option<String>, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        Ok(match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::query_scalar(sql).fetch_optional(&mut c).await?
            }
            Backend::MySql => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await?;
                sqlx::query_scalar(sql).fetch_optional(&mut c).await?
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::query_scalar(sql).fetch_optional(&mut c).await?
            }
        })
    }

    /// Drops the database (server backends); the SQLite directory goes with `self`.
    pub async fn drop_db(mut self) {
        if let Some((server, name)) = self.server.take() {
            let sql = match self.backend {
                Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                _ => format!("DROP DATABASE IF EXISTS {name}"),
            };
            if let Err(e) = admin_exec(self.backend, &server, &sql).await {
                eprintln!("could not drop test database {name}: {e}");
            }
        }
    }
}

impl Drop for TestDb {
    /// A test that panicked before `drop_db` still removes its database: CI reuses servers.
    fn drop(&mut self) {
        if let Some((server, name)) = self.server.take() {
            let backend = self.backend;
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    let sql = match backend {
                        Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                        _ => format!("DROP DATABASE IF EXISTS {name}"),
                    };
                    let _ = rt.block_on(admin_exec(backend, &server, &sql));
                }
            })
            .join();
        }
    }
}

/// Replaces the database path of a server URL.
pub fn with_database(server: &str, database: &str) -> String {
    let mut url = url::Url::parse(server).expect("database server URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

async fn admin_exec(backend: Backend, server: &str, sql: &str) -> Result<(), sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    let connect = async {
        match backend {
            Backend::MySql => {
                let mut c = sqlx::MySqlConnection::connect(server).await?;
                sqlx::query(sql).execute(&mut c).await?;
                c.close().await
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(server).await?;
                sqlx::query(sql).execute(&mut c).await?;
                c.close().await
            }
            Backend::Sqlite => Ok(()),
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}
