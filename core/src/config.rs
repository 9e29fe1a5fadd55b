//! The core's configuration sections. The binary composes them into its one `Config`; tests
//! build them directly.

use serde::{Deserialize, Serialize};

use crate::store::DatabaseConfig;

pub use socketgram_common::{ConfigError, Secret};

/// Serializes a database URL with only its password hidden (`config check`).
pub fn serialize_url<S: serde::Serializer>(url: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::store::redact_url(url.expose()))
}

/// What the core needs to know.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    /// Company name: appended to admin names ("<name> <company>", LEGACY.md §4).
    pub company: String,
    /// Offset of the wall-clock time written to `messages.date`, in hours from UTC
    /// (legacy `time`; fractions allowed, e.g. 5.5).
    pub gmt_offset_hours: f64,
    /// Longest message accepted, in characters (the legacy column holds 10,000).
    pub max_message_chars: usize,
    pub database: DatabaseConfig,
    /// How visitors' Telegram logins are checked (`[core.credentials]`).
    pub credentials: CredentialsConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            company: String::new(),
            gmt_offset_hours: 0.0,
            max_message_chars: crate::store::text::COLUMN_CHARS,
            database: DatabaseConfig::default(),
            credentials: CredentialsConfig::default(),
        }
    }
}

impl CoreConfig {
    /// Checks every value; the error names the key (relative to the `[core]` section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(-12.0..=14.0).contains(&self.gmt_offset_hours) {
            return Err(ConfigError::new(
                "gmt_offset_hours",
                format!("{} is not between -12 and 14", self.gmt_offset_hours),
            ));
        }
        if self.max_message_chars == 0 || self.max_message_chars > crate::store::text::COLUMN_CHARS
        {
            return Err(ConfigError::new(
                "max_message_chars",
                format!(
                    "{} is not between 1 and {} (the size of the legacy messages.message column)",
                    self.max_message_chars,
                    crate::store::text::COLUMN_CHARS
                ),
            ));
        }
        crate::store::Backend::from_url(self.database.url.expose())
            .map_err(|e| ConfigError::new("database.url", e.to_string()))?;
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        self.credentials.validate()
    }

    /// The GMT offset as a chrono offset, whole minutes.
    pub fn offset(&self) -> chrono::FixedOffset {
        let seconds = (self.gmt_offset_hours * 60.0).round() as i32 * 60;
        chrono::FixedOffset::east_opt(seconds)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset"))
    }
}

/// How `users.password` (or the external database's password column) is hashed: the password
/// the visitor types is hashed this way, hex, then compared.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PasswordHash {
    #[default]
    Md5,
    Sha1,
    Sha256,
    /// Stored as typed.
    None,
}

/// `[core.credentials]`: how visitors log in from Telegram (login `id<cid>` and password,
/// LEGACY.md §5, §7). The core checks them: it owns the chat database.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    pub password_hash: PasswordHash,
    /// Check against another database instead of the chat's `users` table.
    pub external: Option<ExternalCredentials>,
}

/// The "another db" variant (LEGACY.md §5).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExternalCredentials {
    /// Database URL (mysql://, mariadb://, postgres://, sqlite://).
    #[serde(serialize_with = "serialize_url")]
    pub url: Secret,
    /// Query taking (login, hashed password), as two `?`, and returning a count column `col`
    /// and the visitor id `id` (the legacy query). On PostgreSQL the `?` become `$1`, `$2`.
    pub query: String,
}

impl CredentialsConfig {
    /// Checks every value; errors name the key relative to the `[core]` section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(external) = &self.external {
            crate::store::Backend::from_url(external.url.expose())
                .map_err(|e| ConfigError::new("credentials.external.url", e.to_string()))?;
            if external.query.matches('?').count() != 2 {
                return Err(ConfigError::new(
                    "credentials.external.query",
                    "must take two parameters (?, ?): the login and the hashed password",
                ));
            }
        }
        Ok(())
    }
}
