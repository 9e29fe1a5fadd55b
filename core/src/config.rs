//! The core's configuration sections. The binary composes them into its one `Config`; tests
//! build them directly.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::DatabaseConfig;

/// A configuration value that must not appear in logs or printed configuration: `Debug`
/// and `Serialize` show `***` (an empty one as `""`, so "not set" stays visible).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is this secret, in constant time. The SHA-256 digests are
    /// compared, not the values: a plain comparison stops at a length mismatch, which tells
    /// the secret's length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        Sha256::digest(self.0.as_bytes())
            .ct_eq(&Sha256::digest(presented))
            .into()
    }

    /// Serializes a database URL with only its password hidden (`config check`).
    pub fn serialize_as_url<S: serde::Serializer>(
        url: &Secret,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::store::redact_url(url.expose()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("***")
        }
    }
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

/// A configuration value out of range, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration key `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
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
    #[serde(serialize_with = "Secret::serialize_as_url")]
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

#[cfg(test)]
mod secret_tests {
    use super::Secret;

    #[test]
    fn matches_only_the_same_bytes_whatever_the_length() {
        let secret = Secret::new("adminpass");
        assert!(secret.matches(b"adminpass"));
        for other in [&b""[..], b"adminpas", b"adminpass ", b"ADMINPASS", b"x"] {
            assert!(!secret.matches(other), "{other:?}");
        }
    }

    #[test]
    fn never_shows_its_value() {
        let secret = Secret::new("s3cret");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        assert_eq!(serde_json::to_string(&Secret::default()).unwrap(), "\"\"");
    }
}
