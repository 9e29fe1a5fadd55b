//! Visitor credentials for the Telegram login (LEGACY.md §5, §7): a login `id<cid>` and a
//! password, checked against the chat database's `users` table or against an external
//! database with the configured query. The core owns this check because it owns the databases;
//! the Telegram edge only asks (`Telegram.CheckCredentials`).

use std::time::Duration;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sqlx::{
    Row,
    mysql::{MySqlPool, MySqlPoolOptions, MySqlRow},
    postgres::{PgPool, PgPoolOptions, PgRow},
    sqlite::{SqlitePool, SqlitePoolOptions, SqliteRow},
};
use subtle::ConstantTimeEq;

use crate::{
    chat::MAX_CONVERSATION_ID,
    config::{CredentialsConfig, PasswordHash},
    domain::ConversationId,
    store::{Backend, Store, StoreError, StoreResult},
};

/// Connections kept to an external credentials database: logins are rare.
const EXTERNAL_POOL_SIZE: u32 = 2;
/// How long a login waits for the external database before it is told to try later.
const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right: the visitor's conversation.
    Accepted(ConversationId),
    Refused(Refusal),
}

/// Why credentials were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The login is not `id` followed by a visitor id.
    MalformedLogin,
    /// No such visitor in `users`.
    UnknownLogin,
    /// The visitor exists; the password is wrong.
    WrongPassword,
    /// Login or password wrong: the external query cannot tell which.
    WrongCredentials,
}

/// An external credentials database, connected on first use.
enum External {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    Postgres(PgPool),
}

/// Checks credentials by configuration.
pub struct Credentials {
    hash: PasswordHash,
    /// The external database and its query (with PostgreSQL placeholders when needed).
    external: Option<(External, String)>,
}

impl Credentials {
    /// Prepares the checker; an external database is connected lazily, on the first login, so
    /// an unreachable one does not stop the core from starting.
    pub fn new(config: &CredentialsConfig) -> StoreResult<Self> {
        let external = match &config.external {
            None => None,
            Some(ext) => {
                let url = ext.url.expose();
                let pool = match Backend::from_url(url)? {
                    Backend::Sqlite => External::Sqlite(
                        SqlitePoolOptions::new()
                            .max_connections(EXTERNAL_POOL_SIZE)
                            .acquire_timeout(EXTERNAL_TIMEOUT)
                            .connect_lazy(url)?,
                    ),
                    Backend::MySql => External::MySql(
                        MySqlPoolOptions::new()
                            .max_connections(EXTERNAL_POOL_SIZE)
                            .acquire_timeout(EXTERNAL_TIMEOUT)
                            .connect_lazy(&url.replacen("mariadb:", "mysql:", 1))?,
                    ),
                    Backend::Postgres => External::Postgres(
                        PgPoolOptions::new()
                            .max_connections(EXTERNAL_POOL_SIZE)
                            .acquire_timeout(EXTERNAL_TIMEOUT)
                            .connect_lazy(url)?,
                    ),
                };
                let query = match pool {
                    External::Postgres(_) => numbered_placeholders(&ext.query),
                    _ => ext.query.clone(),
                };
                Some((pool, query))
            }
        };
        Ok(Self {
            hash: config.password_hash,
            external,
        })
    }

    /// Checks `login` and `password`: against the external database when one is configured,
    /// else against `users` of the chat database.
    pub async fn check(
        &self,
        store: &dyn Store,
        login: &str,
        password: &str,
    ) -> StoreResult<Verdict> {
        let Some(cid) = parse_login(login) else {
            return Ok(Verdict::Refused(Refusal::MalformedLogin));
        };
        let hashed = hash_password(self.hash, password);
        match &self.external {
            None => Ok(match store.user_password(cid).await? {
                None => Verdict::Refused(Refusal::UnknownLogin),
                Some(stored) if self.matches(&stored, &hashed) => Verdict::Accepted(cid),
                Some(_) => Verdict::Refused(Refusal::WrongPassword),
            }),
            Some((pool, query)) => {
                // The legacy query compares with concat("id", id): the normalised login.
                let login = format!("id{cid}");
                let found = external_query(pool, query, &login, &hashed).await?;
                Ok(match found {
                    // The query names the visitor; it is the one whose login was typed.
                    Some(id) if id == cid => Verdict::Accepted(cid),
                    _ => Verdict::Refused(Refusal::WrongCredentials),
                })
            }
        }
    }

    fn matches(&self, stored: &str, hashed: &str) -> bool {
        let stored = stored.trim();
        match self.hash {
            // Hex digests: PHP and MySQL may have stored either case.
            PasswordHash::Md5 | PasswordHash::Sha1 | PasswordHash::Sha256 => stored
                .to_ascii_lowercase()
                .as_bytes()
                .ct_eq(hashed.as_bytes())
                .into(),
            PasswordHash::None => stored.as_bytes().ct_eq(hashed.as_bytes()).into(),
        }
    }
}

/// `id123` (any case of `id`, spaces around) -> 123, within the legacy visitor id range.
pub fn parse_login(login: &str) -> Option<ConversationId> {
    let login = login.trim();
    let digits = login
        .get(..2)
        .filter(|p| p.eq_ignore_ascii_case("id"))
        .map(|_| &login[2..])?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = digits.parse().ok()?;
    (1..=MAX_CONVERSATION_ID).contains(&id).then_some(id)
}

/// The password as the configured hash stores it: lower-case hex, or as typed.
pub fn hash_password(hash: PasswordHash, password: &str) -> String {
    match hash {
        PasswordHash::Md5 => hex::encode(Md5::digest(password.as_bytes())),
        PasswordHash::Sha1 => hex::encode(Sha1::digest(password.as_bytes())),
        PasswordHash::Sha256 => hex::encode(Sha256::digest(password.as_bytes())),
        PasswordHash::None => password.to_owned(),
    }
}

/// `?` -> `$1`, `$2` for PostgreSQL (the configuration holds the legacy MySQL query).
fn numbered_placeholders(query: &str) -> String {
    let mut n = 0;
    let mut out = String::with_capacity(query.len() + 4);
    for c in query.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs the external query; the visitor id it names when its count column `col` (when there
/// is one) is positive and `id` is set.
async fn external_query(
    pool: &External,
    query: &str,
    login: &str,
    hashed: &str,
) -> StoreResult<Option<u64>> {
    // The query is the operator's configuration, not user input; the user's values are bound.
    let sql = sqlx::AssertSqlSafe(query.to_owned());
    let run = async {
        Ok::<_, StoreError>(match pool {
            External::Sqlite(p) => {
                let row: Option<SqliteRow> = sqlx::query(sql)
                    .bind(login)
                    .bind(hashed)
                    .fetch_optional(p)
                    .await?;
                row.map(|r| verdict_of(|c| sqlite_int(&r, c)))
            }
            External::MySql(p) => {
                let row: Option<MySqlRow> = sqlx::query(sql)
                    .bind(login)
                    .bind(hashed)
                    .fetch_optional(p)
                    .await?;
                row.map(|r| verdict_of(|c| mysql_int(&r, c)))
            }
            External::Postgres(p) => {
                let row: Option<PgRow> = sqlx::query(sql)
                    .bind(login)
                    .bind(hashed)
                    .fetch_optional(p)
                    .await?;
                row.map(|r| verdict_of(|c| pg_int(&r, c)))
            }
        })
    };
    let found = tokio::time::timeout(EXTERNAL_TIMEOUT, run)
        .await
        .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))??;
    Ok(found.flatten())
}

/// Reads `col` and `id` of the query's row through `int` (None: NULL or no such column).
fn verdict_of(int: impl Fn(&str) -> Option<i128>) -> Option<u64> {
    if let Some(count) = int("col")
        && count <= 0
    {
        return None;
    }
    int("id").and_then(|id| u64::try_from(id).ok())
}

fn sqlite_int(row: &SqliteRow, column: &str) -> Option<i128> {
    row.try_get::<Option<i64>, _>(column)
        .ok()
        .flatten()
        .map(i128::from)
}

// The external schema is not ours: its integer columns may be signed or unsigned, of any width,
// and sqlx decodes a column only into a matching Rust type.
fn mysql_int(row: &MySqlRow, column: &str) -> Option<i128> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(column) {
        return v.map(i128::from);
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(column) {
        return v.map(i128::from);
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(column) {
        return v.map(i128::from);
    }
    row.try_get::<Option<u32>, _>(column)
        .ok()
        .flatten()
        .map(i128::from)
}

fn pg_int(row: &PgRow, column: &str) -> Option<i128> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(column) {
        return v.map(i128::from);
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(column) {
        return v.map(i128::from);
    }
    row.try_get::<Option<i16>, _>(column)
        .ok()
        .flatten()
        .map(i128::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_id_and_a_visitor_id() {
        assert_eq!(parse_login("id123"), Some(123));
        assert_eq!(parse_login("  ID7 "), Some(7));
        assert_eq!(parse_login("id"), None);
        assert_eq!(parse_login("id0"), None);
        assert_eq!(parse_login("id-1"), None);
        assert_eq!(parse_login("123"), None);
        assert_eq!(parse_login("id12a"), None);
        assert_eq!(parse_login("id99999999999"), None);
        assert_eq!(parse_login("иd1"), None);
    }

    #[test]
    fn passwords_hash_as_php_does() {
        assert_eq!(
            hash_password(PasswordHash::Md5, "secret"),
            "5ebe2294ecd0e0f08eab7690d2a6ee69"
        );
        assert_eq!(
            hash_password(PasswordHash::Sha1, "secret"),
            "e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4"
        );
        assert_eq!(
            hash_password(PasswordHash::Sha256, "secret"),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert_eq!(hash_password(PasswordHash::None, "secret"), "secret");
    }

    #[test]
    fn postgres_gets_numbered_placeholders() {
        assert_eq!(
            numbered_placeholders("SELECT 1 AS col, id FROM ur WHERE l = ? AND p = ?"),
            "SELECT 1 AS col, id FROM ur WHERE l = $1 AND p = $2"
        );
    }
}
