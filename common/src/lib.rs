//! What every Socketgram crate shares without depending on the core (and its database
//! drivers): [`Secret`], a configuration value that never prints; [`ConfigError`], which names
//! the key that is wrong; [`TlsConfig`], a listener's certificate and key files; [`ops`], the
//! `/metrics`, `/healthz` and `/readyz` endpoints every process serves; [`context`], what is
//! known of a visitor besides their messages, and its bounds; [`attempts`], a budget of
//! attempts per key; [`files`], how a message's files are named where only text can show them.

pub mod attempts;
pub mod context;
pub mod files;
pub mod ops;

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

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

/// Certificate and key files (PEM) of a listener.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsConfig {
    /// Reads both files: `(certificate chain, key)`. The error names the key (under
    /// `section`) that points at an unreadable file.
    pub fn read(&self, section: &str) -> Result<(Vec<u8>, Vec<u8>), ConfigError> {
        let read = |path: &PathBuf, key: &str| {
            std::fs::read(path).map_err(|e| {
                ConfigError::new(
                    format!("{section}.tls.{key}"),
                    format!("{}: {e}", path.display()),
                )
            })
        };
        Ok((read(&self.cert, "cert")?, read(&self.key, "key")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_unreadable_tls_file_names_its_key() {
        let tls = TlsConfig {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        assert_eq!(tls.read("web").unwrap_err().key, "web.tls.cert");
    }
}
